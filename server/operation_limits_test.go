package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushgate/pushgate/pubsub"
)

// nest returns open + inner wrapped in n levels of "field {" ... "}".
func nest(fields []string, n int, inner string) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(fields[i%len(fields)] + " { ")
	}
	b.WriteString(inner)
	b.WriteString(strings.Repeat(" }", n))
	return b.String()
}

// TestQueryDepth: a deeply nested operation is refused before it runs,
// naming the limit; tools' introspection query passes.
func TestQueryDepth(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	// The schema's own types nest 4 deep at most, and gqlparser refuses
	// nesting __Type's lists (fields, interfaces...) over 3 deep: the deep
	// path is ofType.
	deep := `{ __type(name: "Query") { ` + nest([]string{"ofType"}, 48, "name") + " } }"
	res, raw := e.post(t, testKey, "", deep, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200 for application/json", res.StatusCode)
	}
	wantLimit(t, onlyError(t, raw), "BAD_USER_INPUT", "the operation's depth of 50 is over the limit of 20 for introspection")

	// The same depth through nested fragments and aliases.
	var frags strings.Builder
	frags.WriteString(`{ __schema { queryType { ...F0 } } }`)
	for i := range 24 {
		next := "...F" + strconv.Itoa(i+1)
		frags.WriteString(" fragment F" + strconv.Itoa(i) + " on __Type { a: ofType { " + next + " } b: ofType { kind ofType { " + next + " } } }")
	}
	frags.WriteString(" fragment F24 on __Type { name }")
	_, raw = e.post(t, testKey, "", frags.String(), nil)
	wantLimit(t, onlyError(t, raw), "BAD_USER_INPUT", "the operation's depth of 51 is over the limit of 20 for introspection")

	// graphql-js's getIntrospectionQuery (ofType nested 9 deep).
	std, err := os.ReadFile("testdata/introspection.graphql")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Schema struct {
			Types []struct{ Name string } `json:"types"`
		} `json:"__schema"`
	}
	e.do(t, "", string(std), nil).decode(t, &schema)
	if len(schema.Schema.Types) == 0 {
		t.Fatal("introspection returned no types")
	}

	// A configured depth, on a mutation: refused, nothing appended.
	cfg := testConfig()
	cfg.Limits.MaxQueryDepth = 2
	b := memoryBroker(t, pubsub.Options{})
	e = startEnv(t, cfg, b)
	reader := startEnv(t, testConfig(), b) // history nests 3 deep
	_, raw = e.post(t, testKey, "", `{ history(channel: "d") { edges { node { id } } } }`, nil)
	wantLimit(t, onlyError(t, raw), "BAD_USER_INPUT", "the operation's depth of 4 is over the limit of 2")
	vars := map[string]any{"in": map[string]any{"channel": "d", "data": 1}}
	_, raw = e.post(t, testKey, "", `mutation($in: SendInput!) { send(input: $in) { message { id } } }`, vars)
	wantLimit(t, onlyError(t, raw), "BAD_USER_INPUT", "the operation's depth of 3 is over the limit of 2")
	if ids := reader.ids(t, "d"); len(ids) != 0 {
		t.Fatalf("a refused mutation appended %v", ids)
	}
	e.do(t, testKey, `mutation($in: SendInput!) { send(input: $in) { duplicate } }`, vars).decode(t, &struct{}{})
	if ids := reader.ids(t, "d"); len(ids) != 1 {
		t.Fatalf("history after a send within the depth: %v", ids)
	}
}

// TestQueryComplexity: an operation with too many fields (aliases and
// fragments counted where used) is refused before it runs.
func TestQueryComplexity(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxQueryComplexity = 1000
	b := memoryBroker(t, pubsub.Options{})
	e := startEnv(t, cfg, b)
	reader := startEnv(t, testConfig(), b) // history(last: 1000) costs more than 1000
	var sends strings.Builder
	sends.WriteString("mutation {")
	for i := range 600 {
		sends.WriteString(" a" + strconv.Itoa(i) + `: send(input: {channel: "c", data: 1}) { duplicate }`)
	}
	sends.WriteString(" }")
	_, raw := e.post(t, testKey, "", sends.String(), nil)
	wantLimit(t, onlyError(t, raw), "BAD_USER_INPUT", "the operation's complexity of 1200 is over the limit of 1000")
	if ids := reader.ids(t, "c"); len(ids) != 0 {
		t.Fatalf("a refused mutation appended %v", ids)
	}

	// Fragments spread twice at each of 30 levels: 2^30 fields once
	// expanded, refused without expanding them.
	var frags strings.Builder
	frags.WriteString(`{ __type(name: "Query") { ...F0 } }`)
	for i := range 30 {
		next := "...F" + strconv.Itoa(i+1)
		frags.WriteString(" fragment F" + strconv.Itoa(i) + " on __Type { " + next + " " + next + " }")
	}
	frags.WriteString(" fragment F30 on __Type { name }")
	start := time.Now()
	_, raw = e.post(t, testKey, "", frags.String(), nil)
	wantLimit(t, onlyError(t, raw), "BAD_USER_INPUT", "is over the limit of 1000")
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("refusing took %v", d)
	}

	var ok strings.Builder
	for i := range 400 {
		ok.WriteString(" a" + strconv.Itoa(i) + `: channel(name: "c") { name }`)
	}
	if errs := e.do(t, testKey, "{"+ok.String()+" }", nil).Errors; len(errs) != 0 {
		t.Fatalf("complexity 800: %+v", errs)
	}
}

// TestIntrospectionOff: __schema and __type are refused before anything
// runs; __typename still works.
func TestIntrospectionOff(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.DisableIntrospection = true
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	for _, q := range []string{
		`{ __schema { queryType { name } } }`,
		`{ __type(name: "Message") { name } }`,
		`{ channel(name: "x") { name } ...F } fragment F on Query { __schema { types { name } } }`,
	} {
		_, raw := e.post(t, testKey, "", q, nil)
		wantLimit(t, onlyError(t, raw), "BAD_USER_INPUT", "introspection (__schema, __type) is disabled")
	}
	var out struct {
		Typename string `json:"__typename"`
	}
	e.do(t, testKey, `{ __typename }`, nil).decode(t, &out)
	if out.Typename != "Query" {
		t.Fatalf("__typename = %q", out.Typename)
	}

	// On by default.
	e = startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	e.do(t, testKey, `{ __schema { queryType { name } } }`, nil).decode(t, &struct{}{})
}

// TestSubscriptionChannels: a subscription over the channel limit is
// refused with BAD_USER_INPUT naming it, on the GraphQL feed, SSE and
// long-poll alike.
func TestSubscriptionChannels(t *testing.T) {
	channels := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, "ch:"+strconv.Itoa(i))
		}
		return out
	}
	query := func(chs []string) string {
		return "channel=" + strings.Join(chs, "&channel=") + "&token=" + testKey
	}
	for _, tt := range []struct {
		limit, max int
	}{{0, 32}, {4, 4}} {
		cfg := testConfig()
		cfg.Limits.MaxSubscriptionChannels = tt.limit
		e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
		over, atMax := channels(tt.max+1), channels(tt.max)
		want := strconv.Itoa(tt.max+1) + " channels, over the limit of " + strconv.Itoa(tt.max) + " per subscription"

		c := e.dialWS(t, transportWS, "", nil)
		c.init(map[string]any{"token": testKey})
		c.subscribe("over", over, "")
		m := c.next()
		var res struct{ Errors []limitError }
		if m.ID != "over" || json.Unmarshal(m.Payload, &res) != nil || len(res.Errors) != 1 {
			t.Fatalf("feed of %d channels: %s %s", len(over), m.Type, m.Payload)
		}
		wantLimit(t, res.Errors[0], "BAD_USER_INPUT", want)
		c.next() // complete
		// The position now, so that the feed resumes from it whenever it
		// starts: a poll without cursor answers it at once.
		res0 := e.open(t, t.Context(), "/poll?"+query(atMax), nil)
		var pos struct{ Cursor string }
		if err := json.NewDecoder(res0.Body).Decode(&pos); err != nil || pos.Cursor == "" {
			t.Fatalf("poll for the position: %d %v", res0.StatusCode, err)
		}
		res0.Body.Close()
		c.subscribe("ok", atMax, pos.Cursor)
		e.send(t, atMax[len(atMax)-1], 1)
		if ev := c.event("ok"); ev.Typename != "Message" {
			t.Fatalf("feed of %d channels: %+v", len(atMax), ev)
		}

		for _, path := range []string{"/events?", "/poll?timeout=0&"} {
			wantRefused(t, e.open(t, t.Context(), path+query(over), nil), http.StatusBadRequest, "BAD_USER_INPUT", want)
		}
		if s := e.status(t, "/poll?timeout=0&"+query(atMax), nil); s != http.StatusOK {
			t.Fatalf("poll of %d channels: %d", len(atMax), s)
		}
	}
}

// TestMessageSize: a message over the size limit is PAYLOAD_TOO_LARGE; a
// body over the body limit is 413 at the HTTP layer whether its length is
// declared or chunked, and a WebSocket message over it closes the socket
// with 1009. Nothing is appended.
func TestMessageSize(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	vars := func(size int) map[string]any {
		return map[string]any{"in": map[string]any{"channel": "big", "data": strings.Repeat("x", size)}}
	}
	_, raw := e.post(t, testKey, "", sendMutation, vars(100<<10))
	wantLimit(t, onlyFieldError(t, raw, "send"), "PAYLOAD_TOO_LARGE", "over the maximum message size of 65536 bytes")

	body, _ := json.Marshal(map[string]any{"query": sendMutation, "variables": vars(1 << 20)})
	for _, chunked := range []bool{false, true} {
		var r io.Reader = bytes.NewReader(body)
		if chunked {
			r = io.MultiReader(r) // unknown length: sent chunked
		}
		req, _ := http.NewRequest(http.MethodPost, e.url+"/graphql", r)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+testKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, res, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", "over the limit of 1048576 bytes")
	}

	c := e.dialWS(t, transportWS, "", nil)
	c.init(map[string]any{"token": testKey})
	payload, _ := json.Marshal(map[string]any{"query": sendMutation, "variables": vars(1 << 20)})
	c.write(wsMsg{Type: "subscribe", ID: "big", Payload: payload})
	var ce *websocket.CloseError
	if err := c.waitClosed(); !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Fatalf("WebSocket message over the limit: %v, want close 1009", err)
	}

	// With room in the body, the same message is refused by its size.
	cfg := testConfig()
	cfg.MaxBodyBytes = 4 << 20
	e2 := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	_, raw = e2.post(t, testKey, "", sendMutation, vars(1<<20))
	wantLimit(t, onlyFieldError(t, raw, "send"), "PAYLOAD_TOO_LARGE", "over the maximum message size of 65536 bytes")

	for _, env := range []*env{e, e2} {
		if ids := env.ids(t, "big"); len(ids) != 0 {
			t.Fatalf("appended %v", ids)
		}
	}
}
