package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
)

// TestGraphQLSSEFeedMatchesExecutor: a graphql-sse feed over HTTP/1.1
// takes the fast path (its connection hijacked, its events rendered by the
// WebSocket's plans); over HTTP/2, which cannot be hijacked, gqlgen's
// executor runs it. Both give the same results, byte for byte, for
// selections with aliases, __typename, fragments, @include/@skip, repeated
// fields, two channels and a reset.
func TestGraphQLSSEFeedMatchesExecutor(t *testing.T) {
	e, h2, start := feedFixture(t)
	cases := append(feedCases(start), feedCase{"two channels", `subscription($c: [String!]!, $cur: String) { feed(channels: $c, cursor: $cur) {
			... on Message { channel id event cursor } } }`,
		map[string]any{"c": []string{"eq:a", "eq:b"}, "cur": e.cursor(t, "eq:a", "eq:b")}, 0})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fast := openSSEOn(t, http.DefaultClient, e.url, tc.query, tc.vars)
			if !fast.res.Close || fast.res.ProtoMajor != 1 {
				t.Fatalf("HTTP/1.1: %s, Connection: close %v: not the hijacked fast path", fast.res.Proto, fast.res.Close)
			}
			exec := openSSEOn(t, h2.Client(), h2.URL, tc.query, tc.vars)
			if exec.res.ProtoMajor != 2 {
				t.Fatalf("%s, want HTTP/2", exec.res.Proto)
			}
			n := tc.events
			if n == 0 {
				for _, ch := range []string{"eq:a", "eq:b"} {
					e.send(t, ch, map[string]any{"live": ch, "s": "<&>"})
				}
				n = 2
			}
			for i := range n {
				want := exec.next(t)
				if got := fast.next(t); !bytes.Equal(got, want) {
					t.Fatalf("event %d:\n got  %s\n want %s", i, got, want)
				}
			}
		})
	}
}

// feedFixture is the differential feed tests' set-up: a server on a
// memory broker retaining two messages per channel, a second server on the
// same broker over HTTP/2 (where graphql-sse runs gqlgen's executor: the
// reference), and five messages sent on eq:a and eq:b after start, a
// cursor that has expired by then.
func feedFixture(t *testing.T) (e *env, h2 *httptest.Server, start string) {
	t.Helper()
	b := memoryBroker(t, pubsub.Options{HistorySize: 2})
	e = startEnv(t, testConfig(), b)
	h2 = httptest.NewUnstartedServer(server.New(testConfig(), b, zerolog.Nop()))
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	start = e.cursor(t, "eq:a")
	for i, ch := range []string{"eq:a", "eq:b", "eq:a", "eq:b", "eq:a"} {
		in := map[string]any{"channel": ch, "data": map[string]any{"i": i, "s": "é\"\\<&"}}
		if i%2 == 0 {
			in["event"] = "tick"
		}
		r := e.do(t, testKey, `mutation($in: SendInput!) { send(input: $in) { message { id } } }`, map[string]any{"in": in})
		if len(r.Errors) > 0 {
			t.Fatal(r.Errors)
		}
	}
	return e, h2, start
}

// feedCase is a feed selection and the events it gets: events > 0 from
// the history, 0: live ones sent after it subscribed.
type feedCase struct {
	name, query string
	vars        map[string]any
	events      int
}

// feedCases are the selections both differential tests render from start.
func feedCases(start string) []feedCase {
	return []feedCase{
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
	}
}

type sseOn struct {
	*sseStream
	res *http.Response
}

// openSSEOn starts a graphql-sse operation at base with client.
func openSSEOn(t *testing.T, client *http.Client, base, query string, vars map[string]any) sseOn {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+testKey)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("graphql-sse: %s %s", res.Status, res.Header.Get("Content-Type"))
	}
	return sseOn{&sseStream{sc: bufio.NewScanner(res.Body), cancel: cancel}, res}
}
