package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestGSSEStream: the graphql-sse subscriber reads the execution results
// of a chunked event stream written a few bytes at a time (the warm-up
// marks its channel live), and its feed ends with the code of an error
// result, or at the operation's complete event.
func TestGSSEStream(t *testing.T) {
	const run = 7
	warm := fmt.Sprintf(`{"data":{"feed":{"__typename":"Message","channel":"bench:shared","id":"1","event":null,`+
		`"data":{"r":%d,"warm":true},"createdAt":"2025-11-26T10:00:00.000Z","cursor":"c1"}}}`, run)
	for _, tc := range []struct {
		name, end, want string
	}{
		{"an error result", `event: next` + "\n" + `data: {"errors":[{"message":"no","extensions":{"code":"FORBIDDEN"}}],"data":null}` + "\n\n", "gsse feed: FORBIDDEN"},
		{"complete", "event: complete\n\n", "gsse read: the server completed the subscription"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPost || r.Header.Get("Accept") != "text/event-stream" ||
					r.Header.Get("Authorization") != "Bearer tok" {
					http.Error(w, "not a graphql-sse request", http.StatusBadRequest)
					return
				}
				body, _ := io.ReadAll(r.Body)
				if !strings.Contains(string(body), "feed(channels: $channels)") || !strings.Contains(string(body), `"channels":["bench:shared"]`) {
					http.Error(w, "not the feed subscription: "+string(body), http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", "text/event-stream")
				stream := ":\n\nevent: next\ndata: " + warm + "\n\n" + tc.end
				for len(stream) > 0 { // a chunk of 7 bytes at a time
					n := min(7, len(stream))
					_, _ = io.WriteString(w, stream[:n])
					w.(http.Flusher).Flush()
					stream = stream[n:]
				}
				<-r.Context().Done()
			}))
			defer srv.Close()

			live := &liveCounters{}
			s := &subscriber{kind: "gsse", channels: []string{"bench:shared"}, token: "tok",
				tr: newTracker(run, []string{"bench:shared"}, []int{0}, 1, live, &histogram{})}
			env := &subEnv{base: srv.URL, paths: []clientPath{{dial: (&net.Dialer{}).DialContext}}, loops: &feedLoops{}}
			defer env.loops.close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			s.run(ctx, env, 10*time.Second, func(*subscriber) {})
			if !s.connected {
				t.Fatalf("not connected: %v", s.connectErr)
			}
			if s.endErr == nil || s.errorKind(s.endErr) != tc.want {
				t.Fatalf("the feed ended with %v (%q), want %q", s.endErr, s.errorKind(s.endErr), tc.want)
			}
			if !s.tr.chans[0].warm.Load() || s.tr.stats.parseErrs != 0 {
				t.Fatalf("warm %v, parse errors %d", s.tr.chans[0].warm.Load(), s.tr.stats.parseErrs)
			}
		})
	}
}

// TestGSSENotAStream: a request refused with one JSON response instead of
// an event stream reads as the server's error code.
func TestGSSENotAStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"errors":[{"message":"too many","extensions":{"code":"RATE_LIMITED"}}]}`)
	}))
	defer srv.Close()
	s := &subscriber{kind: "gsse", channels: []string{"bench:shared"},
		tr: newTracker(7, []string{"bench:shared"}, []int{0}, 1, &liveCounters{}, &histogram{})}
	env := &subEnv{base: srv.URL, paths: []clientPath{{dial: (&net.Dialer{}).DialContext}}, loops: &feedLoops{}}
	defer env.loops.close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s.run(ctx, env, 10*time.Second, func(*subscriber) {})
	var se *statusError
	if s.connected || !errors.As(s.connectErr, &se) || se.code != "RATE_LIMITED" {
		t.Fatalf("connected %v, %v: want a RATE_LIMITED refusal", s.connected, s.connectErr)
	}
}
