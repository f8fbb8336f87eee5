package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// The long-poll subscriber loops on GET /poll: the first poll, without a
// cursor, answers at once with the current position (the feed is live from
// there); each next one passes the cursor of the previous answer and is
// held until messages arrive or the timeout passes. An answer is
// {"messages":[...],"cursor":"...","reset":null|{...}}.

func (s *subscriber) runPoll(ctx, cctx context.Context, env *subEnv, connected func()) error {
	q := url.Values{"channel": s.channels}
	prefix := env.base + "/poll?" + q.Encode() + "&timeout=" + strconv.Itoa(env.pollTimeout) + "&cursor="
	var body bytes.Buffer
	var cursor []byte
	var d delivery

	poll := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, prefix+url.QueryEscape(string(cursor)), nil)
		if err != nil {
			return err
		}
		if b := s.bearer(); b != "" {
			req.Header.Set("Authorization", b)
		}
		res, err := env.path(s).pollClient.Do(req)
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		defer res.Body.Close()
		body.Reset()
		if _, err := body.ReadFrom(res.Body); err != nil {
			return fmt.Errorf("poll read: %w", err)
		}
		now := time.Now()
		if res.StatusCode != http.StatusOK {
			e := httpError("poll", res.StatusCode, body.Bytes())
			if secs, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil {
				e.retryAfter = time.Duration(secs) * time.Second
			}
			return e
		}
		var next []byte
		ok := eachMember(body.Bytes(), func(key, value []byte) bool {
			switch string(key) {
			case "messages":
				eachElement(value, func(m []byte) bool {
					if parseDelivery(m, &d) {
						s.tr.message(&d, now)
					} else {
						s.tr.stats.parseErrs++
					}
					return true
				})
			case "cursor":
				next = unquote(value)
			case "reset":
				if string(value) != "null" {
					s.tr.reset()
				}
			}
			return true
		})
		if !ok || next == nil {
			return fmt.Errorf("poll: bad answer %.200q", body.Bytes())
		}
		cursor = append(cursor[:0], next...)
		return nil
	}

	// A poll refused for a rate limit (429) is tried again with the same
	// cursor after Retry-After, as a client does: nothing is lost, the
	// wait shows in the latency and the refusals are counted.
	pollRetry := func(ctx context.Context) error {
		for {
			err := poll(ctx)
			var se *statusError
			if !errors.As(err, &se) || se.status != http.StatusTooManyRequests {
				return err
			}
			s.tr.stats.limited++
			wait := min(max(se.retryAfter, 100*time.Millisecond), 5*time.Second)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if err := pollRetry(cctx); err != nil {
		return err
	}
	connected()
	for {
		if err := pollRetry(ctx); err != nil {
			return err
		}
	}
}
