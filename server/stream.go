package server

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushgate/pushgate/pubsub"
)

// streamWriteTimeout bounds every write of a graphql-sse response. gqlgen
// writes a subscription's events synchronously, without a deadline: a client
// that stops reading would hold its connection's writer (and its goroutines)
// forever. With a deadline on each write, such a client is disconnected
// after timeout and resumes from its cursor; other clients never wait on it
// (pubsub's fan-out does not block). WebSocket connections have their own
// (deadlineConn).
func streamWriteTimeout(timeout time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" || !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		sw := &streamDeadline{ResponseWriter: w, rc: http.NewResponseController(w), timeout: timeout, cancel: cancel}
		defer func() { _ = sw.rc.SetWriteDeadline(time.Time{}) }()
		next.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// hijackDeadline hands the WebSocket library a deadlineConn.
type hijackDeadline struct {
	http.ResponseWriter
	timeout time.Duration
	conn    *deadlineConn // once hijacked
	br      *bufio.Reader // conn's reader
}

func (w *hijackDeadline) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *hijackDeadline) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	dc := newDeadlineConn(conn, w.timeout)
	w.conn = dc
	// net/http's 4 KB buffers are replaced by small ones, which a
	// connection keeps for as long as it is open: client messages are
	// small (a larger read bypasses the buffer), and writes go out through
	// dc's pooled cork buffer (wsConn.write). net/http's writer is empty
	// after the hijack; its reader may hold what the client sent after its
	// request, which the new one starts with.
	if err := brw.Writer.Flush(); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	buffered, _ := brw.Reader.Peek(brw.Reader.Buffered())
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(buffered)), dc), max(wsReadBuffer, len(buffered)))
	if len(buffered) > 0 {
		_, _ = br.Peek(len(buffered)) // buffered now, as the WebSocket library expects
	}
	w.br = br
	return dc, bufio.NewReadWriter(br, bufio.NewWriterSize(dc, wsWriteBuffer)), nil
}

// The buffers of a WebSocket connection's reads and writes.
const (
	wsReadBuffer  = 512
	wsWriteBuffer = 256
)

// deadlineConn is a stream's socket (WebSocket, SSE). Its writes do not hold
// the writer: a write that the socket does not take within inlineWrite is
// finished by a goroutine of its own with the full write timeout, and the
// writes made meanwhile join it (the connection is congested until then,
// and its feeds wait). A write that fails, or that the client does not
// take within timeout, closes the connection, so that the reader (and with
// it the WebSocket connection and its subscriptions) ends too.
//
// The socket is closed through Close (or a failed write), never under it:
// writes go to its descriptor directly.
//
// While corked (cork, uncork), writes are gathered and go out in one write
// at the last uncork: several WebSocket frames, one system call.
type deadlineConn struct {
	net.Conn
	timeout  time.Duration
	timedOut atomic.Bool // a write missed its deadline: a slow client
	// resume, if set, is called once a congested connection has written
	// all it held.
	resume func()

	mu       sync.Mutex // serializes writes
	drained  sync.Cond  // on mu: the backlog shrank, or a write failed
	corks    int
	pending  *[]byte     // gathered while corked; pooled
	slow     atomic.Bool // a goroutine finishes a write: later writes join backlog; set under mu
	backlog  []byte
	inflight int   // of the backlog, the bytes the goroutine is writing
	failed   error // of a write, or net.ErrClosed; later writes fail with it
	// fd, when not -1, is the socket's descriptor, written to directly
	// (writeNow) until failed is set, which happens under mu before the
	// socket is closed: a write never goes to a descriptor the kernel has
	// handed to another connection.
	fd int
}

// Close closes the socket once no direct write is under way; later writes
// fail with net.ErrClosed.
func (c *deadlineConn) Close() error {
	c.mu.Lock()
	if c.failed == nil {
		c.failed = net.ErrClosed
	}
	c.drained.Broadcast()
	c.mu.Unlock()
	return c.Conn.Close()
}

func newDeadlineConn(conn net.Conn, timeout time.Duration) *deadlineConn {
	c := &deadlineConn{Conn: conn, timeout: timeout, fd: socketFD(conn)}
	c.drained.L = &c.mu
	return c
}

// inlineWrite bounds how long a writer waits on one stream's socket: a
// socket that cannot take a write at once has it finished by a goroutine
// of its own (with the full write timeout), so the writers go on.
const inlineWrite = time.Millisecond

// maxBacklog bounds what a congested connection holds (but for the rest
// of the write that congested it): past it, writers other than the feeds
// (which wait for resume) wait for the socket.
const maxBacklog = 256 << 10

var corkBuffers = sync.Pool{New: func() any { return new([]byte) }}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed != nil {
		return 0, c.failed
	}
	if c.corks > 0 {
		if c.pending == nil {
			c.pending = corkBuffers.Get().(*[]byte)
		}
		*c.pending = append(*c.pending, p...)
		return len(p), nil
	}
	return c.writeLocked(p)
}

func (c *deadlineConn) writeLocked(p []byte) (int, error) {
	for c.slow.Load() && c.inflight+len(c.backlog) >= maxBacklog && c.failed == nil {
		c.drained.Wait()
	}
	switch {
	case c.failed != nil:
		return 0, c.failed
	case c.slow.Load():
		c.backlog = append(c.backlog, p...)
		return len(p), nil
	}
	// What the socket takes at once goes out in one system call, without
	// the runtime's poller and deadline timer (which cost 0.5 µs of the 8
	// a delivery takes); the rest waits for the socket.
	n := 0
	if c.fd >= 0 { // open: failed is nil here
		var err error
		if n, err = writeNow(c.Conn, c.fd, p); err != nil {
			c.failLocked(err)
			return 0, err
		}
		if n == len(p) {
			return n, nil
		}
	}
	k, err := c.writeWaiting(p[n:])
	return n + k, err
}

// writeWaiting writes p within inlineWrite, or hands the rest to finish.
func (c *deadlineConn) writeWaiting(p []byte) (int, error) {
	inline := min(inlineWrite, c.timeout)
	if err := c.Conn.SetWriteDeadline(time.Now().Add(inline)); err != nil {
		c.failLocked(err)
		return 0, err
	}
	n, err := c.Conn.Write(p)
	switch {
	case err == nil:
		return n, nil
	case isTimeout(err) && c.timeout > inline:
		c.slow.Store(true)
		c.backlog = append(c.backlog, p[n:]...)
		go c.finish(c.timeout - inline)
		return len(p), nil
	}
	c.failLocked(err)
	return n, err
}

func (c *deadlineConn) failLocked(err error) {
	c.timedOut.Store(isTimeout(err))
	c.failed = err
	if tc, ok := c.Conn.(*net.TCPConn); ok && isTimeout(err) {
		// Abort: what the slow client did not take is dropped with the
		// socket, not kept sending in the kernel.
		_ = tc.SetLinger(0)
	}
	_ = c.Conn.Close()
	c.drained.Broadcast()
}

// finish writes the backlog of a congested connection, the first part
// within timeout, each later one within the full write timeout, then
// resumes the connection.
func (c *deadlineConn) finish(timeout time.Duration) {
	c.mu.Lock()
	for len(c.backlog) > 0 && c.failed == nil {
		b := c.backlog
		c.backlog, c.inflight = nil, len(b)
		c.mu.Unlock()
		err := c.Conn.SetWriteDeadline(time.Now().Add(timeout))
		if err == nil {
			_, err = c.Conn.Write(b)
		}
		c.mu.Lock()
		c.inflight = 0
		if err != nil {
			c.failLocked(err)
			break
		}
		c.drained.Broadcast()
		timeout = c.timeout
	}
	c.slow.Store(false)
	c.backlog = nil
	c.drained.Broadcast()
	ok := c.failed == nil
	c.mu.Unlock()
	if ok && c.resume != nil {
		c.resume()
	}
}

// wait waits until a congested connection has written what it holds (or
// failed).
func (c *deadlineConn) wait() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.slow.Load() && c.failed == nil {
		c.drained.Wait()
	}
}

// congested reports whether a goroutine still finishes a slow write.
func (c *deadlineConn) congested() bool { return c.slow.Load() }

// cork gathers the writes until the matching uncork.
func (c *deadlineConn) cork() {
	c.mu.Lock()
	c.corks++
	c.mu.Unlock()
}

// uncork writes what was gathered once the last cork is lifted, and reports
// whether the writes since cork went out (or, congested, joined the
// backlog).
func (c *deadlineConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corks--
	if c.corks > 0 || c.pending == nil {
		return c.failed
	}
	err := c.failed
	if err == nil {
		_, err = c.writeLocked(*c.pending)
	}
	if cap(*c.pending) <= 64<<10 { // do not keep a burst's buffer
		*c.pending = (*c.pending)[:0]
		corkBuffers.Put(c.pending)
	}
	c.pending = nil
	return err
}

// streamDeadline does the same for a streamed HTTP response (graphql-sse):
// a failed write or flush cancels the request, which ends the subscription.
type streamDeadline struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	cancel  context.CancelFunc
}

func (w *streamDeadline) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *streamDeadline) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	n, err := w.ResponseWriter.Write(p)
	if err != nil {
		w.cancel()
	}
	return n, err
}

func (w *streamDeadline) Flush() { _ = w.FlushError() }

func (w *streamDeadline) FlushError() error {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	err := w.rc.Flush()
	if err != nil {
		w.cancel()
	}
	return err
}

// writeBuffer is the memory of one write of a stream (SSE, WebSocket feed),
// pooled: an idle stream keeps none.
type writeBuffer struct {
	events  []byte      // the events (or heartbeat) to write
	frame   []byte      // SSE: events as one chunk of the chunked body
	created []time.Time // of the messages in events, for the metrics
}

type bufferPool struct{ p sync.Pool }

var writeBuffers = &bufferPool{p: sync.Pool{New: func() any { return new(writeBuffer) }}}

func (p *bufferPool) get() *writeBuffer { return p.p.Get().(*writeBuffer) }

func (p *bufferPool) put(b *writeBuffer) {
	if cap(b.events) > 64<<10 || cap(b.frame) > 64<<10 {
		return // do not keep a burst's buffers
	}
	b.events, b.frame, b.created = b.events[:0], b.frame[:0], b.created[:0]
	p.p.Put(b)
}

// writeTurn hands a stream with queued events (an SSE stream, a WebSocket
// feed) to the stream writers: at most once at a time (queued), written by
// one at a time (mu). Whoever releases the stream hands it back when events
// were queued meanwhile and the socket is clear; a congested socket resumes
// the stream itself once it is (deadlineConn.resume).
type writeTurn struct {
	queued atomic.Bool
	mu     sync.Mutex
	last   atomic.Int64 // when the last turn was taken (monoNow); 0: never
}

// hand gives f to ws unless it is in their queue already: at once, or
// after ws.delay when the stream's last turn was less than that ago. With
// pending events enough to fill half a write (maxCoalesce), nothing waits:
// a stream that waited would take no more per write, and its queue, which
// falls back to reading the store when full, would fill.
func (t *writeTurn) hand(ws *streamWriters, f flusher, pending int) {
	full := pending >= maxCoalesce/2
	if t.queued.CompareAndSwap(false, true) {
		last := t.last.Load()
		ws.push(f, !full && last != 0 && monoNow()-last < int64(ws.delay))
	} else if full {
		ws.due() // f may be waiting out the delay
	}
}

// take starts a writer's turn; false: another write holds the stream and
// hands it back on release.
func (t *writeTurn) take() bool {
	t.queued.Store(false)
	t.last.Store(monoNow())
	return t.mu.TryLock()
}

// monoNow is the monotonic clock in nanoseconds, from 1.
func monoNow() int64 { return int64(time.Since(monoStart)) + 1 }

var monoStart = time.Now()

// release ends a turn, or any write under mu; again: the stream is to be
// handed to the writers again.
func (t *writeTurn) release(sub *pubsub.Subscription, conn *deadlineConn) (again bool) {
	t.mu.Unlock()
	return sub.Pending() > 0 && !conn.congested()
}

// streamWriters write the streams handed to them (SSE streams, WebSocket
// feeds), on at most max goroutines that exist only while there is work.
//
// A stream handed again within delay of its last turn waits out the delay
// (in later) instead of being written at once: a stream that many messages
// a second reach then takes them in a few writes instead of one system call
// (and one wake-up of its reader) each, while a stream written less often
// than every delay, as nearly all are, is written at once. One channel
// sent to as fast as possible, one SSE reader: a write per message before,
// at most one per 500 µs (or per half a write of events) after; the send
// scenario's server CPU per send went from 34.6 to 31.7 µs.
type streamWriters struct {
	max    int
	delay  time.Duration
	mu     sync.Mutex
	queue  []flusher
	active int
	later  []flusher   // streams waiting out the delay
	timer  *time.Timer // moves later to queue; running while later is not empty
	// waiting is len(later) > 0, for due to read without the lock: a
	// stream with half a write pending calls it on every event queued.
	waiting atomic.Bool
}

// writeDelay is the streamWriters' delay: at most this much latency is
// added, and only to a stream written to more than once in it.
const writeDelay = 500 * time.Microsecond

// flusher is a stream with something queued: flush writes it.
type flusher interface{ flush() }

// newStreamWriters returns writers for half the Go processors: a fan-out
// writes in parallel, and leaves the rest to reading, sending and
// accepting. With one processor per core on 2 cores, 1,000 SSE subscribers
// at 100 msg/s cost 8.2-8.5 µs of CPU per delivery with one writer, 9.9-10.1
// with two (which contended with each other and with everything else for
// both cores); with pushgate's default of two spare processors (two
// writers), 4.5 µs and a p99 of 5.8 ms, against 4.6 µs and 6.6 ms before.
func newStreamWriters() *streamWriters {
	return &streamWriters{max: max(1, runtime.GOMAXPROCS(0)/2), delay: writeDelay}
}

// push queues c, or with later, has it wait out the delay first.
func (ws *streamWriters) push(c flusher, later bool) {
	ws.mu.Lock()
	if later {
		ws.later = append(ws.later, c)
		ws.waiting.Store(true)
		if len(ws.later) == 1 {
			if ws.timer == nil {
				ws.timer = time.AfterFunc(ws.delay, ws.due)
			} else {
				ws.timer.Reset(ws.delay)
			}
		}
		ws.mu.Unlock()
		return
	}
	ws.queue = append(ws.queue, c)
	ws.startLocked()
}

// due queues the streams that wait out the delay, now.
func (ws *streamWriters) due() {
	if !ws.waiting.Load() {
		return
	}
	ws.mu.Lock()
	if len(ws.later) == 0 {
		ws.mu.Unlock()
		return
	}
	ws.waiting.Store(false)
	ws.queue = append(ws.queue, ws.later...)
	clear(ws.later)
	ws.later = ws.later[:0]
	if cap(ws.later) > 1024 {
		ws.later = nil // a burst's
	}
	ws.startLocked()
}

// startLocked starts a writer when the queue has work and fewer than max
// run, and unlocks mu.
func (ws *streamWriters) startLocked() {
	start := len(ws.queue) > 0 && ws.active < ws.max
	if start {
		ws.active++
	}
	ws.mu.Unlock()
	if start {
		go ws.work()
	}
}

// work flushes the queue's streams, taking its share of them at a time:
// the lock is taken once per batch, not once per stream, so a fan-out's
// producer seldom waits on it.
func (ws *streamWriters) work() {
	var batch []flusher
	for {
		ws.mu.Lock()
		if len(ws.queue) == 0 {
			ws.active--
			if cap(ws.queue) > 1024 {
				ws.queue = nil // a burst's
			}
			ws.mu.Unlock()
			return
		}
		n := max(1, len(ws.queue)/ws.active)
		batch = append(batch[:0], ws.queue[:n]...)
		rest := copy(ws.queue, ws.queue[n:])
		clear(ws.queue[rest:])
		ws.queue = ws.queue[:rest]
		ws.mu.Unlock()
		for i, c := range batch {
			batch[i] = nil
			c.flush()
		}
		if cap(batch) > 1024 {
			batch = nil
		}
	}
}
