package e2e

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushgate/pushgate/internal/pushclient"
)

// TestSIGTERMGracefulShutdown: the pushgate process, sent SIGTERM with a
// WebSocket and an SSE subscriber connected, closes the WebSocket with 1012
// (service restart), ends the SSE stream and exits with status 0 promptly:
// without waiting out its grace period for the streams to end by
// themselves.
func TestSIGTERMGracefulShutdown(t *testing.T) {
	// A grace period longer than kill waits before SIGKILL (30 s): exiting
	// with status 0 means the node ended its streams itself.
	n := startNode(t, "sigterm", "--allow-anonymous", "--shutdown-timeout", "5m")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch := []string{"bye"}
	pos, err := pushclient.PollOnce(ctx, n.url(), ch, "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := pushclient.OpenWS(ctx, n.url(), ch, pos.Cursor, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	sse, err := pushclient.OpenSSE(ctx, n.url(), ch, pos.Cursor, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sse.Close()
	if _, err := sender.Send(ctx, n.url(), "bye", 1, ""); err != nil {
		t.Fatal(err)
	}
	for _, s := range []pushclient.Stream{ws, sse} {
		if ev, err := s.Next(ctx); err != nil || ev.Message == nil || ev.Message.ID != "1" {
			t.Fatalf("first event: %+v %v", ev, err)
		}
	}

	began := time.Now()
	n.kill(syscall.SIGTERM)
	took := time.Since(began)
	n.mu.Lock()
	state := n.cmd.ProcessState
	n.mu.Unlock()
	if state == nil || !state.Exited() || state.ExitCode() != 0 {
		t.Fatalf("after SIGTERM the process ended with %v, want exit status 0", state)
	}
	_, err = ws.Next(ctx)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1012 {
		t.Fatalf("WebSocket ended with %v, want close 1012", err)
	}
	if _, err := sse.Next(ctx); err == nil {
		t.Fatal("SSE stream still open after SIGTERM")
	}
	t.Logf("exited 0 %v after SIGTERM", took.Round(time.Millisecond))
}
