package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
)

// Hostile clients and HTTP methods (issue 12, item 9).

// rawHead sends HEAD path on a fresh TCP connection and returns the
// response and every byte the server wrote after its header, up to the
// connection's close.
func rawHead(t *testing.T, e *env, path string, beforeEOF func()) (*http.Response, []byte) {
	t.Helper()
	u, _ := url.Parse(e.url)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(waitTimeout))
	fmt.Fprintf(conn, "HEAD %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, u.Host)
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, &http.Request{Method: http.MethodHead})
	if err != nil {
		t.Fatalf("HEAD %s: %v", path, err)
	}
	if beforeEOF != nil {
		beforeEOF()
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("HEAD %s: after the header: %v (read %q)", path, err, rest)
	}
	return res, rest
}

// TestHeadOpensNothing: HEAD /events and HEAD /poll answer the status and
// headers of their GET and nothing after them (no chunked body without
// Transfer-Encoding), subscribe to nothing (presence stays empty) and take
// no stream slot (they pass while the only one is held); a HEAD that its
// GET would refuse gets the same status.
func TestHeadOpensNothing(t *testing.T) {
	cfg := anonConfig()
	cfg.Namespaces = access.Namespaces{Named: map[string]access.Namespace{"room": {Presence: true, AnonymousRead: true}}}
	cfg.Limits.MaxConnectionsPerIP = 1
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	cursor := e.cursor(t, "room:1")

	for _, tt := range []struct {
		path, contentType string
	}{
		{"/events?channel=room:1", "text/event-stream; charset=utf-8"},
		{"/events?channel=room:1&cursor=" + url.QueryEscape(cursor), "text/event-stream; charset=utf-8"},
		{"/poll?channel=room:1&timeout=50&cursor=" + url.QueryEscape(cursor), "application/json"},
	} {
		res, rest := rawHead(t, e, tt.path, func() {
			if p := e.presence(t, "room:1").Channel.Presence; p == nil || p.Count != 0 {
				t.Errorf("HEAD %s: presence %+v while its connection is open", tt.path, p)
			}
		})
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != tt.contentType || len(rest) != 0 ||
			res.Header.Get("Transfer-Encoding") != "" {
			t.Fatalf("HEAD %s: %d %v, then %q", tt.path, res.StatusCode, res.Header, rest)
		}
	}

	// Refusals: as the GET's, without a body.
	for path, status := range map[string]int{
		"/events?channel=bad%20name":                  http.StatusBadRequest,
		"/events?channel=a&cursor=nope":               http.StatusBadRequest,
		"/poll?channel=a&timeout=99":                  http.StatusBadRequest,
		"/poll?channel=a&limit=0":                     http.StatusBadRequest,
		"/events?channel=user:x":                      http.StatusForbidden,
		"/poll?channel=user:x&token=nope":             http.StatusUnauthorized,
		"/events?" + strings.Repeat("channel=c&", 33): http.StatusBadRequest,
	} {
		res, rest := rawHead(t, e, path, nil)
		if res.StatusCode != status || len(rest) != 0 {
			t.Fatalf("HEAD %s: %d, then %q; want %d", path, res.StatusCode, rest, status)
		}
		if s := e.status(t, path, nil); s != status {
			t.Fatalf("GET %s: %d, HEAD %d", path, s, status)
		}
	}

	// With the IP's one stream slot held, a HEAD still answers: it takes
	// none (a GET is refused).
	e.openStream(t, "/events?channel=room:2", nil)
	for _, path := range []string{"/events?channel=room:1", "/poll?channel=room:1&timeout=0"} {
		if res, rest := rawHead(t, e, path, nil); res.StatusCode != http.StatusOK || len(rest) != 0 {
			t.Fatalf("HEAD %s with the slot held: %d, then %q", path, res.StatusCode, rest)
		}
		if s := e.status(t, path, nil); s != http.StatusTooManyRequests {
			t.Fatalf("GET %s with the slot held: %d", path, s)
		}
	}
}

// TestMethodNotAllowed: a method a route does not serve gets 405 with
// Allow and the JSON error METHOD_NOT_ALLOWED, as the README promises,
// not the 404 of an unknown path; unknown paths keep their 404.
func TestMethodNotAllowed(t *testing.T) {
	cfg := anonConfig()
	cfg.MetricsToken = "scrape"
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	for _, tt := range []struct{ method, path, allow string }{
		{http.MethodPost, "/events?channel=a", "GET, HEAD, OPTIONS"},
		{http.MethodPost, "/poll?channel=a", "GET, HEAD, OPTIONS"},
		{http.MethodDelete, "/poll", "GET, HEAD, OPTIONS"},
		{http.MethodPost, "/healthz", "GET, HEAD"},
		{http.MethodPost, "/readyz", "GET, HEAD"},
		{http.MethodPost, "/metrics", "GET, HEAD"},
		{http.MethodPut, "/metrics", "GET, HEAD"},
		{http.MethodPut, "/graphql", "GET, POST, OPTIONS"},
		{http.MethodHead, "/graphql", "GET, POST, OPTIONS"},
	} {
		req, _ := http.NewRequest(tt.method, e.url+tt.path, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var body struct {
			Error struct{ Code, Message string }
		}
		if tt.method != http.MethodHead {
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("%s %s: %d %q", tt.method, tt.path, res.StatusCode, raw)
			}
		} else {
			body.Error.Code, body.Error.Message = "METHOD_NOT_ALLOWED", tt.method
		}
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != tt.allow ||
			body.Error.Code != "METHOD_NOT_ALLOWED" || !strings.Contains(body.Error.Message, tt.method) {
			t.Fatalf("%s %s: %d Allow %q %+v", tt.method, tt.path, res.StatusCode, res.Header.Get("Allow"), body.Error)
		}
	}
	for _, path := range []string{"/nope", "/events/x", "/healthz/x"} {
		if s := e.status(t, path, nil); s != http.StatusNotFound {
			t.Fatalf("GET %s: %d", path, s)
		}
	}
	// The allowed methods still work.
	for _, path := range []string{"/healthz", "/readyz"} {
		if res, rest := rawHead(t, e, path, nil); res.StatusCode != http.StatusOK || len(rest) != 0 {
			t.Fatalf("HEAD %s: %d %q", path, res.StatusCode, rest)
		}
	}
}
