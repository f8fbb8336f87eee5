package main

import (
	"bufio"
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
// is "event: reset".

func (s *subscriber) runSSE(ctx, cctx context.Context, env *subEnv, connected func()) error {
	q := url.Values{"channel": s.channels}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.base+"/events?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if b := s.bearer(); b != "" {
		req.Header.Set("Authorization", b)
	}
	// The connect timeout bounds the wait for the opening block: a timer
	// cancels the request unless it is stopped in time.
	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := context.AfterFunc(cctx, func() {
		if ctx.Err() == nil && cctx.Err() == context.DeadlineExceeded {
			cancel()
		}
	})
	res, err := env.path(s).sseClient.Do(req.WithContext(reqCtx))
	if err != nil {
		return fmt.Errorf("sse request: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return httpError("sse", res.StatusCode, body)
	}
	p := newSSEReader(bufio.NewReaderSize(res.Body, 4096))
	ev, err := p.Next()
	if err != nil {
		return fmt.Errorf("sse waiting for the opening block: %w", err)
	}
	if !ev.IDSet || ev.HasData {
		return fmt.Errorf("sse: the stream does not open with an id-only block (data %.100q)", ev.Data)
	}
	if !timer() {
		return errors.New("sse: connect timeout")
	}
	connected()

	var d delivery
	for {
		ev, err := p.Next()
		if err != nil {
			return fmt.Errorf("sse read: %w", err)
		}
		now := time.Now()
		if !ev.HasData {
			continue
		}
		if len(ev.Event) > 0 {
			if string(ev.Event) == "reset" {
				s.tr.reset()
			} else {
				s.tr.stats.parseErrs++
			}
			continue
		}
		if !parseDelivery(ev.Data, &d) {
			s.tr.stats.parseErrs++
			continue
		}
		s.tr.message(&d, now)
	}
}
