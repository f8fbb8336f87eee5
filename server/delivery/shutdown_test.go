package delivery

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
	var s Shutdowns
	srv, other := &http.Server{}, &http.Server{}
	stream := func(srv *http.Server) (context.Context, func()) {
		r := httptest.NewRequest(http.MethodGet, "/events", nil)
		r = r.WithContext(context.WithValue(r.Context(), http.ServerContextKey, srv))
		ctx, cancel := context.WithCancelCause(context.Background())
		return ctx, s.Watch(r, cancel)
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
