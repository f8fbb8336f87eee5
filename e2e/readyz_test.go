package e2e

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/pushclient"
	"github.com/pushgate/pushgate/internal/redistest"
)

func statusOf(t *testing.T, url string) int {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// TestReadyzFollowsRedis: while Redis is down a node answers /readyz with
// 503 (within the probe's 2 s bound) and /healthz with 200, keeps an open
// WebSocket, and is ready again once Redis is back; the WebSocket then
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

	redis.Stop(t)
	start := time.Now()
	if got := statusOf(t, n.url()+"/readyz"); got != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with Redis down: %d, want 503", got)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("/readyz took %v to answer with Redis down", took)
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
