package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/pubsub/pubsubtest"
)

// TestHostileCursorOffsets: a cursor naming the channel's epoch with an
// offset of 2^63, 2^64-2 or 2^64-1 (anyone can forge one: the epoch is in
// every cursor) is answered, anonymously, on every transport and on both
// stores, with Reset unknown_position then the retained messages (poll,
// SSE by query and by Last-Event-ID, graphql-transport-ws, graphql-ws,
// graphql-sse) or BAD_USER_INPUT (history, both directions), and the
// server goes on serving. Before the fix the memory store sliced with a
// negative bound in the subscription's catch-up goroutine and the process
// died; 2^64-1 wrapped to 0 and history returned the channel from its
// start.
func TestHostileCursorOffsets(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			e := startEnv(t, anonConfig(), be.new(t, pubsub.Options{}))
			first := e.send(t, "room:1", map[string]any{"n": 1})
			e.send(t, "room:1", map[string]any{"n": 2})
			c, err := pubsub.ParseCursor(first.Cursor)
			if err != nil {
				t.Fatal(err)
			}
			pos, _ := c.Position("room:1")
			for _, off := range pubsubtest.HostileOffsets {
				forged := pubsub.NewCursor(map[string]pubsub.Position{"room:1": {Epoch: pos.Epoch, Offset: off}}).String()
				t.Run(fmt.Sprint(off), func(t *testing.T) {
					checkHostileCursor(t, e, forged)
				})
			}
			// Still serving: a send and a read afterwards.
			e.send(t, "room:1", map[string]any{"n": 3})
			if got := e.ids(t, "room:1"); strings.Join(got, ",") != "1,2,3" {
				t.Fatalf("history after the hostile cursors: %v", got)
			}
		})
	}
}

func checkHostileCursor(t *testing.T, e *env, forged string) {
	t.Run("poll", func(t *testing.T) {
		res := hostileGetOK(t, e.url+"/poll?channel=room:1&timeout=0&cursor="+url.QueryEscape(forged), nil)
		var out struct {
			Messages []message `json:"messages"`
			Reset    *struct {
				Reason string `json:"reason"`
			} `json:"reset"`
		}
		if err := json.Unmarshal(res, &out); err != nil {
			t.Fatalf("%s: %v", res, err)
		}
		if out.Reset == nil || out.Reset.Reason != "unknown_position" || len(out.Messages) != 2 || out.Messages[0].ID != "1" {
			t.Fatalf("poll answered %s, want the unknown_position reset, then messages 1 and 2", res)
		}
	})
	t.Run("sse query", func(t *testing.T) {
		hostileSSEReset(t, e.url+"/events?channel=room:1&cursor="+url.QueryEscape(forged), nil)
	})
	t.Run("sse Last-Event-ID", func(t *testing.T) {
		hostileSSEReset(t, e.url+"/events?channel=room:1", http.Header{"Last-Event-Id": {forged}})
	})
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			ws := e.dialWS(t, proto, "", nil)
			ws.init(nil)
			ws.subscribe("x", []string{"room:1"}, forged)
			if ev := ws.event("x"); ev.Typename != "Reset" || ev.Reason != "unknown_position" {
				t.Fatalf("first event %+v, want an unknown_position Reset", ev)
			}
			if evs := ws.messages("x", 2); ids(evs) != "room:1/1 room:1/2" {
				t.Fatalf("after the reset: %s", ids(evs))
			}
		})
	}
	t.Run("graphql-sse", func(t *testing.T) {
		body, _ := json.Marshal(map[string]any{"query": feedQuery,
			"variables": map[string]any{"channels": []string{"room:1"}, "cursor": forged}})
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/graphql", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "text/event-stream")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		data := hostileSSEData(t, res.Body, "next")
		var out struct {
			Data struct {
				Feed feedEvent `json:"feed"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(data), &out); err != nil || out.Data.Feed.Reason != "unknown_position" {
			t.Fatalf("first event %s (%v), want an unknown_position Reset", data, err)
		}
	})
	t.Run("history", func(t *testing.T) {
		for _, q := range []string{
			`query($c: String!) { history(channel: "room:1", after: $c) { nodes { id } } }`,
			`query($c: String!) { history(channel: "room:1", first: 1000, after: $c) { nodes { id } } }`,
			`query($c: String!) { history(channel: "room:1", last: 10, before: $c) { nodes { id } } }`,
		} {
			if code := e.do(t, "", q, map[string]any{"c": forged}).code(t); code != "BAD_USER_INPUT" {
				t.Fatalf("%s: code %s, want BAD_USER_INPUT", q, code)
			}
		}
	})
}

// hostileGetOK GETs u and returns the body of a 200 answer.
func hostileGetOK(t *testing.T, u string, header http.Header) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, res.StatusCode, body)
	}
	return body
}

// hostileSSEReset opens GET /events and expects a reset with reason
// unknown_position as its first event.
func hostileSSEReset(t *testing.T, u string, header http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET %s: %d %s", u, res.StatusCode, b)
	}
	data := hostileSSEData(t, res.Body, "reset")
	if !strings.Contains(data, `"reason":"unknown_position"`) {
		t.Fatalf("reset %s, want reason unknown_position", data)
	}
}

// hostileSSEData returns the data of the first SSE event of a stream; its
// event type must be want.
func hostileSSEData(t *testing.T, body io.Reader, want string) string {
	t.Helper()
	sc := bufio.NewScanner(body)
	sc.Buffer(nil, 1<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if event != want {
				t.Fatalf("first event %q (%s), want %q", event, line, want)
			}
			return strings.TrimPrefix(line, "data: ")
		case line == "":
			event = ""
		}
	}
	t.Fatalf("stream ended without an event: %v", sc.Err())
	return ""
}

// hostileWait polls cond until it holds, failing the test after waitTimeout.
func hostileWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
