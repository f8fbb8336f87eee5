package delivery

import (
	"context"
	"errors"
	"net/http"
	"sync"
)

// ErrShutdown is the cause of the context of a stream that ends because
// its server shuts down (server.ErrShutdown is this error).
var ErrShutdown = errors.New("server shutting down")

// ShuttingDown reports whether ctx ended because its server shuts down.
func ShuttingDown(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), ErrShutdown)
}

// Shutdowns ends streams that outlive their request (SSE, WebSocket) when their
// server shuts down. Such a stream cannot hang on the base context: its
// request's context, the only way to it, is cancelled when the handler
// returns. A hijacked connection is not net/http's any more, and
// http.Server.Shutdown neither ends nor waits for it, but it calls the
// functions registered with RegisterOnShutdown: on the first stream of a
// server, one is registered that cancels every open stream with
// ErrShutdown, as cancelling the base context does for the others. One Shutdowns serves
// every stream of a server; its zero value is ready.
type Shutdowns struct {
	mu      sync.Mutex
	servers map[*http.Server]*serverStreams
}

type serverStreams struct {
	down    bool
	streams map[*context.CancelCauseFunc]struct{}
}

// Watch cancels with ErrShutdown when r's server shuts down, at once if it
// has; stop forgets cancel. Without a server (a handler called directly),
// nothing is watched.
func (s *Shutdowns) Watch(r *http.Request, cancel context.CancelCauseFunc) (stop func()) {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil {
		return func() {}
	}
	s.mu.Lock()
	if s.servers == nil {
		s.servers = make(map[*http.Server]*serverStreams)
	}
	ss := s.servers[srv]
	if ss == nil {
		ss = &serverStreams{streams: make(map[*context.CancelCauseFunc]struct{})}
		s.servers[srv] = ss
		srv.RegisterOnShutdown(func() { s.shutdown(srv) })
	}
	if ss.down {
		s.mu.Unlock()
		cancel(ErrShutdown)
		return func() {}
	}
	key := &cancel
	ss.streams[key] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(ss.streams, key)
		s.mu.Unlock()
	}
}

func (s *Shutdowns) shutdown(srv *http.Server) {
	s.mu.Lock()
	ss := s.servers[srv]
	ss.down = true
	cancels := make([]context.CancelCauseFunc, 0, len(ss.streams))
	for c := range ss.streams {
		cancels = append(cancels, *c)
	}
	clear(ss.streams)
	s.mu.Unlock()
	for _, c := range cancels {
		c(ErrShutdown)
	}
}
