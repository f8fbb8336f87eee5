package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/pushgate/pushgate/pubsub"
)

// TestWebSocketFeedMatchesExecutor: the WebSocket renders feed events
// itself (one plan per selection, shared by subscribers); graphql-sse runs
// gqlgen's executor. For selections with aliases, __typename, fragments,
// @include/@skip, repeated fields, several channels and a reset, both give
// the same payloads, byte for byte (same keys in the same order, same
// values, <, > and & in data escaped as gqlgen's encoder does), on both
// WebSocket protocols, for every event.
func TestWebSocketFeedMatchesExecutor(t *testing.T) {
	// Two retained per channel: a cursor from the start gets a reset.
	b := memoryBroker(t, pubsub.Options{HistorySize: 2})
	e := startEnv(t, testConfig(), b)
	start := e.cursor(t, "eq:a") // before anything was sent: expired below
	for i, ch := range []string{"eq:a", "eq:b", "eq:a", "eq:b", "eq:a"} {
		var in = map[string]any{"channel": ch, "data": map[string]any{"i": i, "s": "é\"\\<"}}
		if i%2 == 0 {
			in["event"] = "tick"
		}
		r := e.do(t, testKey, `mutation($in: SendInput!) { send(input: $in) { message { id } } }`, map[string]any{"in": in})
		if len(r.Errors) > 0 {
			t.Fatal(r.Errors)
		}
	}
	cases := []struct {
		name, query string
		vars        map[string]any
		events      int
	}{
		{"every field", `subscription($c: [String!]!, $cur: String) { feed(channels: $c, cursor: $cur) {
			__typename ... on Message { channel id event data createdAt cursor } ... on Reset { channel reason cursor } } }`,
			map[string]any{"c": []string{"eq:a"}, "cur": start}, 3},
		{"aliases and repeats", `subscription($c: [String!]!, $cur: String) { f: feed(channels: $c, cursor: $cur) {
			... on Message { a: id t: __typename cursor d: data c2: cursor } ... on Reset { why: reason t: __typename } } }`,
			map[string]any{"c": []string{"eq:a"}, "cur": start}, 3},
		{"fragments and directives", `subscription($c: [String!]!, $cur: String, $yes: Boolean!) { feed(channels: $c, cursor: $cur) {
			...M ... on FeedEvent { __typename } ... on Reset { ...R } } }
			fragment M on Message { id event @include(if: $yes) data @skip(if: $yes) createdAt @include(if: false) }
			fragment R on Reset { reason cursor }`,
			map[string]any{"c": []string{"eq:a"}, "cur": start, "yes": true}, 3},
		{"two channels, literal", `subscription { feed(channels: ["eq:b", "eq:a"]) { ... on Message { channel id cursor } } }`,
			nil, 0},
		{"two channels from a cursor", `subscription($c: [String!]!, $cur: String) { feed(channels: $c, cursor: $cur) {
			... on Message { channel id event cursor } } }`,
			map[string]any{"c": []string{"eq:a", "eq:b"}}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vars := tc.vars
			n := tc.events
			if n == 0 {
				// Live: both transports subscribe, then two more sends.
				n = 2
			}
			if tc.name == "two channels from a cursor" {
				vars["cur"] = feedCursor(t, e, []string{"eq:a", "eq:b"})
				n = 4
			}
			sse := openGraphQLSSE(t, e, tc.query, vars)
			var ws []*wsClient
			for _, proto := range protocols {
				c := e.dialWS(t, proto, "", nil)
				c.init(map[string]any{"token": testKey})
				raw, _ := json.Marshal(map[string]any{"query": tc.query, "variables": vars})
				typ := "subscribe"
				if proto == legacyWS {
					typ = "start"
				}
				c.write(wsMsg{Type: typ, ID: "op-" + proto, Payload: raw})
				ws = append(ws, c)
			}
			if tc.events == 0 {
				// Let every subscription be live before sending.
				for _, c := range ws {
					c.quiet(100 * 1e6)
				}
				for _, ch := range []string{"eq:a", "eq:b", "eq:a", "eq:b"}[:n] {
					e.send(t, ch, map[string]any{"live": ch})
				}
			}
			for i := range n {
				want := sse.next(t)
				for _, c := range ws {
					m := c.next()
					if m.Type != "next" && m.Type != "data" {
						t.Fatalf("%s event %d: %+v", c.proto, i, m)
					}
					if !sameJSON(t, m.Payload, want) || !bytes.Equal(m.Payload, want) {
						t.Fatalf("%s event %d:\n got  %s\n want %s", c.proto, i, m.Payload, want)
					}
				}
			}
		})
	}
}

// feedCursor returns a feed cursor of channels at their current positions,
// from the first event of a WebSocket feed after one more send.
func feedCursor(t *testing.T, e *env, channels []string) string {
	t.Helper()
	c := e.dialWS(t, transportWS, "", nil)
	c.init(map[string]any{"token": testKey})
	c.subscribe("cur", channels, "")
	c.quiet(100 * 1e6)
	e.send(t, channels[0], "cursor")
	ev := c.event("cur")
	e.send(t, channels[1], "cursor")
	ev = c.event("cur")
	return ev.Cursor
}

type sseStream struct {
	sc     *bufio.Scanner
	cancel context.CancelFunc
}

// openGraphQLSSE starts a graphql-sse operation (gqlgen's executor).
func openGraphQLSSE(t *testing.T, e *env, query string, vars map[string]any) *sseStream {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+testKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != http.StatusOK {
		t.Fatalf("graphql-sse: %s", res.Status)
	}
	return &sseStream{sc: bufio.NewScanner(res.Body), cancel: cancel}
}

// next returns the data of the next "next" event.
func (s *sseStream) next(t *testing.T) []byte {
	t.Helper()
	timer := context.AfterFunc(t.Context(), s.cancel)
	defer timer()
	for s.sc.Scan() {
		if data, ok := strings.CutPrefix(s.sc.Text(), "data: "); ok {
			return []byte(data)
		}
	}
	t.Fatalf("graphql-sse stream ended: %v", s.sc.Err())
	return nil
}

// sameJSON reports whether a and b are the same JSON token for token: keys
// in the same order, strings equal once unescaped.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	return slices.Equal(jsonTokens(t, a), jsonTokens(t, b))
}

func jsonTokens(t *testing.T, b []byte) []any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out []any
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		out = append(out, tok)
	}
}
