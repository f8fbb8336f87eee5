package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pushgate/pushgate/console"
	"github.com/pushgate/pushgate/pubsub"
)

// TestConsoleRoute: /console and its files exist only with Config.Console,
// with the console's headers; the routes the page uses answer its origin.
func TestConsoleRoute(t *testing.T) {
	fetch := func(t *testing.T, url string, header ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}

	off := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	for _, p := range []string{"/console", "/console/", "/console/console.js"} {
		if res, _ := fetch(t, off.url+p); res.StatusCode != http.StatusNotFound {
			t.Errorf("without Console, %s: %d", p, res.StatusCode)
		}
	}

	cfg := testConfig()
	cfg.Console = true
	on := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	res, page := fetch(t, on.url+"/console")
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
		res.Header.Get("Content-Security-Policy") != console.ContentSecurityPolicy || !strings.Contains(page, "<title>pushgate console</title>") {
		t.Fatalf("GET /console: %d %q %q\n%.200s", res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Content-Security-Policy"), page)
	}
	if res, _ := fetch(t, on.url+"/console/console.js"); res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Errorf("GET /console/console.js: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if res, _ := fetch(t, on.url+"/console/"); res.StatusCode != http.StatusMovedPermanently {
		t.Errorf("GET /console/: %d", res.StatusCode)
	}
	// The page's own origin may use /graphql (its Origin is the server's).
	req, _ := http.NewRequest(http.MethodPost, on.url+"/graphql", strings.NewReader(`{"query":"{ channel(name: \"a\") { retained } }"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", on.url)
	req.Header.Set("Authorization", "Bearer "+testKey)
	gres, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	gres.Body.Close()
	if gres.StatusCode != http.StatusOK {
		t.Errorf("POST /graphql from the console's origin: %d", gres.StatusCode)
	}
}
