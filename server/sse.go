package server

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/observe"
)

// sseOptions configure GET /events.
type sseOptions struct {
	heartbeat    time.Duration // comment line interval on an idle stream
	writeTimeout time.Duration // a write that does not complete drops the client
	retry        time.Duration // reconnection delay hinted to EventSource
	presence     *presence     // counts the stream's subject on its channels
	metrics      *Metrics      // accounts the stream
	streams      *Streams      // counts it open, for shutdown
}

// maxCoalesce bounds how many queued events one write carries.
const maxCoalesce = 64

// handleEvents serves GET /events, the SSE feed. Every message is one event
// whose id is the cursor right after it and whose single data line is the
// message JSON; a reset is "event: reset". An EventSource reconnecting with
// Last-Event-ID, or any client passing cursor, resumes without loss. The
// stream starts with an id-only block naming the start position, so even a
// client that reconnects before its first message resumes from where it
// started (the SSE spec sets lastEventId without dispatching an event).
// A stream opened with a token ends when the token expires, with
// "event: expired" and data {"reason":"token expired","cursor":...}.
//
// Once the headers are out, the connection is taken from net/http
// (hijacked) and written directly, and the handler returns. When the
// subscription queues events (the broker's fan-out, the subscription's
// catch-up), the stream is handed to the stream writers, which write each
// stream they are handed everything it has queued, coalesced, in chunked
// encoding; a fan-out costs no goroutine wake-up per delivery. A socket
// that cannot take a write at once is left to a goroutine of its own
// (deadlineConn). An idle stream holds no write buffer of its own and one
// small goroutine, which waits for the client to go away (watch).
func handleEvents(broker pubsub.Broker, auth *Auth, opts sseOptions) http.Handler {
	writers := newStreamWriters()
	stopping := new(shutdowns)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := parseReadRequest(r, true)
		if err != nil {
			writeErr(w, err)
			return
		}
		if r.ProtoMajor != 1 {
			writeError(w, http.StatusHTTPVersionNotSupported, "HTTP_VERSION_NOT_SUPPORTED", "GET /events streams over HTTP/1.1")
			return
		}
		// The stream outlives its request: once it is set up, the handler
		// returns and a small goroutine watches the socket (watch), so that
		// an idle stream holds neither the handler's stack nor net/http's
		// buffers. Its context keeps the request's values; it ends when the
		// server shuts down (shutdowns), or with the stream.
		var cleanup cleanups
		defer func() { cleanup.run() }() // unless the stream took it over
		ctx, cancel := context.WithCancelCause(context.WithoutCancel(r.Context()))
		stopWatch := stopping.watch(r, cancel)
		cleanup.add(func() { stopWatch(); cancel(nil) })
		cleanup.add(keepStreamSlot(r.Context()))
		sub, err := subscribeRead(ctx, broker, auth, req)
		if err != nil {
			writeErr(w, err)
			return
		}
		cleanup.add(sub.Close)
		// A token bounds the stream: when it expires the client gets
		// "event: expired" with its cursor (expiry.go).
		live, stop := auth.untilTokenExpires(ctx)
		cleanup.add(stop)
		if opts.presence != nil {
			cleanup.add(opts.presence.join(ctx, req.channels))
		}

		sseHeaders(w.Header())
		w.WriteHeader(http.StatusOK) // chunked: no length
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			zerolog.Ctx(ctx).Error().Err(err).Msg("SSE: hijack")
			return
		}
		dconn := newDeadlineConn(conn, opts.writeTimeout) // closes the socket from here on
		cleanup.add(opts.streams.open())
		cleanup.add(func() { _ = dconn.Close() })

		st := opts.metrics.NewStream(observe.SSE, r)
		st.Open(true, func(e *zerolog.Event) { e.Int("channels", len(req.channels)).Bool("resume", !req.cursor.IsZero()) })
		c := &sseConn{ctx: ctx, conn: dconn, sub: sub, st: st, writers: writers}
		c.conn.resume = c.kick
		cleanup.add(func() { st.End(c.endState()) })

		b := writeBuffers.get()
		b.events = append(b.events, "retry: "...)
		b.events = strconv.AppendInt(b.events, opts.retry.Milliseconds(), 10)
		b.events = append(b.events, "\nid: "...)
		b.events, _ = sub.Cursor().AppendText(b.events)
		b.events = append(b.events, "\n\n"...)
		c.turn.mu.Lock()
		c.writeLocked(b)
		c.unlock()
		writeBuffers.put(b)

		sub.SetNotify(c.kick)
		c.kick() // what was queued before
		c.scheduleHeartbeat(opts.heartbeat)
		stopEnd := context.AfterFunc(live, func() {
			defer recoverClient(ctx, "SSE stream end", func() { c.end(internalEnd) })
			switch {
			case tokenExpired(live) && ctx.Err() == nil:
				c.finish(observe.End{Drop: observe.DropExpired, By: "server", Reason: "token expired"}, true)
			case shuttingDown(ctx):
				c.finish(observe.End{Drop: observe.DropShutdown, By: "server", Reason: "server shutting down"}, false)
			}
		})
		cleanup.add(func() { stopEnd() })

		go c.watch(cleanup)
		cleanup = nil
	})
}

// sseHeaders are the headers of an SSE stream (and of a HEAD of one).
func sseHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	// The socket closes with the stream: no client may reuse it.
	h.Set("Connection", "close")
}

// watch waits for the end of the stream, then cleans up after it. Clients
// send nothing more: a read ends when the client goes away, or when the
// stream ended and closed the socket.
func (c *sseConn) watch(cleanup cleanups) {
	defer cleanup.run()
	defer recoverClient(c.ctx, "SSE stream", func() { c.end(internalEnd) })
	var one [1]byte
	for {
		if _, err := c.conn.Read(one[:]); err != nil {
			if c.conn.timedOut.Load() {
				c.end(slowClient)
			}
			c.end(observe.End{By: "client", Reason: "client gone"})
			return
		}
	}
}

// cleanups are functions to run in the reverse order of their adding.
type cleanups []func()

func (cs *cleanups) add(f func()) { *cs = append(*cs, f) }

func (cs cleanups) run() {
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// sseConn is one hijacked SSE stream.
type sseConn struct {
	ctx  context.Context // the request's
	conn *deadlineConn   // writes bounded by the write timeout
	sub  *pubsub.Subscription
	st   *observe.Stream

	writers *streamWriters
	turn    writeTurn // its mu serializes writes

	// broken: a panic ended the stream; its writes stop.
	broken atomic.Bool

	endMu  sync.Mutex
	ended  bool // state says why
	closed bool // the socket is closed
	state  observe.End
	hb     *time.Timer // the next heartbeat
}

// kick hands the stream to the writers: the subscription calls it when it
// queues an event, on the queuing goroutine.
func (c *sseConn) kick() {
	c.turn.hand(c.writers, c, c.sub.Pending())
	// The broker closed. When the request's context ended (shutdown), the
	// stream's end says so instead.
	if c.sub.Ended() && c.ctx.Err() == nil {
		c.end(observe.End{By: "server", Reason: "subscription ended: " + c.sub.Err().Error()})
	}
}

// flush writes what the stream has queued; a writer calls it. When another
// write holds the stream, that one hands it back on unlock. A panic while
// it writes ends this stream, not the writer that serves every stream.
func (c *sseConn) flush() {
	if !c.turn.take() {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			c.broken.Store(true)
			c.turn.mu.Unlock()
			logPanic(c.ctx, "SSE write", v)
			c.end(internalEnd)
		}
	}()
	if c.broken.Load() {
		c.turn.mu.Unlock()
		return
	}
	c.drainLocked()
	c.unlock()
}

// unlock releases the stream's writes, handing it to the writers again if
// events were queued meanwhile.
func (c *sseConn) unlock() {
	if c.turn.release(c.sub, c.conn) {
		c.kick()
	}
}

// scheduleHeartbeat writes a heartbeat after d, and again every d, until
// the stream ends.
func (c *sseConn) scheduleHeartbeat(d time.Duration) {
	c.endMu.Lock()
	defer c.endMu.Unlock()
	if !c.ended {
		c.hb = time.AfterFunc(d, func() {
			defer recoverClient(c.ctx, "SSE heartbeat", func() { c.end(internalEnd) })
			c.heartbeat()
			c.scheduleHeartbeat(d)
		})
	}
}

// drainLocked writes up to maxCoalesce queued events in one write, as long
// as events are queued and the socket takes them at once.
func (c *sseConn) drainLocked() {
	b := writeBuffers.get()
	defer writeBuffers.put(b)
	for !c.conn.congested() {
		b.events, b.created = b.events[:0], b.created[:0]
		for n := 0; n < maxCoalesce; n++ {
			ev, ok := c.sub.TryNext()
			if !ok {
				break
			}
			b.events = appendSSEEvent(b.events, ev)
			if ev.Message != nil {
				b.created = append(b.created, ev.Message.Time)
			}
		}
		if len(b.events) == 0 || !c.writeLocked(b) {
			return
		}
	}
}

// heartbeat writes a comment line, unless a write is under way.
func (c *sseConn) heartbeat() {
	if !c.turn.mu.TryLock() {
		return
	}
	defer c.unlock()
	if c.conn.congested() {
		return
	}
	b := writeBuffers.get()
	b.events = append(b.events, ": heartbeat\n\n"...)
	c.writeLocked(b)
	writeBuffers.put(b)
}

// writeLocked writes b as one chunk; false: the stream ended. A socket
// that cannot take it at once is finished by a goroutine of its own
// (deadlineConn), and the stream waits until it is clear.
func (c *sseConn) writeLocked(b *writeBuffer) bool {
	b.frame = strconv.AppendUint(b.frame[:0], uint64(len(b.events)), 16)
	b.frame = append(b.frame, "\r\n"...)
	b.frame = append(b.frame, b.events...)
	b.frame = append(b.frame, "\r\n"...)
	_, err := c.conn.Write(b.frame)
	switch {
	case err == nil:
		c.st.Deliver(time.Now(), b.created...)
		return true
	case c.conn.timedOut.Load():
		c.end(slowClient)
	default:
		c.end(observe.End{By: "client", Reason: "client gone"})
	}
	return false
}

// internalEnd is the end of a stream that a recovered panic ended.
var internalEnd = observe.End{By: "server", Reason: "internal error"}

// slowClient is the end of a stream whose client did not take a write
// within the write timeout.
var slowClient = observe.End{Drop: observe.DropSlowClient, By: "server", Reason: "slow client: write timed out"}

// finish ends the stream after writing the end of the chunked body, so the
// client sees a clean end; expired: "event: expired" with the cursor first.
func (c *sseConn) finish(e observe.End, expired bool) {
	// Why, first: the client may close as soon as it reads the end.
	c.record(e)
	c.turn.mu.Lock()
	b := writeBuffers.get()
	if expired {
		b.events = appendExpiredEvent(b.events, c.sub.Cursor())
	}
	if len(b.events) == 0 || c.writeLocked(b) {
		_, _ = c.conn.Write([]byte("0\r\n\r\n"))
	}
	writeBuffers.put(b)
	c.conn.wait() // for what a congested socket still holds, within the write timeout
	c.end(e)
	c.turn.mu.Unlock()
}

// end records why the stream ended (the first reason wins) and closes the
// socket, which ends the handler's wait; the handler cleans up. It never
// blocks: the fan-out may call it.
func (c *sseConn) end(e observe.End) {
	c.record(e)
	c.endMu.Lock()
	first := !c.closed
	c.closed = true
	e = c.state
	c.endMu.Unlock()
	if first {
		_ = c.conn.Close() // a slow client's was aborted already (deadlineConn)
	}
}

// record notes why the stream ends, if no reason was noted before.
func (c *sseConn) record(e observe.End) {
	c.endMu.Lock()
	defer c.endMu.Unlock()
	if !c.ended {
		c.ended, c.state = true, e
		if c.hb != nil {
			c.hb.Stop()
		}
	}
}

func (c *sseConn) endState() observe.End {
	c.endMu.Lock()
	defer c.endMu.Unlock()
	return c.state
}

// appendSSEEvent appends one event block.
func appendSSEEvent(b []byte, ev pubsub.Event) []byte {
	b = append(b, "id: "...)
	b, _ = ev.Cursor.AppendText(b)
	if ev.Reset != nil {
		b = append(b, "\nevent: reset\ndata: "...)
		b = appendResetJSON(b, ev.Reset, ev.Cursor)
	} else {
		b = append(b, "\ndata: "...)
		b = appendMessageJSON(b, ev.Message)
	}
	return append(b, "\n\n"...)
}
