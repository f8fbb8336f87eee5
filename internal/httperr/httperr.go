// Package httperr writes the error body of pushgate's plain HTTP endpoints,
// {"error":{"code":...,"message":...}}, for every package that serves one
// (server, wechat's message push). It owns the body's shape and nothing
// else: which status and code an error gets is its caller's.
package httperr

import (
	"encoding/json"
	"net/http"
)

// Write answers with status and the error body naming code and message.
func Write(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Code, body.Error.Message = code, message
	_ = json.NewEncoder(w).Encode(body)
}
