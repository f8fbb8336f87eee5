package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestShutdownsCancelStreams: http.Server.Shutdown cancels the watched
// streams of that server with ErrShutdown (not those that stopped being
// watched, not another server's), and a stream watched after it at once.
func TestShutdownsCancelStreams(t *testing.T) {
	var s shutdowns
	srv, other := &http.Server{}, &http.Server{}
	stream := func(srv *http.Server) (context.Context, func()) {
		r := httptest.NewRequest(http.MethodGet, "/events", nil)
		r = r.WithContext(context.WithValue(r.Context(), http.ServerContextKey, srv))
		ctx, cancel := context.WithCancelCause(context.Background())
		return ctx, s.watch(r, cancel)
	}
	a, _ := stream(srv)
	b, stopB := stream(srv)
	c, _ := stream(other)
	stopB()
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Shutdown runs the hooks on goroutines of their own.
	select {
	case <-a.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a watched stream was not cancelled")
	}
	if !errors.Is(context.Cause(a), ErrShutdown) {
		t.Fatalf("cause %v", context.Cause(a))
	}
	if b.Err() != nil || c.Err() != nil {
		t.Fatalf("an unwatched stream (%v) or another server's (%v) was cancelled", b.Err(), c.Err())
	}
	late, _ := stream(srv)
	if !errors.Is(context.Cause(late), ErrShutdown) {
		t.Fatalf("a stream after the shutdown: %v", context.Cause(late))
	}
}

// TestStreamsWait: Wait returns once every stream counted has closed, even
// when streams open while it waits (a WaitGroup forbids that); a stream's
// close counts once.
func TestStreamsWait(t *testing.T) {
	var s Streams
	if err := s.Wait(context.Background()); err != nil {
		t.Fatalf("no streams: %v", err)
	}
	a, b := s.open(), s.open()
	short, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("two open: %v", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- s.Wait(context.Background()) }()
	c := s.open() // while Wait waits
	a()
	a() // twice: counts once
	b()
	select {
	case err := <-waited:
		t.Fatalf("Wait returned (%v) with a stream open", err)
	case <-time.After(20 * time.Millisecond):
	}
	c()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return once every stream closed")
	}
}
