package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// keepAlive is one sender's HTTP/1.1 keep-alive connection, one call in
// flight. It writes each request in one system call and parses the answer
// as the feed loops' senders do (answer.parse), without net/http's
// Transport: no goroutine hand-off per call (a Transport runs a reader and
// a writer goroutine per connection), which on a 2-core machine costs the
// load generator more CPU than the server it measures.
type keepAlive struct {
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	addr    string // host:port
	path    string
	header  string // the request lines after the request line, up to Content-Length
	timeout time.Duration

	conn    net.Conn
	buf     []byte // what was read of the answer
	ans     answer
	ctx     context.Context // the one conn is closed with
	stopCtx func() bool
	req     []byte
}

func newKeepAlive(dial func(ctx context.Context, network, addr string) (net.Conn, error), addr, path, key string, timeout time.Duration) *keepAlive {
	return &keepAlive{
		dial: dial, addr: addr, path: path, timeout: timeout,
		header: "Host: " + addr + "\r\nContent-Type: application/json\r\nAuthorization: Bearer " + key + "\r\nContent-Length: ",
	}
}

// post sends body and reads the answer's body into out; it returns the
// answer's status. A failed call closes the connection: the next dials
// again.
func (k *keepAlive) post(ctx context.Context, body []byte, out *bytes.Buffer) (int, error) {
	if err := k.connect(ctx); err != nil {
		return 0, err
	}
	k.req = k.appendRequest(k.req[:0], body)
	_ = k.conn.SetDeadline(time.Now().Add(k.timeout))
	status, keep, err := k.exchange(out)
	if err != nil || !keep {
		k.close()
	}
	if err != nil && ctx.Err() != nil {
		return 0, ctx.Err()
	}
	return status, err
}

// appendRequest appends the POST of body.
func (k *keepAlive) appendRequest(b, body []byte) []byte {
	b = append(b, "POST "...)
	b = append(b, k.path...)
	b = append(b, " HTTP/1.1\r\n"...)
	b = append(b, k.header...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

func (k *keepAlive) exchange(out *bytes.Buffer) (status int, keep bool, err error) {
	if _, err := k.conn.Write(k.req); err != nil {
		return 0, false, err
	}
	k.buf = k.buf[:0]
	for {
		n, err := k.ans.parse(k.buf)
		switch {
		case err != nil:
			return 0, false, err
		case n > 0 && n < len(k.buf):
			return 0, false, errors.New("an answer to no call")
		case n > 0:
			out.Reset()
			out.Write(k.ans.body)
			if cap(k.buf) > 64<<10 {
				k.buf = nil // a long answer's
			}
			return k.ans.status, k.ans.keep, nil
		}
		if len(k.buf) == cap(k.buf) {
			k.buf = append(k.buf, make([]byte, max(4<<10, len(k.buf)))...)[:len(k.buf)]
		}
		m, err := k.conn.Read(k.buf[len(k.buf):cap(k.buf)])
		k.buf = k.buf[:len(k.buf)+m]
		if err != nil && m == 0 {
			return 0, false, fmt.Errorf("reading the answer: %w", err)
		}
	}
}

func (k *keepAlive) connect(ctx context.Context) error {
	if k.conn != nil && k.ctx == ctx {
		return nil
	}
	k.close()
	conn, err := k.dial(ctx, "tcp", k.addr)
	if err != nil {
		return err
	}
	k.conn, k.ctx = conn, ctx
	// Cancelling the run aborts a call in flight.
	k.stopCtx = context.AfterFunc(ctx, func() { _ = conn.Close() })
	return nil
}

func (k *keepAlive) close() {
	if k.conn != nil {
		k.stopCtx()
		_ = k.conn.Close()
		k.conn = nil
	}
}
