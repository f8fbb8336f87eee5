package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushgate/pushgate/internal/pushclient"
)

// TestShutdownTellsClients: on SIGTERM (run's context ends) WebSocket
// clients are closed with 1012 (service restart), SSE streams end and a held
// poll answers with its cursor, so every client reconnects elsewhere and
// resumes.
func TestShutdownTellsClients(t *testing.T) {
	p := start(t, "--allow-anonymous")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ch := []string{"bye"}
	start, err := pushclient.PollOnce(ctx, p.url, ch, "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := pushclient.OpenWS(ctx, p.url, ch, start.Cursor, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	sse, err := pushclient.OpenSSE(ctx, p.url, ch, start.Cursor, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sse.Close()
	// Both streams are live once they deliver a message.
	p.send(t, "bye", 1)
	for _, s := range []pushclient.Stream{ws, sse} {
		if ev, err := s.Next(ctx); err != nil || ev.Message == nil {
			t.Fatalf("first event: %+v %v", ev, err)
		}
	}
	cursor := start.Cursor
	type answer struct {
		r   pushclient.PollResponse
		err error
	}
	held := make(chan answer, 1)
	go func() {
		r, err := pushclient.PollOnce(ctx, p.url, ch, cursor, "", 40)
		held <- answer{r, err}
	}()
	// The poll holds only after it has the message before it: take it
	// first, then hold with the cursor after it.
	first := <-held
	if first.err != nil || len(first.r.Messages) != 1 {
		t.Fatalf("poll: %+v %v", first.r, first.err)
	}
	go func() {
		r, err := pushclient.PollOnce(ctx, p.url, ch, first.r.Cursor, "", 40)
		held <- answer{r, err}
	}()
	// Held: the gauge counts a long-poll while it holds.
	deadline := time.Now().Add(timeout)
	for {
		_, body := p.get(t, "/metrics", "")
		if metric(body, `pushgate_connections{transport="poll"}`) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the poll is not held after %v", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := p.stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	_, err = ws.Next(ctx)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1012 {
		t.Fatalf("WebSocket ended with %v, want close 1012", err)
	}
	if _, err := sse.Next(ctx); err == nil {
		t.Fatal("SSE stream still open after shutdown")
	}
	a := <-held
	if a.err != nil || len(a.r.Messages) != 0 || a.r.Cursor != first.r.Cursor {
		t.Fatalf("held poll at shutdown: %+v %v, want no messages and cursor %s", a.r, a.err, first.r.Cursor)
	}
}
