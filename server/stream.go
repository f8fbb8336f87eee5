package server

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// streamWriteTimeout bounds every write of a streaming response. gqlgen
// writes a subscription's events synchronously, without a deadline: a client
// that stops reading would hold its connection's writer (and its goroutines)
// forever. With a deadline on each write, such a client is disconnected
// after timeout and resumes from its cursor; other clients never wait on it
// (pubsub's fan-out does not block).
func streamWriteTimeout(timeout time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Upgrade") != "":
			next.ServeHTTP(&hijackDeadline{ResponseWriter: w, timeout: timeout}, r)
		case strings.Contains(r.Header.Get("Accept"), "text/event-stream"):
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			sw := &streamDeadline{ResponseWriter: w, rc: http.NewResponseController(w), timeout: timeout, cancel: cancel}
			defer func() { _ = sw.rc.SetWriteDeadline(time.Time{}) }()
			next.ServeHTTP(sw, r.WithContext(ctx))
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// hijackDeadline hands the WebSocket library a connection whose every write
// has a deadline.
type hijackDeadline struct {
	http.ResponseWriter
	timeout time.Duration
	conn    *deadlineConn // once hijacked
}

func (w *hijackDeadline) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *hijackDeadline) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	dc := &deadlineConn{Conn: conn, timeout: w.timeout}
	w.conn = dc
	// net/http's buffered writer writes to the raw connection (and is empty
	// after the hijack): writes must go through dc. It is pointed at dc
	// rather than replaced, so that the connection keeps one write buffer.
	if err := brw.Writer.Flush(); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	brw.Writer.Reset(dc)
	return dc, brw, nil
}

// deadlineConn sets a write deadline before each write, and closes the
// connection when a write fails, so that the reader (and with it the
// WebSocket connection and its subscriptions) ends too.
//
// While corked (cork, uncork), writes are gathered and go out in one write
// at the last uncork: several WebSocket frames, one system call.
type deadlineConn struct {
	net.Conn
	timeout  time.Duration
	timedOut atomic.Bool // a write missed its deadline: a slow client

	mu      sync.Mutex // serializes writes
	corks   int
	pending []byte
	failed  error // of a gathered write; later writes fail with it
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed != nil {
		return 0, c.failed
	}
	if c.corks > 0 {
		c.pending = append(c.pending, p...)
		return len(p), nil
	}
	return c.writeLocked(p)
}

func (c *deadlineConn) writeLocked(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.timedOut.Store(isTimeout(err))
		c.failed = err
		_ = c.Conn.Close()
	}
	return n, err
}

// cork gathers the writes until the matching uncork.
func (c *deadlineConn) cork() {
	c.mu.Lock()
	c.corks++
	c.mu.Unlock()
}

// uncork writes what was gathered once the last cork is lifted, and reports
// whether the writes since cork went out.
func (c *deadlineConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corks--
	if c.corks > 0 || len(c.pending) == 0 || c.failed != nil {
		return c.failed
	}
	_, err := c.writeLocked(c.pending)
	if cap(c.pending) > 64<<10 {
		c.pending = nil
	} else {
		c.pending = c.pending[:0]
	}
	return err
}

// hijackedConn returns the deadlineConn that w handed out when it was
// hijacked, or nil. The WebSocket library reports a failed write as the
// connection closed, so that a slow client is told apart by this.
func hijackedConn(w http.ResponseWriter) *deadlineConn {
	for w != nil {
		if h, ok := w.(*hijackDeadline); ok {
			return h.conn
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
	return nil
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
