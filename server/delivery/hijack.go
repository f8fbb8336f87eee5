package delivery

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"time"
)

// Hijack takes the connection of a response whose headers are written
// from net/http: from here on it is the stream's Socket, written and
// closed by it, and net/http's buffers are let go (an idle stream keeps
// none). What the client sent after its request is dropped: a stream's
// client sends nothing more.
func Hijack(w http.ResponseWriter, timeout time.Duration) (*Socket, error) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, err
	}
	return NewSocket(conn, timeout), nil
}

// Hijacker hands a library that hijacks the response (the WebSocket
// library) a Socket with small buffers instead of net/http's connection.
type Hijacker struct {
	http.ResponseWriter
	timeout time.Duration
	// Socket and Reader are set once hijacked: the connection, and the
	// reader of it handed to the library.
	Socket *Socket
	Reader *bufio.Reader
}

// NewHijacker wraps w: its hijacked connection writes within timeout.
func NewHijacker(w http.ResponseWriter, timeout time.Duration) *Hijacker {
	return &Hijacker{ResponseWriter: w, timeout: timeout}
}

func (w *Hijacker) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// The buffers of a hijacked WebSocket connection's reads and writes.
const (
	wsReadBuffer  = 512
	wsWriteBuffer = 256
)

// Hijack hijacks the connection as a Socket.
func (w *Hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	s := NewSocket(conn, w.timeout)
	w.Socket = s
	// net/http's 4 KB buffers are replaced by small ones, which a
	// connection keeps for as long as it is open: client messages are
	// small (a larger read bypasses the buffer), and writes go out through
	// the Socket's pooled cork buffer. net/http's writer is empty after
	// the hijack; its reader may hold what the client sent after its
	// request, which the new one starts with.
	if err := brw.Writer.Flush(); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	buffered, _ := brw.Reader.Peek(brw.Reader.Buffered())
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(buffered)), s), max(wsReadBuffer, len(buffered)))
	if len(buffered) > 0 {
		_, _ = br.Peek(len(buffered)) // buffered now, as the WebSocket library expects
	}
	w.Reader = br
	return s, bufio.NewReadWriter(br, bufio.NewWriterSize(s, wsWriteBuffer)), nil
}
