package delivery

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ResponseConn is a stream's connection where it cannot be taken from
// net/http (HTTP/2, or a response net/http keeps): each write goes through
// the response and is flushed, within the write timeout
// (http.ResponseController's write deadline). Unlike Socket, a write waits
// for the client: a client that does not read holds the write's goroutine
// until the timeout drops it. Its handler must not return before Close:
// the response is net/http's until then.
type ResponseConn struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	timeout  time.Duration
	timedOut atomic.Bool

	mu     sync.Mutex // serializes writes with Close
	failed error      // of a write, or net.ErrClosed; later writes fail with it
}

var _ Conn = (*ResponseConn)(nil)

// NewResponseConn writes through w, each write within timeout.
func NewResponseConn(w http.ResponseWriter, timeout time.Duration) *ResponseConn {
	return &ResponseConn{w: w, rc: http.NewResponseController(w), timeout: timeout}
}

// Write writes and flushes p.
func (c *ResponseConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed != nil {
		return 0, c.failed
	}
	// Without deadline support (a writer that is no connection), the
	// write is not bounded.
	_ = c.rc.SetWriteDeadline(time.Now().Add(c.timeout))
	n, err := c.w.Write(p)
	if err == nil {
		err = c.rc.Flush()
	}
	if err != nil {
		c.timedOut.Store(IsTimeout(err))
		c.failed = err
	}
	return n, err
}

// Congested is always false: a write returns once it is written.
func (c *ResponseConn) Congested() bool { return false }

// Wait returns at once: nothing is left to write after a write.
func (c *ResponseConn) Wait() {}

// TimedOut reports whether a write failed for the write timeout.
func (c *ResponseConn) TimedOut() bool { return c.timedOut.Load() }

// Close refuses later writes and clears the write deadline, so that
// net/http may reuse the connection; the handler may return after it.
func (c *ResponseConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed == nil {
		c.failed = net.ErrClosed
	}
	_ = c.rc.SetWriteDeadline(time.Time{})
	return nil
}
