package delivery

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Socket is a stream's connection once taken from net/http (hijacked): an
// SSE or graphql-sse response, a WebSocket. Its writes do not hold the
// writer: a write that the socket does not take within inlineWrite is
// finished by a goroutine of its own with the full write timeout, and the
// writes made meanwhile join it (the connection is congested until then,
// and its streams wait). A write that fails, or that the client does not
// take within timeout, closes the connection, so that the reader (and
// with it the connection and its subscriptions) ends too.
//
// The socket is closed through Close (or a failed write), never under it:
// writes go to its descriptor directly.
//
// While corked (Cork, Uncork), writes are gathered and go out in one write
// at the last Uncork: several frames, one system call.
type Socket struct {
	net.Conn
	timeout  time.Duration
	timedOut atomic.Bool // a write missed its deadline: a slow client
	// resume, if set, is called once a congested connection has written
	// all it held.
	resume func()
	raw    syscall.RawConn // for WaitReadable; nil: not enabled

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

var _ Conn = (*Socket)(nil)

// NewSocket takes over conn: from here on it is written and closed
// through the Socket, each write bounded by timeout.
func NewSocket(conn net.Conn, timeout time.Duration) *Socket {
	c := &Socket{Conn: conn, timeout: timeout, fd: socketFD(conn)}
	c.drained.L = &c.mu
	return c
}

// OnResume sets what is called (on the goroutine that finished the
// writes) once a congested socket has written all it held: its streams,
// which stopped writing, are handed to the writers again. Call it before
// the first write.
func (c *Socket) OnResume(f func()) { c.resume = f }

// Close closes the socket once no direct write is under way; later writes
// fail with net.ErrClosed.
func (c *Socket) Close() error {
	c.mu.Lock()
	if c.failed == nil {
		c.failed = net.ErrClosed
	}
	c.drained.Broadcast()
	c.mu.Unlock()
	return c.Conn.Close()
}

// TimedOut reports whether a write failed for the write timeout: the
// client is too slow, and was dropped.
func (c *Socket) TimedOut() bool { return c.timedOut.Load() }

// inlineWrite bounds how long a writer waits on one stream's socket: a
// socket that cannot take a write at once has it finished by a goroutine
// of its own (with the full write timeout), so the writers go on.
const inlineWrite = time.Millisecond

// maxBacklog bounds what a congested connection holds (but for the rest
// of the write that congested it): past it, writers other than the
// streams (which wait for resume) wait for the socket.
const maxBacklog = 256 << 10

var corkBuffers = sync.Pool{New: func() any { return new([]byte) }}

// Write writes p, or gathers it while corked. It returns once the socket
// took p, or a goroutine finishes writing it (congested); an error means
// the socket is closed.
func (c *Socket) Write(p []byte) (int, error) {
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

func (c *Socket) writeLocked(p []byte) (int, error) {
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
func (c *Socket) writeWaiting(p []byte) (int, error) {
	inline := min(inlineWrite, c.timeout)
	if err := c.Conn.SetWriteDeadline(time.Now().Add(inline)); err != nil {
		c.failLocked(err)
		return 0, err
	}
	n, err := c.Conn.Write(p)
	switch {
	case err == nil:
		return n, nil
	case IsTimeout(err) && c.timeout > inline:
		c.slow.Store(true)
		c.backlog = append(c.backlog, p[n:]...)
		go c.finish(c.timeout - inline)
		return len(p), nil
	}
	c.failLocked(err)
	return n, err
}

func (c *Socket) failLocked(err error) {
	c.timedOut.Store(IsTimeout(err))
	c.failed = err
	if tc, ok := c.Conn.(*net.TCPConn); ok && IsTimeout(err) {
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
func (c *Socket) finish(timeout time.Duration) {
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

// Wait waits until a congested connection has written what it holds (or
// failed).
func (c *Socket) Wait() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.slow.Load() && c.failed == nil {
		c.drained.Wait()
	}
}

// Congested reports whether a goroutine still finishes a slow write.
func (c *Socket) Congested() bool { return c.slow.Load() }

// Cork gathers the writes until the matching Uncork.
func (c *Socket) Cork() {
	c.mu.Lock()
	c.corks++
	c.mu.Unlock()
}

// Uncork writes what was gathered once the last cork is lifted, and
// reports whether the writes since Cork went out (or, congested, joined
// the backlog).
func (c *Socket) Uncork() error {
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

// WatchReadable prepares WaitReadable; false: this socket cannot be waited
// on without a read (not a plain socket, or not on this platform), and
// its reader must read instead.
func (c *Socket) WatchReadable() bool {
	if sc, ok := c.Conn.(syscall.Conn); ok && canWaitReadable && c.raw == nil {
		c.raw, _ = sc.SyscallConn()
	}
	return c.raw != nil
}

// WaitReadable waits until the socket has something to read (data, the
// peer's end, an error) without reading it: the socket is peeked at, and
// the goroutine parks in the runtime's poller with a stack a few frames
// deep, so that an idle connection's reader keeps a small stack. Only
// after WatchReadable reported true.
func (c *Socket) WaitReadable() error { return waitReadable(c.raw) }

// IsTimeout reports whether a write failed for its deadline: the client
// did not take it in time.
func IsTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
