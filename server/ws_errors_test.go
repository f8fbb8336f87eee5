package server_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushgate/pushgate/internal/logbuf"
	"github.com/pushgate/pushgate/pubsub"
)

// TestWebSocketOperationErrors: an operation that cannot start (a payload
// that is no request, a document that does not parse or validate,
// variables of the wrong type) fails alone with an error naming what is
// wrong, on both subprotocols; the connection and its other operations go
// on. On the legacy protocol a second start with a running id is refused
// the same way (graphql-transport-ws closes with 4409 instead: see
// TestWebSocketProtocolErrors).
func TestWebSocketOperationErrors(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	cases := []struct {
		name    string
		payload string // the subscribe (start) message's payload
		typ     string // the message that answers it: error, or next (data) with errors
		code    string // extensions.code, "" for none
		message string // in the error's message
		legacy  bool   // legacy graphql-ws only: graphql-transport-ws closes with 4400 (TestRequestErrorsHaveCodes)
	}{
		{"payload not a request", `{"query":5}`, "error", "BAD_USER_INPUT", "JSON number as query", true},
		{"parse error", `{"query":"subscription {"}`, "error", "GRAPHQL_PARSE_FAILED", "Expected Name", false},
		{"validation error", `{"query":"subscription { nope }"}`, "error", "GRAPHQL_VALIDATION_FAILED", "nope", false},
		{"variable of the wrong type", `{"query":` + mustJSON(feedQuery) + `,"variables":{"channels":{"x":1}}}`, "next", "BAD_USER_INPUT", "cannot use map as String", false},
	}
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			c := e.dialWS(t, proto, "", nil)
			c.init(map[string]any{"token": testKey})
			// A feed that runs through all of it.
			const ch = "wserr"
			c.subscribe("live", []string{ch}, e.cursor(t, ch))
			// An error message ends its operation: graphql-transport-ws
			// sends nothing after it (a complete would be a protocol
			// violation); the legacy graphql-ws completes it.
			ended := map[string]bool{}
			next := func() wsMsg {
				t.Helper()
				for {
					m := c.next()
					if m.Type != "complete" || !ended[m.ID] {
						return m
					}
					if proto != legacyWS {
						t.Fatalf("complete for %s after its error", m.ID)
					}
				}
			}
			for i, tc := range cases {
				if tc.legacy && proto != legacyWS {
					continue
				}
				id := "op" + string(rune('a'+i))
				typ := "subscribe"
				if proto == legacyWS {
					typ = "start"
				}
				c.write(wsMsg{Type: typ, ID: id, Payload: json.RawMessage(tc.payload)})
				m := next()
				want := tc.typ
				if want == "next" && proto == legacyWS {
					want = "data"
				}
				if m.Type != want || m.ID != id {
					t.Fatalf("%s: got %+v, want %s of %s", tc.name, m, want, id)
				}
				errs := wsErrors(t, m)
				if len(errs) != 1 || errs[0].Extensions.Code != tc.code || !strings.Contains(errs[0].Message, tc.message) {
					t.Fatalf("%s: errors %+v, want one with code %q saying %q", tc.name, errs, tc.code, tc.message)
				}
				// The operation ends there: with the error, or a result
				// with errors then complete.
				if m.Type == "error" {
					ended[id] = true
				} else if end := next(); end.Type != "complete" || end.ID != id {
					t.Fatalf("%s: got %+v after the result, want complete of %s", tc.name, end, id)
				}
			}
			if proto == legacyWS {
				c.subscribe("live", []string{ch}, "")
				m := next()
				if m.Type != "error" || m.ID != "live" {
					t.Fatalf("a second start of a running id: %+v, want an error", m)
				}
				if errs := wsErrors(t, m); len(errs) != 1 || !strings.Contains(errs[0].Message, "already running") {
					t.Fatalf("a second start of a running id: %+v", errs)
				}
			}
			// The first feed still runs, once.
			sent := e.send(t, ch, proto)
			if m := next(); (m.Type != "next" && m.Type != "data") || m.ID != "live" || !strings.Contains(string(m.Payload), `"id":"`+sent.ID+`"`) {
				t.Fatalf("the running feed: %+v %s, want message %s", m, m.Payload, sent.ID)
			}
			select {
			case m := <-c.msgs:
				if m.Type != "complete" || !ended[m.ID] || proto != legacyWS {
					t.Fatalf("unexpected %+v", m)
				}
			case <-time.After(100 * time.Millisecond):
			}
		})
	}
	if got := e.ids(t, "wserr"); len(got) != 2 {
		t.Fatalf("history %v, want the two messages sent", got)
	}
}

// wsErrors decodes the errors an error message (a list, or one object on
// the legacy protocol) or a result carries.
func wsErrors(t *testing.T, m wsMsg) []gqlError {
	t.Helper()
	var errs []gqlError
	if m.Type == "error" {
		if err := json.Unmarshal(m.Payload, &errs); err != nil {
			var one gqlError
			if err := json.Unmarshal(m.Payload, &one); err != nil {
				t.Fatalf("error payload %s: %v", m.Payload, err)
			}
			errs = []gqlError{one}
		}
		return errs
	}
	var res gqlResponse
	if err := json.Unmarshal(m.Payload, &res); err != nil {
		t.Fatalf("result %s: %v", m.Payload, err)
	}
	return res.Errors
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestWebSocketWithoutSubprotocol: a WebSocket that asks for no
// subprotocol is served the legacy graphql-ws protocol, and the server says
// so once, at debug; one that asks for graphql-transport-ws is not logged.
func TestWebSocketWithoutSubprotocol(t *testing.T) {
	var logs logbuf.Buffer
	e := startEnvLog(t, testConfig(), memoryBroker(t, pubsub.Options{}), &logs)
	const said = "WebSocket without a subprotocol"
	for _, proto := range []string{"", transportWS} {
		before := strings.Count(logs.String(), said)
		d := websocket.Dialer{HandshakeTimeout: waitTimeout}
		if proto != "" {
			d.Subprotocols = []string{proto}
		}
		conn, res, err := d.Dial("ws"+strings.TrimPrefix(e.url, "http")+"/graphql", nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if err := conn.WriteJSON(wsMsg{Type: "connection_init", Payload: json.RawMessage(`{"token":"` + testKey + `"}`)}); err != nil {
			t.Fatal(err)
		}
		var ack wsMsg
		if err := conn.ReadJSON(&ack); err != nil || ack.Type != "connection_ack" {
			t.Fatalf("subprotocol %q: %+v %v, want connection_ack", proto, ack, err)
		}
		// The line is written before the connection is served: by the ack,
		// it is there or it never will be.
		if n := strings.Count(logs.String(), said) - before; (proto == "") != (n == 1) || n > 1 {
			t.Fatalf("subprotocol %q: %d log lines saying %q:\n%s", proto, n, said, logs.String())
		}
		conn.Close()
	}
}
