package server

import (
	"net/http"
	"slices"
	"strings"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/internal/httperr"
)

// writeError answers a plain HTTP request with
// {"error":{"code":...,"message":...}}.
func writeError(w http.ResponseWriter, status int, code, message string) {
	httperr.Write(w, status, code, message)
}

// HTTPStatus is the status a plain HTTP endpoint answers for an error code.
func HTTPStatus(code string) int {
	switch code {
	case graph.CodeBadUserInput:
		return http.StatusBadRequest
	case graph.CodeUnauthenticated:
		return http.StatusUnauthorized
	case graph.CodeForbidden:
		return http.StatusForbidden
	case graph.CodePayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case graph.CodeUnavailable:
		return http.StatusServiceUnavailable
	case graph.CodeRateLimited:
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

// writeErr answers a plain HTTP request with err classified as GraphQL
// errors are, so every transport reports the same codes.
func writeErr(w http.ResponseWriter, err error) {
	e := graph.Classify(err)
	writeError(w, HTTPStatus(e.Code), e.Code, e.Message)
}

func notFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no route for "+r.URL.Path)
	})
}

// codeMethodNotAllowed is the code of a request whose method its route
// does not serve (405, with Allow).
const codeMethodNotAllowed = "METHOD_NOT_ALLOWED"

// allowMethods answers other methods than methods with 405.
func allowMethods(h http.Handler, methods ...string) http.Handler {
	refuse := methodNotAllowed(methods...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slices.Contains(methods, r.Method) {
			h.ServeHTTP(w, r)
			return
		}
		refuse.ServeHTTP(w, r)
	})
}

// methodNotAllowed answers 405 with Allow (methods) and the JSON error: the
// route of a path that exists, for the methods it does not serve.
func methodNotAllowed(methods ...string) http.Handler {
	allow := strings.Join(methods, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, codeMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path+"; use "+allow)
	})
}
