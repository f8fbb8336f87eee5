package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// The SSE subscriber reads GET /events?channel=...: an id-only block opens
// the stream (the subscription is live from there), then one block per
// message, "id: <cursor>" and one data line of the message JSON; a reset
// is "event: reset". It speaks HTTP/1.1 itself, on its own connection,
// so that once the stream is open the socket can go to a feed loop.

func (s *subscriber) runSSE(ctx, cctx context.Context, env *subEnv, connected func()) error {
	q := url.Values{"channel": s.channels}
	req, err := http.NewRequest(http.MethodGet, env.base+"/events?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if b := s.bearer(); b != "" {
		req.Header.Set("Authorization", b)
	}
	conn, br, res, done, err := env.path(s).exchange(ctx, cctx, req, "sse", http.StatusOK)
	if err != nil {
		return err
	}
	defer done()

	var (
		opened bool
		d      delivery
	)
	consume, ended := sseConsumer(res, func(ev *sseEvent, now time.Time) error {
		if !opened {
			if !ev.IDSet || ev.HasData {
				return fmt.Errorf("sse: the stream does not open with an id-only block (data %.100q)", ev.Data)
			}
			opened = true
			return nil
		}
		switch {
		case !ev.HasData:
		case len(ev.Event) > 0:
			if string(ev.Event) == "reset" {
				s.tr.reset()
			} else {
				s.tr.stats.parseErrs++
			}
		case parseDelivery(ev.Data, &d):
			s.tr.message(&d, now)
		default:
			s.tr.stats.parseErrs++
		}
		return nil
	})

	// Up to the opening block, on this goroutine, within the connect
	// timeout.
	if err := readUntil(conn, br, consume, func() bool { return opened }); err != nil {
		return fmt.Errorf("sse waiting for the opening block: %w", ended(err))
	}
	_ = conn.SetDeadline(time.Time{})
	connected()
	if err := env.loops.serve(ctx, conn, consume); err != nil {
		return fmt.Errorf("sse read: %w", ended(err))
	}
	return nil
}

// sseConsumer returns consume, which parses the event stream of res (its
// chunked body, or the socket's bytes as they come) and calls handle with
// each block and when its last bytes were read, and ended, which says what
// an error of the socket means: its end (io.EOF) inside a block is a
// truncated stream.
func sseConsumer(res *http.Response, handle func(ev *sseEvent, at time.Time) error) (consume consumeFunc, ended func(error) error) {
	chunked := len(res.TransferEncoding) > 0 && res.TransferEncoding[0] == "chunked"
	var (
		dec    chunkedDecoder
		parser sseParser
		now    time.Time
	)
	emit := func(ev *sseEvent) error { return handle(ev, now) }
	body := func(b []byte) error { return parser.feed(b, emit) }
	consume = func(p []byte, at time.Time, _ io.Writer) error {
		now = at
		if chunked {
			return dec.feed(p, body)
		}
		return body(p)
	}
	ended = func(err error) error {
		if errors.Is(err, io.EOF) {
			return parser.end()
		}
		return err
	}
	return consume, ended
}
