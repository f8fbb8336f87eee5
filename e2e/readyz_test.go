package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/pushclient"
	"github.com/pushgate/pushgate/internal/redistest"
)

func statusOf(t *testing.T, url string) int {
	t.Helper()
	code, _ := get(t, url)
	return code
}

// get returns the status and body of GET url. It waits up to 20 s: the
// handlers bound themselves well below that.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 20 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res.StatusCode, string(body)
}

// TestReadyzFollowsRedis: while Redis does not answer, a node answers
// /readyz with 503 by its own bound (a probe's timeout must not decide),
// and while Redis is down, with 503 and /healthz with 200; it keeps an
// open WebSocket, and is ready again once Redis is back; the WebSocket then
// delivers what is sent.
func TestReadyzFollowsRedis(t *testing.T) {
	redis := redistest.Start(t)
	n := startNode(t, "a", "--redis-url", redis.URL(), "--allow-anonymous")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch := []string{"ready:1"}
	ws, err := pushclient.OpenWS(ctx, n.url(), ch, startCursor(ch...), "")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if got := statusOf(t, n.url()+"/readyz"); got != http.StatusOK {
		t.Fatalf("/readyz with Redis up: %d", got)
	}

	// Redis holds every command for a minute, longer than get waits: an
	// answer can only come from a bound, the handler's own (2 s) or the
	// Redis client's read timeout, whichever is first.
	if err := redis.Client(t).Do(ctx, "client", "pause", 60000, "all").Err(); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, n.url()+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "deadline exceeded") && !strings.Contains(body, "i/o timeout") {
		t.Fatalf("/readyz with Redis not answering: %d %s, want 503 at the handler's deadline", code, body)
	}

	redis.Stop(t)
	if code, body := get(t, n.url()+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with Redis down: %d %s, want 503", code, body)
	}
	if got := statusOf(t, n.url()+"/healthz"); got != http.StatusOK {
		t.Fatalf("/healthz with Redis down: %d, want 200", got)
	}

	redis.Start(t)
	waitFor(t, "/readyz after Redis is back", func() bool { return statusOf(t, n.url()+"/readyz") == http.StatusOK })
	waitFor(t, "a send after Redis is back", func() bool {
		_, err := sender.Send(ctx, n.url(), ch[0], map[string]int{"i": 1}, "ready-1")
		return err == nil
	})
	ev, err := ws.Next(ctx)
	if err != nil || ev.Message == nil || ev.Message.ID != "1" {
		t.Fatalf("the WebSocket open through the outage: %+v %v, want message 1", ev, err)
	}
}
