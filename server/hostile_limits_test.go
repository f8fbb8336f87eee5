package server_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pushgate/pushgate/pubsub"
)

// countingBroker counts History calls: a refused operation makes none.
type countingBroker struct {
	pubsub.Broker
	histories atomic.Int64
}

func (b *countingBroker) History(ctx context.Context, channel string, req pubsub.HistoryRequest) (pubsub.HistoryPage, error) {
	b.histories.Add(1)
	return b.Broker.History(ctx, channel, req)
}

// aliases returns a query of n aliases of field.
func aliases(n int, field string) string {
	var q strings.Builder
	q.WriteString("{")
	for i := range n {
		q.WriteString(" a" + strconv.Itoa(i) + ": " + field)
	}
	q.WriteString(" }")
	return q.String()
}

// TestHistoryAmplificationRefused: the cost model counts a history's nodes
// (and edges) once per message of its page, so the request, 20
// aliases of history(last: 1000) { nodes { data } }, costs 20,040 and is
// refused with BAD_USER_INPUT at the default limit (10,000) before any
// history is read; one alias (1,002) and nine (9,018) pass; the default
// page size (50) and fragments count as well.
func TestHistoryAmplificationRefused(t *testing.T) {
	b := &countingBroker{Broker: memoryBroker(t, pubsub.Options{})}
	e := startEnv(t, anonConfig(), b)
	e.send(t, "room:1", map[string]any{"n": 1})
	reads := b.histories.Load()

	const page = `history(channel: "room:1", last: 1000) { nodes { data } }`
	res := e.do(t, "", aliases(20, page), nil)
	if res.code(t) != "BAD_USER_INPUT" || !strings.Contains(res.Errors[0].Message, "complexity of 20040 is over the limit of 10000") {
		t.Fatalf("20 aliases: %+v", res.Errors)
	}
	if n := b.histories.Load() - reads; n != 0 {
		t.Fatalf("the refused operation read history %d times", n)
	}
	for _, q := range []string{
		aliases(1, page),
		aliases(9, page),
		aliases(90, `history(channel: "room:1") { nodes { id data } }`), // 90 × (2 + 50×2) = 9,180
	} {
		if res := e.do(t, "", q, nil); len(res.Errors) != 0 {
			t.Fatalf("%.80s...: %+v", q, res.Errors)
		}
	}
	for _, tc := range []struct{ q, want string }{
		{aliases(100, `history(channel: "room:1") { nodes { id data } }`), "complexity of 10200"},
		// A variable page size counts as a literal one.
		{`query($n: Int) { a: history(channel: "room:1", first: $n) { ...E } b: history(channel: "room:1", first: $n) { ...E } ` +
			`c: history(channel: "room:1", first: $n) { ...E } } fragment E on MessageConnection { edges { cursor node { id data } } }`,
			"complexity of 12006"},
		// Fragments spread where the page is count per message too.
		{`{ a: history(channel: "room:1", last: 1000) { ...P } b: history(channel: "room:1", last: 1000) { ...P } ` +
			`c: history(channel: "room:1", last: 1000) { ...P } d: history(channel: "room:1", last: 1000) { ...P } } ` +
			`fragment P on MessageConnection { nodes { id data createdAt } }`, "complexity of 12008"},
		// A presence's subjects count as 1000.
		{aliases(10, `channel(name: "room:1") { presence { subjects } }`), "complexity of 10030"},
	} {
		res := e.do(t, "", tc.q, map[string]any{"n": 1000})
		if res.code(t) != "BAD_USER_INPUT" || !strings.Contains(res.Errors[0].Message, tc.want) {
			t.Fatalf("%.80s...: %+v, want %s", tc.q, res.Errors, tc.want)
		}
	}
}

// TestResponseCeiling: history pages are estimated as they are read (their
// data plus 512 bytes a message, per nodes and edges) against
// MaxResponseBytes: one page or several aliases over it fail with
// RESPONSE_TOO_LARGE (data null) before anything is rendered, on both
// stores; pages within it are served. A long-poll answer stops before the
// ceiling and the next poll, from its cursor, goes on without a loss.
func TestResponseCeiling(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			cfg := anonConfig()
			cfg.MaxResponseBytes = 200 << 10 // 200 KiB
			e := startEnv(t, cfg, be.new(t, pubsub.Options{}))
			item := strings.Repeat("z", 1000)
			for range 300 { // ~455 KiB as estimated
				e.send(t, "big", item)
			}
			for _, tc := range []struct {
				q    string
				want string // "": served
			}{
				{`{ history(channel: "big", last: 100) { nodes { id data } } }`, ""},
				{`{ history(channel: "big", last: 300) { nodes { data } } }`, "RESPONSE_TOO_LARGE"},
				{`{ history(channel: "big", first: 300) { nodes { data } } }`, "RESPONSE_TOO_LARGE"},
				// 100 messages, twice each (nodes and edges): 297 KiB.
				{`{ history(channel: "big", last: 100) { nodes { data } edges { node { data } } } }`, "RESPONSE_TOO_LARGE"},
				// Two pages of 100: 297 KiB together.
				{aliases(2, `history(channel: "big", last: 100) { nodes { data } }`), "RESPONSE_TOO_LARGE"},
			} {
				res := e.do(t, "", tc.q, nil)
				if tc.want == "" {
					if len(res.Errors) != 0 {
						t.Fatalf("%s: %+v", tc.q, res.Errors)
					}
					continue
				}
				if res.code(t) != tc.want || string(res.Data) != "null" || !strings.Contains(res.Errors[0].Message, "204800 bytes") {
					t.Fatalf("%s: %s %+v, want %s and no data", tc.q, res.Data, res.Errors, tc.want)
				}
			}

			// Long-poll: at most ~200 KiB an answer; the pages join up.
			first := e.send(t, "big", "first")
			c, _ := pubsub.ParseCursor(first.Cursor)
			pos, _ := c.Position("big")
			cursor := pubsub.NewCursor(map[string]pubsub.Position{"big": {Epoch: pos.Epoch, Offset: 0}}).String()
			seen := 0
			for polls := 0; seen < 301; polls++ {
				if polls > 5 {
					t.Fatalf("%d messages after %d polls", seen, polls)
				}
				body := hostileGetOK(t, e.url+"/poll?channel=big&timeout=0&limit=1000&cursor="+url.QueryEscape(cursor), nil)
				if len(body) > 200<<10 {
					t.Fatalf("poll answered %d bytes", len(body))
				}
				var out struct {
					Messages []message `json:"messages"`
					Cursor   string    `json:"cursor"`
				}
				if err := json.Unmarshal(body, &out); err != nil {
					t.Fatal(err)
				}
				for _, m := range out.Messages {
					if seen++; m.ID != strconv.Itoa(seen) {
						t.Fatalf("poll: message %s after %d", m.ID, seen-1)
					}
				}
				cursor = out.Cursor
			}
		})
	}
}
