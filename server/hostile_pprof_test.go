package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
)

// TestPprofOnlyForUnscopedKeys: with Pprof on, the profiles are served to
// an API key allowed every channel (no pattern, or "*"); a key scoped to a
// namespace, a token and anonymous requests get 404; /debug/pprof/cmdline,
// which would show --api-key and --jwt-secret, is 404 for everyone.
func TestPprofOnlyForUnscopedKeys(t *testing.T) {
	cfg := anonConfig()
	cfg.Pprof = true
	cfg.APIKeys = []access.APIKey{
		{Name: "admin", Secret: "admin-secret"},
		{Name: "star", Secret: "star-secret", Channels: []string{"*"}},
		{Name: "orders", Secret: "orders-secret", Channels: []string{"orders:*"}},
		{Name: "two", Secret: "two-secret", Channels: []string{"orders:*", "news:*"}},
	}
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	tok := token(t, "alice", []string{"*"}, time.Hour)
	status := func(path, cred string) int {
		req, _ := http.NewRequest(http.MethodGet, e.url+path, nil)
		if cred != "" {
			req.Header.Set("Authorization", "Bearer "+cred)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for _, tc := range []struct {
		cred string
		want int
	}{
		{"admin-secret", http.StatusOK},
		{"star-secret", http.StatusOK},
		{"orders-secret", http.StatusNotFound},
		{"two-secret", http.StatusNotFound},
		{tok, http.StatusNotFound},
		{"", http.StatusNotFound},
	} {
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/symbol"} {
			if got := status(path, tc.cred); got != tc.want {
				t.Errorf("%s with %.12s: %d, want %d", path, tc.cred, got, tc.want)
			}
		}
		if got := status("/debug/pprof/cmdline", tc.cred); got != http.StatusNotFound {
			t.Errorf("cmdline with %.12s: %d, want 404", tc.cred, got)
		}
	}
}
