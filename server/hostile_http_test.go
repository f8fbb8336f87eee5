package server_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/server/limits"
)

// Hostile clients and GraphQL over HTTP's edges (issue 12, items 8 and
// 13): every refusal is a GraphQL error with extensions.code and the
// status the GraphQL over HTTP specification gives, and a body is read
// as exactly one JSON object.

// doHTTP sends a request to /graphql and decodes a GraphQL answer.
func doHTTP(t *testing.T, method, u string, header http.Header, body []byte) (int, http.Header, gqlResponse, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out gqlResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %d, body %q is not a GraphQL answer: %v", method, u, res.StatusCode, raw, err)
	}
	return res.StatusCode, res.Header, out, raw
}

// TestRequestBodyOneJSONObject: a POST body with anything after its JSON
// object (garbage, a second object, a second request) is refused with 400
// BAD_USER_INPUT before anything runs, on the send fast path and on
// gqlgen's path, with either Accept; so are bodies that are not JSON or
// not a request's shape, and the error gives the parse error and its byte
// offset without echoing the body.
func TestRequestBodyOneJSONObject(t *testing.T) {
	cfg := testConfig()
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	send := func(ch string) string {
		b, _ := json.Marshal(map[string]any{"query": sendMutation, "variables": sendVars(ch, "MARKER-IN-BODY")})
		return string(b)
	}
	other := `{"query":"mutation { b: broadcast(input: {channels: [\"tb\"], data: \"MARKER-IN-BODY\"}) { messages { id } } }"}`
	cases := []struct{ name, body, want string }{
		{"send, then garbage", send("tb") + ` garbage`, "after top-level value"},
		{"send, then a second send", send("tb") + send("tb"), "after top-level value"},
		{"send, then another mutation", send("tb") + "\n" + other, "after top-level value"},
		{"mutation, then garbage", other + "x", "after top-level value"},
		{"query, then a comma", `{"query":"{ __typename }"},`, "after top-level value"},
		{"send with extensions, then garbage", strings.TrimSuffix(send("tb"), "}") + `,"extensions":{}} MARKER`, "after top-level value"},
		{"truncated", send("tb")[:60], "unexpected end of JSON input"},
		{"not JSON", "MARKER-IN-BODY=1", "invalid character"},
		{"a list", `[` + send("tb") + `]`, "must be an object, not a JSON array"},
		{"query a number", `{"query":5,"x":"MARKER-IN-BODY"}`, "query must be a string, not a JSON number"},
		{"variables a string", `{"query":"{ __typename }","variables":"MARKER-IN-BODY"}`, "variables must be an object, not a JSON string"},
		{"extensions a list", `{"query":"{ __typename }","extensions":["MARKER-IN-BODY"]}`, "extensions must be an object, not a JSON array"},
		{"empty", ``, "the request body is empty"},
	}
	for _, c := range cases {
		for _, accept := range []string{"", "application/graphql-response+json"} {
			h := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + testKey}}
			if accept != "" {
				h.Set("Accept", accept)
			}
			before := server.SendFastServed()
			status, hdr, out, raw := doHTTP(t, http.MethodPost, e.url+"/graphql", h, []byte(c.body))
			if status != http.StatusBadRequest || out.code(t) != "BAD_USER_INPUT" || !strings.Contains(out.Errors[0].Message, c.want) {
				t.Fatalf("%s (Accept %q): %d %s; want 400 BAD_USER_INPUT with %q", c.name, accept, status, raw, c.want)
			}
			if c.body != "" && !strings.Contains(out.Errors[0].Message, "at byte ") {
				t.Errorf("%s: the error gives no offset: %s", c.name, out.Errors[0].Message)
			}
			if bytes.Contains(raw, []byte("MARKER")) || bytes.Contains(raw, []byte("mutation")) {
				t.Errorf("%s: the body is echoed: %s", c.name, raw)
			}
			if want := cmp.Or(accept, "application/json"); hdr.Get("Content-Type") != want {
				t.Errorf("%s: Content-Type %q for Accept %q", c.name, hdr.Get("Content-Type"), accept)
			}
			if server.SendFastServed() != before {
				t.Errorf("%s: the fast path served it", c.name)
			}
		}
	}
	if got := e.ids(t, "tb"); len(got) != 0 {
		t.Fatalf("refused bodies appended %v", got)
	}
	// Space after the object is not data.
	status, _, out, raw := doHTTP(t, http.MethodPost, e.url+"/graphql",
		http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + testKey}}, []byte(send("tb")+" \r\n\t"))
	if status != http.StatusOK || len(out.Errors) > 0 {
		t.Fatalf("send with trailing space: %d %s", status, raw)
	}
}

// TestRequestErrorsHaveCodes: the refusals gqlgen answered without a code
// now carry one: a POST that is not application/json (415, naming the
// content type to send), a mutation or subscription over GET (405 with
// Allow: POST, as GraphQL over HTTP requires, refused before it runs: it
// takes nothing from the send rate), and a WebSocket subscribe without a
// payload (graphql-transport-ws: close 4400; legacy graphql-ws: an error
// with BAD_USER_INPUT).
func TestRequestErrorsHaveCodes(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.SendRatePerKey = limits.Rate{PerSecond: 0.001, Burst: 1}
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	auth := http.Header{"Authorization": {"Bearer " + testKey}}

	body := []byte(`{"query":"{ __typename }"}`)
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "application/graphql", "multipart/form-data; boundary=x", "nonsense;;"} {
		h := http.Header{}
		if ct != "" {
			h.Set("Content-Type", ct)
		}
		status, _, out, raw := doHTTP(t, http.MethodPost, e.url+"/graphql", h, body)
		if status != http.StatusUnsupportedMediaType || out.code(t) != "BAD_USER_INPUT" ||
			!strings.Contains(out.Errors[0].Message, "Content-Type: application/json") {
			t.Fatalf("Content-Type %q: %d %s", ct, status, raw)
		}
	}

	for _, tt := range []struct{ query, accept string }{
		{`mutation { send(input: {channel: "g", data: 1}) { message { id } } }`, ""},
		{`mutation { send(input: {channel: "g", data: 1}) { message { id } } }`, "application/graphql-response+json"},
		{`query A { __typename } mutation B { send(input: {channel: "g", data: 1}) { message { id } } }&operationName=B`, ""},
		{`subscription { feed(channels: ["g"]) { __typename } }`, ""},
	} {
		h := auth.Clone()
		if tt.accept != "" {
			h.Set("Accept", tt.accept)
		}
		q, op, _ := strings.Cut(tt.query, "&operationName=")
		u := e.url + "/graphql?query=" + url.QueryEscape(q)
		if op != "" {
			u += "&operationName=" + op
		}
		status, hdr, out, raw := doHTTP(t, http.MethodGet, u, h, nil)
		if status != http.StatusMethodNotAllowed || hdr.Get("Allow") != "POST" || out.code(t) != "METHOD_NOT_ALLOWED" ||
			!strings.Contains(out.Errors[0].Message, "POST") {
			t.Fatalf("GET %s: %d Allow %q %s", tt.query, status, hdr.Get("Allow"), raw)
		}
	}
	// What gqlgen's GET refused without a code: a query string that does
	// not parse, variables or extensions that are not one JSON object.
	for _, query := range []string{
		"query=%7B+__typename+%7D&variables=%ZZ",
		"query=%7B+__typename+%7D;x=1",
		"query=%7B+__typename+%7D&variables=" + url.QueryEscape(`{"a":1} MARKER`),
		"query=%7B+__typename+%7D&variables=" + url.QueryEscape(`[1]`),
		"query=%7B+__typename+%7D&extensions=" + url.QueryEscape(`{"MARKER":`),
	} {
		status, _, out, raw := doHTTP(t, http.MethodGet, e.url+"/graphql?"+query, auth, nil)
		if status != http.StatusBadRequest || out.code(t) != "BAD_USER_INPUT" || bytes.Contains(raw, []byte("MARKER")) {
			t.Fatalf("GET ?%s: %d %s", query, status, raw)
		}
	}
	// A query over GET runs; the refused mutations took nothing from the
	// send rate (its burst is one): a send over POST passes.
	if status, _, out, raw := doHTTP(t, http.MethodGet, e.url+"/graphql?query="+url.QueryEscape(`query A { __typename } mutation B { __typename }`)+"&operationName=A", auth, nil); status != http.StatusOK || len(out.Errors) > 0 {
		t.Fatalf("query over GET: %d %s", status, raw)
	}
	if ids := e.ids(t, "g"); len(ids) != 0 {
		t.Fatalf("GET mutations appended %v", ids)
	}
	e.send(t, "g", 1)

	// A subscribe without a payload, or with one that is not a request.
	for _, payload := range []string{``, `,"payload":null`, `,"payload":5`, `,"payload":{"query":7}`, `,"payload":{"query":"{ __typename }","variables":[1]}`} {
		c := e.dialWS(t, transportWS, "", nil)
		c.init(nil)
		c.writeRaw(`{"type":"subscribe","id":"1"` + payload + `}`)
		err := c.waitClosed()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4400 || !strings.Contains(ce.Text, "send {query") {
			t.Fatalf("subscribe with payload %q: closed with %v, want 4400", payload, err)
		}

		legacy := e.dialWS(t, legacyWS, "", nil)
		legacy.init(map[string]any{"token": testKey})
		legacy.writeRaw(`{"type":"start","id":"1"` + payload + `}`)
		if code := legacy.errorCode("1"); code != "BAD_USER_INPUT" {
			t.Fatalf("legacy start with payload %q: %s", payload, code)
		}
		if m := legacy.next(); m.Type != "complete" || m.ID != "1" {
			t.Fatalf("legacy start with payload %q: then %+v", payload, m)
		}
		// The connection goes on: a feed from the channel's start gets
		// its message.
		legacy.subscribe("2", []string{"g"}, startCursorOf("g"))
		if ev := legacy.event("2"); ev.Typename != "Message" || ev.ID != "1" {
			t.Fatalf("legacy feed after the refusal: %+v", ev)
		}
	}
}
