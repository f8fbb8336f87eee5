package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
)

// TestWebSocketFeedMatchesExecutor: the WebSocket renders feed events
// itself (one plan per selection, shared by subscribers); graphql-sse over
// HTTP/2 runs gqlgen's executor. For selections with aliases, __typename, fragments,
// @include/@skip, repeated fields, several channels and a reset, both give
// the same payloads, byte for byte (same keys in the same order, same
// values, <, > and & in data escaped as gqlgen's encoder does), on both
// WebSocket protocols, for every event.
func TestWebSocketFeedMatchesExecutor(t *testing.T) {
	// Two retained per channel: a cursor from the start gets a reset.
	e, h2, start := feedFixture(t)
	cases := append(feedCases(start), []feedCase{
		{"two channels, literal", `subscription { feed(channels: ["eq:b", "eq:a"]) { ... on Message { channel id cursor } } }`,
			nil, 0},
		{"two channels from a cursor", `subscription($c: [String!]!, $cur: String) { feed(channels: $c, cursor: $cur) {
			... on Message { channel id event cursor } } }`,
			map[string]any{"c": []string{"eq:a", "eq:b"}}, 0},
	}...)
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
			// The reference: graphql-sse over HTTP/2, gqlgen's executor.
			sse := openSSEOn(t, h2.Client(), h2.URL, tc.query, vars)
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
