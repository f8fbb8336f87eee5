package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Sending as fast as possible (-rate 0) runs in the feed loops: a sender's
// connection is a feed whose parser, when an answer is complete, ends the
// call and writes the next request at once, on the loop. A goroutine per
// sender (pace, which a set rate still uses) wakes for every answer, reads
// twice and parses it through net/http: 15 µs of pushbench's CPU per send
// at 40k sends/s, on the two cores the server under test has too.

var (
	errSenderDone = errors.New("the sender is done")
	errReconnect  = errors.New("the answer closed the connection")
)

// flood calls as fast as it can until stop, from loops; a connection that
// fails, or that an answer closes, is dialed again.
func (s *sender) flood(ctx context.Context, loops *feedLoops, stop time.Time) {
	for time.Now().Before(stop) && ctx.Err() == nil {
		s.floodConn(ctx, loops, stop)
	}
}

// floodConn makes calls on one connection until stop, or until the
// connection fails (which fails the call in flight).
func (s *sender) floodConn(ctx context.Context, loops *feedLoops, stop time.Time) {
	s.begin()
	conn, err := s.plan.dial(ctx, "tcp", s.plan.addr)
	if err != nil {
		s.end(err)
		return
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timeout := s.conn.timeout                   // a call's, as keepAlive's deadline
	watchdog := time.AfterFunc(timeout, cancel) // restarted by every call
	defer watchdog.Stop()
	f := &floodFeed{s: s, stop: stop, watchdog: watchdog, timeout: timeout}
	f.req = s.conn.appendRequest(f.req[:0], s.body)
	if _, err := conn.Write(f.req); err != nil {
		_ = conn.Close()
		s.end(err)
		return
	}
	err = loops.serve(fctx, conn, f.consume)
	if !s.inflight {
		return // stopped, or reconnecting after Connection: close
	}
	switch {
	case err != nil:
	case ctx.Err() != nil:
		err = ctx.Err()
	default:
		err = fmt.Errorf("no answer within %v: %w", timeout, context.DeadlineExceeded)
	}
	s.end(err)
}

// floodFeed is one sender's connection in a loop.
type floodFeed struct {
	s        *sender
	stop     time.Time
	watchdog *time.Timer
	timeout  time.Duration
	buf      []byte // what was read of the answer
	req      []byte
	ans      answer
}

func (f *floodFeed) consume(p []byte, now time.Time, w io.Writer) error {
	f.buf = append(f.buf, p...)
	n, err := f.ans.parse(f.buf)
	if err != nil || n == 0 {
		return err // an error fails the call in flight
	}
	s := f.s
	s.end(s.check(f.ans.status, f.ans.body))
	switch {
	case n < len(f.buf):
		return errors.New("an answer to no call")
	case !f.ans.keep:
		return errReconnect
	case !now.Before(f.stop):
		return errSenderDone
	}
	f.buf = f.buf[:0]
	if cap(f.buf) > 64<<10 {
		f.buf = nil // a long answer's
	}
	s.begin()
	f.req = s.conn.appendRequest(f.req[:0], s.body)
	f.watchdog.Reset(f.timeout)
	_, err = w.Write(f.req)
	return err
}

// answer is one HTTP/1.1 response as parse reads it.
type answer struct {
	status int
	keep   bool   // the connection stays open after it
	body   []byte // valid until the next parse
	chunks []byte // a chunked body, joined
}

// maxAnswerHead bounds an answer's status line and headers.
const maxAnswerHead = 64 << 10

// parse reads one whole answer from the start of b and returns how many
// bytes it took; 0: b holds only part of it. Informational (1xx) answers
// before it are skipped.
func (a *answer) parse(b []byte) (int, error) {
	taken := 0
	for {
		n, err := a.parseOne(b[taken:])
		if err != nil || n == 0 {
			return 0, err
		}
		taken += n
		if a.status >= 200 {
			return taken, nil
		}
	}
}

func (a *answer) parseOne(b []byte) (int, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > maxAnswerHead {
			return 0, errors.New("an answer's head is over 64 KB")
		}
		return 0, nil
	}
	head := b[:end]
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	proto, code, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(code) < 3 || !bytes.HasPrefix(proto, []byte("HTTP/1.")) {
		return 0, fmt.Errorf("a malformed status line %.40q", line)
	}
	status, err := strconv.Atoi(string(code[:3]))
	if err != nil || status < 100 || status > 999 || len(code) > 3 && code[3] != ' ' {
		return 0, fmt.Errorf("a malformed status line %.40q", line)
	}
	a.status = status
	a.keep = string(proto) == "HTTP/1.1"
	length, chunked := -1, false
	for len(rest) > 0 {
		var h []byte
		h, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, fmt.Errorf("a malformed header %.40q", h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.Atoi(string(value))
			if err != nil || n < 0 || length >= 0 && n != length {
				return 0, fmt.Errorf("a bad Content-Length %.40q", value)
			}
			length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			if !bytes.EqualFold(value, []byte("chunked")) {
				return 0, fmt.Errorf("transfer encoding %.40q", value)
			}
			chunked = true
		case bytes.EqualFold(name, []byte("Connection")):
			switch {
			case bytes.EqualFold(value, []byte("close")):
				a.keep = false
			case bytes.EqualFold(value, []byte("keep-alive")):
				a.keep = true
			}
		}
	}
	bodyStart := end + 4
	switch {
	case status < 200 || status == 204 || status == 304:
		a.body = nil
		return bodyStart, nil
	case chunked:
		return a.parseChunks(b, bodyStart)
	case length < 0:
		return 0, errors.New("an answer without a length")
	case len(b)-bodyStart < length:
		return 0, nil
	}
	a.body = b[bodyStart : bodyStart+length]
	return bodyStart + length, nil
}

// parseChunks reads a chunked body from b[i:], and the trailer.
func (a *answer) parseChunks(b []byte, i int) (int, error) {
	a.chunks = a.chunks[:0]
	for {
		eol := bytes.Index(b[i:], []byte("\r\n"))
		if eol < 0 {
			return 0, nil
		}
		size, _, _ := bytes.Cut(b[i:i+eol], []byte(";")) // extensions
		n, err := strconv.ParseUint(string(bytes.TrimSpace(size)), 16, 31)
		if err != nil {
			return 0, fmt.Errorf("a bad chunk size %.40q", b[i:i+eol])
		}
		i += eol + 2
		if n == 0 {
			// The trailer: header lines up to an empty one.
			for {
				eol := bytes.Index(b[i:], []byte("\r\n"))
				if eol < 0 {
					return 0, nil
				}
				i += eol + 2
				if eol == 0 {
					a.body = a.chunks
					return i, nil
				}
			}
		}
		if len(b)-i < int(n)+2 {
			return 0, nil
		}
		if string(b[i+int(n):i+int(n)+2]) != "\r\n" {
			return 0, errors.New("a chunk without its CRLF")
		}
		a.chunks = append(a.chunks, b[i:i+int(n)]...)
		i += int(n) + 2
	}
}
