package delivery

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/observe"
)

// Conn is where a stream's frames go. Write writes all of p or fails; a
// connection that cannot take p at once may keep the rest and finish it
// on a goroutine of its own (Congested until it has, Wait waits for it),
// and a write that fails closes the connection, TimedOut then telling
// whether the client was too slow for the write timeout. Close closes it;
// later writes fail. Socket (a hijacked connection) is one; a transport
// may wrap one to serialize its own messages with the stream's.
type Conn interface {
	Write(p []byte) (int, error)
	Congested() bool
	Wait()
	TimedOut() bool
	Close() error
}

// Encoder frames a transport's events: it is all a transport tells a
// stream of its wire format. Each method appends to dst and returns the
// extended slice; it must not keep dst, and it runs on the stream's
// writer (one at a time per stream), so it may keep per-stream state.
type Encoder interface {
	// AppendEvent appends ev as one frame (an SSE block, a WebSocket
	// message): the events of one write are appended one after another.
	AppendEvent(dst []byte, ev pubsub.Event) []byte
	// AppendHeartbeat appends what keeps an idle stream's connection
	// alive; nothing: no heartbeat.
	AppendHeartbeat(dst []byte) []byte
	// AppendEnd appends the last frames of a stream ending for e (whose
	// Drop is DropExpired when its token expired), cursor naming where
	// its client resumes; nothing: the stream just ends.
	AppendEnd(dst []byte, e observe.End, cursor pubsub.Cursor) []byte
}

// Options make a Stream.
type Options struct {
	// Sub is the events, closed by the caller. Nil: the transport writes
	// every event itself (Send), as for an operation gqlgen executes.
	Sub     *pubsub.Subscription
	Conn    Conn
	Encoder Encoder
	Writers *Writers // the server's; unused without Sub
	// Account counts the messages written (nil: none).
	Account *observe.Stream
	// Chunked frames each write as one chunk of an HTTP/1.1 chunked body,
	// and Finish ends the body: a hijacked streamed response.
	Chunked bool
	// Heartbeat, if not 0, writes the encoder's heartbeat after this long,
	// and again every Heartbeat, until the stream ends.
	Heartbeat time.Duration
	// Ctx is the stream's: when the subscription ends while Ctx has not,
	// the stream ends (its end says why); when Ctx ended, the caller names
	// the end (Finish).
	Ctx context.Context
	// OnEnd is called once, with the first end noted, when the stream
	// ends: its client went away, a write failed (a slow client), its
	// subscription ended, a panic, Finish or End. It must not block: the
	// broker's fan-out may call it. Nil: nothing.
	OnEnd func(observe.End)
	// OnPanic is told of a panic recovered while the stream wrote; the
	// stream then ends with InternalEnd. Nil: nothing.
	OnPanic func(v any)
	// OnSubscriptionEnd, if set, is called (maybe more than once, never
	// blocking) instead of End when the subscription ends while Ctx has
	// not: the transport ends the stream itself, with its end frame
	// (Finish). Nil: the stream ends, saying why.
	OnSubscriptionEnd func()
}

// maxCoalesce bounds how many queued events one write carries.
const maxCoalesce = 64

// Stream is one subscription delivered to one connection: it has no
// goroutine of its own. When its subscription queues events (the broker's
// fan-out, the subscription's catch-up), the stream is handed to the
// writers, which write everything it has queued, up to maxCoalesce events
// in one write, framed by the encoder. A congested connection holds its
// streams until it has written what it holds (Socket.OnResume); events
// wait in the subscription meanwhile, which falls back to reading the
// store when they are too many.
//
// Every stream ends the same way (End): the first reason noted wins, its
// writes stop, OnEnd is called. A write that fails ends it (SlowClient
// when the client did not take it within the write timeout, ClientGone
// otherwise), and so does a panic while it writes (InternalEnd), which
// ends this stream and not the writers that serve every other one.
type Stream struct {
	o    Options
	turn writeTurn // its mu serializes writes

	// stopped: nothing more is written (set under turn.mu, read under it
	// or atomically).
	stopped atomic.Bool

	endMu  sync.Mutex
	ended  bool // state says why
	called bool // OnEnd was called
	state  observe.End
	hb     *time.Timer // the next heartbeat
}

// Ends a stream notes by itself.
var (
	// InternalEnd: a recovered panic ended the stream.
	InternalEnd = observe.End{By: "server", Reason: "internal error"}
	// SlowClient: the client did not take a write within the write timeout.
	SlowClient = observe.End{Drop: observe.DropSlowClient, By: "server", Reason: "slow client: write timed out"}
	// ClientGone: a write failed, or the client closed the connection.
	ClientGone = observe.End{By: "client", Reason: "client gone"}
	// Expired: the token of the stream expired.
	Expired = observe.End{Drop: observe.DropExpired, By: "server", Reason: "token expired"}
	// Shutdown: the server shuts down.
	Shutdown = observe.End{Drop: observe.DropShutdown, By: "server", Reason: "server shutting down"}
)

// New returns a stream over o, not started.
func New(o Options) *Stream {
	if o.Ctx == nil {
		o.Ctx = context.Background()
	}
	return &Stream{o: o}
}

// Start has the subscription hand the stream to the writers whenever it
// queues events, hands it once for what was queued before, and starts the
// heartbeat.
func (s *Stream) Start() {
	if s.o.Sub != nil {
		s.o.Sub.SetNotify(s.Kick)
		s.Kick()
	}
	if s.o.Heartbeat > 0 {
		s.scheduleHeartbeat(s.o.Heartbeat)
	}
}

// Kick hands the stream to the writers: the subscription calls it when it
// queues an event, on the queuing goroutine, and once more when it ends.
func (s *Stream) Kick() {
	s.turn.hand(s.o.Writers, s, s.o.Sub.Pending())
	// The broker closed. When the stream's context ended (shutdown, token
	// expiry), its caller names the end instead.
	if s.o.Sub.Ended() && s.o.Ctx.Err() == nil {
		if s.o.OnSubscriptionEnd != nil {
			s.o.OnSubscriptionEnd()
			return
		}
		s.End(observe.End{By: "server", Reason: "subscription ended: " + s.o.Sub.Err().Error()})
	}
}

// flush writes what the stream has queued; a writer calls it. When another
// write holds the stream, that one hands it back on unlock.
func (s *Stream) flush() {
	if !s.turn.take() {
		return
	}
	if s.stopped.Load() {
		s.turn.mu.Unlock()
		return
	}
	if s.guarded(s.drainLocked, nil) {
		s.unlock()
	}
}

// guarded runs f (or, if f is nil, writes b) under turn.mu; false: it
// panicked, and the stream ended with turn.mu released (recoverLocked).
func (s *Stream) guarded(f func(), b *writeBuffer) (ok bool) {
	defer s.recoverLocked()
	if f != nil {
		f()
	} else {
		s.writeLocked(b)
	}
	return true
}

// recoverLocked ends the stream whose write (under turn.mu) panicked.
func (s *Stream) recoverLocked() {
	v := recover()
	if v == nil {
		return
	}
	s.stopped.Store(true)
	s.turn.mu.Unlock()
	if s.o.OnPanic != nil {
		s.o.OnPanic(v)
	}
	s.End(InternalEnd)
}

// unlock releases the stream's writes, handing it to the writers again if
// events were queued meanwhile.
func (s *Stream) unlock() {
	stopped := s.stopped.Load()
	if s.turn.release(s.o.Sub, s.o.Conn) && !stopped {
		s.Kick()
	}
}

// drainLocked writes up to maxCoalesce queued events in one write, as long
// as events are queued and the connection takes them at once.
func (s *Stream) drainLocked() {
	b := writeBuffers.get()
	defer writeBuffers.put(b)
	for !s.o.Conn.Congested() {
		b.events, b.created = b.events[:0], b.created[:0]
		for n := 0; n < maxCoalesce; n++ {
			ev, ok := s.o.Sub.TryNext()
			if !ok {
				break
			}
			b.events = s.o.Encoder.AppendEvent(b.events, ev)
			if ev.Message != nil {
				b.created = append(b.created, ev.Message.Time)
			}
		}
		if len(b.events) == 0 || !s.writeLocked(b) {
			return
		}
	}
}

// writeLocked writes b's events in one write; false: the stream ended. A
// connection that cannot take it at once finishes it on a goroutine of
// its own (Socket), and the stream waits until it is clear.
func (s *Stream) writeLocked(b *writeBuffer) bool {
	p := b.events
	if s.o.Chunked {
		b.frame = strconv.AppendUint(b.frame[:0], uint64(len(b.events)), 16)
		b.frame = append(b.frame, "\r\n"...)
		b.frame = append(b.frame, b.events...)
		b.frame = append(b.frame, "\r\n"...)
		p = b.frame
	}
	_, err := s.o.Conn.Write(p)
	switch {
	case err == nil:
		if len(b.created) > 0 {
			s.o.Account.Deliver(time.Now(), b.created...)
		}
		return true
	case s.o.Conn.TimedOut():
		s.End(SlowClient)
	default:
		s.End(ClientGone)
	}
	return false
}

// Send writes what appendFrames appends (the transport's own frames, such
// as an opening block) as one write, between the stream's other writes;
// false: the stream ended.
func (s *Stream) Send(appendFrames func(dst []byte) []byte) bool {
	b := writeBuffers.get()
	defer writeBuffers.put(b)
	b.events = appendFrames(b.events)
	s.turn.mu.Lock()
	if s.stopped.Load() {
		s.turn.mu.Unlock()
		return false
	}
	if !s.guarded(nil, b) {
		return false
	}
	s.unlock()
	return !s.stopped.Load()
}

// scheduleHeartbeat writes a heartbeat after d, and again every d, until
// the stream ends.
func (s *Stream) scheduleHeartbeat(d time.Duration) {
	s.endMu.Lock()
	defer s.endMu.Unlock()
	if !s.ended {
		s.hb = time.AfterFunc(d, func() {
			s.heartbeat()
			s.scheduleHeartbeat(d)
		})
	}
}

// heartbeat writes the encoder's heartbeat, unless a write is under way
// (which keeps the connection alive as well) or the connection is
// congested.
func (s *Stream) heartbeat() {
	if !s.turn.mu.TryLock() {
		return
	}
	if s.stopped.Load() || s.o.Conn.Congested() {
		s.turn.mu.Unlock()
		return
	}
	if s.guarded(s.heartbeatLocked, nil) {
		s.unlock()
	}
}

func (s *Stream) heartbeatLocked() {
	b := writeBuffers.get()
	defer writeBuffers.put(b)
	if b.events = s.o.Encoder.AppendHeartbeat(b.events); len(b.events) > 0 {
		s.writeLocked(b)
	}
}

// Finish ends the stream for e after writing the encoder's end frames and,
// Chunked, the end of the body, so that the client sees a clean end; it
// waits, within the write timeout, for what a congested connection still
// holds. It returns once no more of the stream's writes can be under way.
func (s *Stream) Finish(e observe.End) {
	// Why, first: the client may close as soon as it reads the end.
	s.record(e)
	s.turn.mu.Lock()
	if !s.stopped.Load() && !s.guarded(s.finishLocked, nil) {
		return
	}
	s.stopped.Store(true)
	s.End(e)
	s.turn.mu.Unlock()
}

// finishLocked writes the end of a stream whose end is recorded.
func (s *Stream) finishLocked() {
	b := writeBuffers.get()
	defer writeBuffers.put(b)
	var cursor pubsub.Cursor
	if s.o.Sub != nil {
		cursor = s.o.Sub.Cursor()
	}
	b.events = s.o.Encoder.AppendEnd(b.events, s.Ended(), cursor)
	if (len(b.events) == 0 || s.writeLocked(b)) && s.o.Chunked {
		_, _ = s.o.Conn.Write([]byte("0\r\n\r\n"))
	}
	s.o.Conn.Wait()
}

// Stop stops the stream's writes, waiting for one under way: no write of
// the stream follows its return (a transport then writes its own end,
// such as a WebSocket's complete). It does not end the stream.
func (s *Stream) Stop() {
	s.turn.mu.Lock()
	s.stopped.Store(true)
	s.turn.mu.Unlock()
}

// End ends the stream for e, unless it ended before (the first reason
// wins), and calls OnEnd once. It never blocks: a write under way may
// still finish (Stop waits for it).
func (s *Stream) End(e observe.End) {
	s.record(e)
	s.stopped.Store(true)
	s.endMu.Lock()
	first := !s.called
	s.called = true
	e = s.state
	s.endMu.Unlock()
	if first && s.o.OnEnd != nil {
		s.o.OnEnd(e)
	}
}

// record notes why the stream ends, if no reason was noted before, and
// stops its heartbeat.
func (s *Stream) record(e observe.End) {
	s.endMu.Lock()
	defer s.endMu.Unlock()
	if !s.ended {
		s.ended, s.state = true, e
		if s.hb != nil {
			s.hb.Stop()
		}
	}
}

// Ended returns why the stream ended; the zero End while it has not.
func (s *Stream) Ended() observe.End {
	s.endMu.Lock()
	defer s.endMu.Unlock()
	return s.state
}
