package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/pushgate/pushgate/pubsub"
)

// TestOrigins: browsers from a foreign origin are refused with 403 on the
// WebSocket, SSE, long-poll and GraphQL over HTTP; allowed origins get
// CORS headers; requests without Origin (mini-programs) and same-origin
// ones pass.
func TestOrigins(t *testing.T) {
	cfg := anonConfig()
	cfg.AllowedOrigins = []string{"https://h5.example.com", "https://*.shop.example"}
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	host := strings.TrimPrefix(e.url, "http://")
	paths := []string{"/events?channel=o", "/poll?channel=o&timeout=0"}

	for _, origin := range []string{"https://evil.example", "https://h5.example.com.evil.example", "null", "http://h5.example.com"} {
		h := http.Header{"Origin": {origin}}
		for _, path := range paths {
			wantRefused(t, e.open(t, context.Background(), path, h), http.StatusForbidden, "FORBIDDEN",
				"origin "+origin+" is not allowed")
			// The message names the setting that lets it in.
			wantRefused(t, e.open(t, context.Background(), path, h), http.StatusForbidden, "FORBIDDEN", "add it there, e.g. --allowed-origin ")
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
	if ids := e.ids(t, "o"); len(ids) != 0 {
		t.Fatalf("history of o: %v", ids)
	}

	for _, origin := range []string{"https://h5.example.com", "https://a.shop.example", "https://H5.Example.com"} {
		h := http.Header{"Origin": {origin}}
		for _, path := range paths {
			res := e.open(t, context.Background(), path, h)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || res.Header.Get("Access-Control-Allow-Origin") != origin ||
				res.Header.Get("Access-Control-Allow-Credentials") != "true" ||
				!strings.Contains(res.Header.Get("Access-Control-Expose-Headers"), "Retry-After") {
				t.Fatalf("%s from %s: %d, headers %v", path, origin, res.StatusCode, res.Header)
			}
		}
		conn, _, err := e.dialRaw(h)
		if err != nil {
			t.Fatalf("WebSocket from %s: %v", origin, err)
		}
		conn.Close()
	}

	// Without Origin, and from the server's own origin.
	for _, h := range []http.Header{nil, {"Origin": {"http://" + host}}} {
		for _, path := range paths {
			if s := e.status(t, path, h); s != http.StatusOK {
				t.Fatalf("%s with %v: %d", path, h, s)
			}
		}
		conn, _, err := e.dialRaw(h)
		if err != nil {
			t.Fatalf("WebSocket with %v: %v", h, err)
		}
		conn.Close()
	}
}

// TestOriginsDefaultAndAny: without an allow-list only the server's own
// origin passes; "*" lets any origin through, the WebSocket included.
func TestOriginsDefaultAndAny(t *testing.T) {
	e := startEnv(t, anonConfig(), memoryBroker(t, pubsub.Options{}))
	h := http.Header{"Origin": {"https://h5.example.com"}}
	wantRefused(t, e.open(t, context.Background(), "/poll?channel=o&timeout=0", h), http.StatusForbidden, "FORBIDDEN", "not allowed")
	e.wantWSRefused(t, h, http.StatusForbidden, "FORBIDDEN", "not allowed")

	cfg := anonConfig()
	cfg.AllowedOrigins = []string{"*"}
	e = startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	res := e.open(t, context.Background(), "/poll?channel=o&timeout=0", h)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Access-Control-Allow-Origin") != "https://h5.example.com" {
		t.Fatalf("any origin: %d %v", res.StatusCode, res.Header)
	}
	conn, _, err := e.dialRaw(h)
	if err != nil {
		t.Fatalf("WebSocket from any origin: %v", err)
	}
	conn.Close()
}

// TestPreflight: CORS preflights of allowed origins are answered on every
// browser route; others get 403.
func TestPreflight(t *testing.T) {
	cfg := anonConfig()
	cfg.AllowedOrigins = []string{"https://h5.example.com"}
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	preflight := func(path, origin, method string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, e.url+path, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for path, method := range map[string]string{"/graphql": "POST", "/events": "GET", "/poll": "GET"} {
		res := preflight(path, "https://h5.example.com", method)
		res.Body.Close()
		h := res.Header
		if res.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "https://h5.example.com" ||
			!strings.Contains(h.Get("Access-Control-Allow-Methods"), method) ||
			h.Get("Access-Control-Allow-Headers") != "authorization, content-type" || h.Get("Access-Control-Max-Age") == "" {
			t.Fatalf("preflight of %s: %d %v", path, res.StatusCode, h)
		}
		wantRefused(t, preflight(path, "https://evil.example", method), http.StatusForbidden, "FORBIDDEN", "not allowed")
	}

	// OPTIONS that is not a preflight.
	req, _ := http.NewRequest(http.MethodOptions, e.url+"/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Allow") != "GET" {
		t.Fatalf("OPTIONS /events: %d %v", res.StatusCode, res.Header)
	}
}
