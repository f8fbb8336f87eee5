package observe

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	coderws "github.com/coder/websocket"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"
)

// Stream is the account of one streaming connection (WebSocket, SSE,
// graphql-sse) or long-poll: the gauges while it is open, the messages
// written to it, how it ended, and for streams a log line when it opens
// and one when it closes. A nil *Stream accounts nothing, so callers
// need not check whether metrics are on. Open and End count once each,
// whoever calls them; End before Open counts nothing.
type Stream struct {
	m            *Metrics
	transport    Transport
	log          *zerolog.Logger
	start        time.Time
	subscription bool // it is one subscription (SSE, long-poll)
	opened       atomic.Bool
	ended        atomic.Bool
	delivered    atomic.Int64
}

type streamKey struct{}

// NewStream returns the account of a stream of transport t opened by r,
// not yet open (Open); nil when m is nil.
func (m *Metrics) NewStream(t Transport, r *http.Request) *Stream {
	if m == nil {
		return nil
	}
	return &Stream{m: m, transport: t, log: hlog.FromRequest(r)}
}

// WithStream returns ctx carrying s, for the layers that count its
// subscriptions and deliveries (StreamOf).
func WithStream(ctx context.Context, s *Stream) context.Context {
	return context.WithValue(ctx, streamKey{}, s)
}

// StreamOf returns the stream ctx carries (WithStream), or nil.
func StreamOf(ctx context.Context) *Stream {
	s, _ := ctx.Value(streamKey{}).(*Stream)
	return s
}

// Open counts the stream open; subscription: it is one subscription. It
// logs the opening of streams (not of long-polls, which the access log
// has) with the fields of e, if any.
func (s *Stream) Open(subscription bool, fields func(*zerolog.Event)) {
	if s == nil || s.opened.Load() { // once: each caller opens a stream once
		return
	}
	s.start, s.subscription = time.Now(), subscription
	s.opened.Store(true) // publishes start and subscription to end
	s.m.connections[s.transport].Inc()
	s.m.connectionsTotal[s.transport].Inc()
	if subscription {
		s.m.subscriptions[s.transport].Inc()
	}
	if s.transport == Poll {
		return
	}
	e := s.log.Info().Str("transport", transportNames[s.transport])
	if fields != nil {
		fields(e)
	}
	e.Msg("stream open")
}

// Deliver counts messages written to the stream at now, created being the
// times the store appended them.
func (s *Stream) Deliver(now time.Time, created ...time.Time) {
	if s == nil || len(created) == 0 {
		return
	}
	s.delivered.Add(int64(len(created)))
	s.m.delivered[s.transport].Add(float64(len(created)))
	obs := s.m.latency[s.transport]
	for _, t := range created {
		obs.Observe(max(now.Sub(t).Seconds(), 0)) // clocks of several nodes may disagree
	}
}

// End says how a stream ended; the zero End is "no reason noted".
type End struct {
	Drop   Drop
	By     string // "client" or "server"
	Reason string // why, in a few words (never a client's own text)
	Code   int    // the WebSocket close code, 0 for none
}

// End counts the stream closed, once, and logs it.
func (s *Stream) End(e End) {
	if s == nil || !s.opened.Load() || !s.ended.CompareAndSwap(false, true) {
		return
	}
	m := s.m
	m.connections[s.transport].Dec()
	if s.subscription {
		m.subscriptions[s.transport].Dec()
	}
	m.Dropped(e.Drop)
	if s.transport == Poll {
		return
	}
	ev := s.log.Info().
		Str("transport", transportNames[s.transport]).
		Dur("duration", time.Since(s.start)).
		Int64("delivered", s.delivered.Load())
	if e.By != "" {
		ev = ev.Str("closed_by", e.By)
	}
	if e.Code != 0 {
		ev = ev.Int("close_code", e.Code)
	}
	if e.Drop != DropNone {
		ev = ev.Str("drop", dropNames[e.Drop])
	}
	ev.Str("reason", e.Reason).Msg("stream closed")
}

// WSStream is a WebSocket's account: what closed it first.
type WSStream struct {
	*Stream
	mu     sync.Mutex
	first  End  // the first close seen; By "" until then
	slow   bool // a write timed out
	closed bool
}

// NewWSStream returns the account of a WebSocket upgrade by r; nil when m
// is nil. It opens when the connection is accepted.
func (m *Metrics) NewWSStream(r *http.Request) *WSStream {
	s := m.NewStream(WebSocket, r)
	if s == nil {
		return nil
	}
	return &WSStream{Stream: s}
}

// Accepted opens the account of the accepted conn.
func (s *WSStream) Accepted(conn interface {
	io.Closer
	Subprotocol() string
}) {
	if s == nil {
		return
	}
	s.Open(false, func(e *zerolog.Event) { e.Str("subprotocol", conn.Subprotocol()) })
}

// Note notes e as the connection's end unless an end was noted before:
// the first close seen (the client's, the server's, a failed read or
// write) is the one the account reports.
func (s *WSStream) Note(e End) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first.By == "" {
		s.first = e
	}
}

// ReadFailed notes why reading ended: the client's close frame, or the
// connection lost. A read of a connection the server closed notes nothing.
func (s *WSStream) ReadFailed(err error) {
	if s == nil || errors.Is(err, net.ErrClosed) {
		return
	}
	switch code := coderws.CloseStatus(err); {
	case errors.Is(err, transport.ErrWebsocketClosed):
		s.Note(End{By: "client", Code: int(coderws.StatusNormalClosure), Reason: "client closed"})
	case code != -1:
		s.Note(End{By: "client", Code: int(code), Reason: "client closed"})
	default:
		s.Note(End{By: "client", Code: int(coderws.StatusAbnormalClosure), Reason: "connection lost"})
	}
}

// SlowClient notes a write that did not complete within its write
// timeout: the connection ends as a dropped slow client.
func (s *WSStream) SlowClient() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.slow = true
	s.mu.Unlock()
	s.Note(End{By: "server", Code: int(coderws.StatusAbnormalClosure), Reason: "slow client: write timed out"})
}

// Closing notes the server's close frame: code, reason, and why the
// server dropped the connection (DropNone: it did not, e.g. a protocol
// error or a normal end).
func (s *WSStream) Closing(code int, reason string, drop Drop) {
	if s == nil {
		return
	}
	s.Note(End{By: "server", Code: code, Reason: reason, Drop: drop})
}

// Done ends the account once the connection is closed.
func (s *WSStream) Done() {
	if s == nil {
		return
	}
	s.mu.Lock()
	e, slow := s.first, s.slow
	s.closed = true
	s.mu.Unlock()
	if slow {
		e.Drop = DropSlowClient
	}
	s.End(e)
}

// Transport is the transport the stream was opened with.
func (s *Stream) Transport() Transport { return s.transport }
