package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/pushgate/pushgate/pubsub"
)

// TestOriginLookAlikes (issue 12, item 10): with https://*.good.com
// allowed, origins that only look like a subdomain of good.com (the host
// is evil.com, behind a fragment, a query or userinfo; or the label before
// good.com is empty) are refused with 403 on every browser route: SSE,
// long-poll, GraphQL over HTTP and the WebSocket upgrade. Real subdomains,
// one label deep or more, pass.
func TestOriginLookAlikes(t *testing.T) {
	cfg := anonConfig()
	cfg.AllowedOrigins = []string{"https://*.good.com"}
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	paths := []string{"/events?channel=o", "/poll?channel=o&timeout=0"}

	for _, origin := range []string{
		"https://evil.com#.good.com", "https://evil.com?.good.com", "https://evil.com@x.good.com", "https://.good.com",
		"https://good.com", "https://a..good.com", "https://evil.com/.good.com", "https://x.good.com.evil.com",
		"http://x.good.com", "https://x.good.com:8443",
	} {
		h := http.Header{"Origin": {origin}}
		for _, path := range paths {
			wantRefusedNow(t, e, path, h, http.StatusForbidden, "FORBIDDEN", "is not allowed")
		}
		e.wantWSRefused(t, h, http.StatusForbidden, "FORBIDDEN", "is not allowed")
		req, _ := http.NewRequest(http.MethodPost, e.url+"/graphql", strings.NewReader(`{"query":"{ __typename }"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", origin)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, res, http.StatusForbidden, "FORBIDDEN", "is not allowed")
	}

	for _, origin := range []string{"https://x.good.com", "https://a.b.good.com", "https://X.Good.COM"} {
		h := http.Header{"Origin": {origin}}
		for _, path := range paths {
			res := e.open(t, context.Background(), path, h)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || res.Header.Get("Access-Control-Allow-Origin") != origin {
				t.Fatalf("%s from %s: %d %v", path, origin, res.StatusCode, res.Header)
			}
		}
		conn, _, err := e.dialRaw(h)
		if err != nil {
			t.Fatalf("WebSocket from %s: %v", origin, err)
		}
		conn.Close()
	}
}

// wantRefusedNow is wantRefused for a GET of path that may open a stream:
// an accepted stream fails the test at once instead of being read forever.
func wantRefusedNow(t *testing.T, e *env, path string, h http.Header, status int, code, message string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := e.open(t, ctx, path, h)
	if res.StatusCode != status {
		res.Body.Close()
		t.Fatalf("GET %s with %v: %s, want %d", path, h, res.Status, status)
	}
	wantRefused(t, res, status, code, message)
}
