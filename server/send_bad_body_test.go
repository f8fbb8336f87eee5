package server_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/pushgate/pushgate/pubsub"
)

// TestSendDataNotJSON: a send whose data is not JSON in the request body
// itself (a truncated value, a bare word) gets 400 with
// extensions.code BAD_USER_INPUT and appends nothing. (Data in variables is
// JSON by construction; inline literals are in TestBadInput.)
func TestSendDataNotJSON(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	e.send(t, "nj", 1)
	q, _ := json.Marshal(sendMutation)
	for name, body := range map[string]string{
		"truncated value": `{"query":` + string(q) + `,"variables":{"in":{"channel":"nj","data":{"a":}}}}`,
		"bare word":       `{"query":` + string(q) + `,"variables":{"in":{"channel":"nj","data":hello}}}`,
		"not JSON at all": `send nj hello`,
	} {
		t.Run(name, func(t *testing.T) {
			status, out, raw := postGraphQL(t, e.url+"/graphql", testKey, []byte(body))
			if status != http.StatusBadRequest || out.code(t) != "BAD_USER_INPUT" {
				t.Fatalf("status %d, body %s; want 400 BAD_USER_INPUT", status, raw)
			}
			if got := e.ids(t, "nj"); len(got) != 1 {
				t.Fatalf("history %v, want only the first message", got)
			}
		})
	}
}
