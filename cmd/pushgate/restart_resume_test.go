package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/pushclient"
	"github.com/pushgate/pushgate/internal/redistest"
)

// TestRunRedisResumeAcrossRestart: a subscriber follows a channel on
// pushgate with --redis-url; pushgate stops (the subscriber loses its
// connection) and a new pushgate starts on the same Redis; messages are
// sent while the subscriber is away. History is intact, and the subscriber,
// resuming with the cursor of the last message it saw, receives exactly
// the messages sent while it was away, in order, then live ones, and
// nothing twice.
func TestRunRedisResumeAcrossRestart(t *testing.T) {
	r := redistest.Start(t)
	const ch = "orders:77"
	p1 := start(t, "--redis-url", r.URL())
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	pos, err := pushclient.PollOnce(ctx, p1.url, []string{ch}, "", key, 0)
	if err != nil {
		t.Fatal(err)
	}
	c1 := dialFeed(t, p1, []string{ch}, pos.Cursor)
	var last msg
	for i := 1; i <= 5; i++ {
		sent := p1.send(t, ch, i)
		if last = c1.next(t); last.ID != sent.ID {
			t.Fatalf("before the restart: got id %s, want %s", last.ID, sent.ID)
		}
	}
	if err := p1.stop(); err != nil {
		t.Fatal(err)
	}
	c1.waitClosed(t)

	p2 := start(t, "--redis-url", r.URL())
	var away []string
	for i := 6; i <= 10; i++ {
		away = append(away, p2.send(t, ch, i).ID)
	}
	h := p2.history(t, ch)
	if len(h) != 10 {
		t.Fatalf("history after the restart: %d messages, want 10", len(h))
	}
	for i, m := range h {
		if m.ID != fmt.Sprint(i+1) || string(m.Data) != fmt.Sprint(i+1) {
			t.Fatalf("history message %d after the restart: %+v", i, m)
		}
	}

	c2 := dialFeed(t, p2, []string{ch}, last.Cursor)
	for _, id := range away {
		if got := c2.next(t); got.ID != id {
			t.Fatalf("resumed feed: got id %s, want %s (sent while away: %v)", got.ID, id, away)
		}
	}
	live := p2.send(t, ch, 11)
	if got := c2.next(t); got.ID != live.ID || live.ID != "11" {
		t.Fatalf("live after the resume: got %+v, want id %s", got, live.ID)
	}
	select {
	case m := <-c2.events:
		t.Fatalf("unexpected event after the live message (a duplicate?): %+v", m)
	case <-time.After(300 * time.Millisecond):
	}
}
