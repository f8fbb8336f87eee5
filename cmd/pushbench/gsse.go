package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"
)

// The graphql-sse subscriber speaks the graphql-sse protocol's distinct
// connections mode: one POST /graphql with Accept: text/event-stream and
// the feed subscription (the query the WebSocket subscriber sends), one
// connection per subscription. Each execution result is an "event: next"
// block whose data is the result JSON, the message under data.feed as on
// the WebSocket; "event: complete" ends the operation. The response opens
// without a sign that the subscription is live, so the subscriber counts
// as connected once the event stream's headers arrive: the warm-up, as for
// the WebSocket, shows when its feed is live. A subscription the server
// refuses (an error result) fails to connect when its error comes with the
// headers, and ends its feed when it comes after them.

func (s *subscriber) runGSSE(ctx, cctx context.Context, env *subEnv, connected func()) error {
	body, err := json.Marshal(map[string]any{"query": feedQuery, "variables": map[string]any{"channels": s.channels}})
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, env.base+"/graphql", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	if b := s.bearer(); b != "" {
		req.Header.Set("Authorization", b)
	}
	conn, br, res, done, err := env.path(s).exchange(ctx, cctx, req, "gsse", http.StatusOK)
	if err != nil {
		return err
	}
	defer done()
	if mt, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); mt != "text/event-stream" {
		// A request refused before the operation runs: one GraphQL
		// response in JSON.
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return httpError("gsse", res.StatusCode, b)
	}

	var d delivery
	results := 0 // execution results read without error
	consume, ended := sseConsumer(res, func(ev *sseEvent, now time.Time) error {
		switch string(ev.Event) {
		case "next":
			err := s.feedResult(ev.Data, &d, now)
			if err == nil {
				results++
			}
			return err
		case "complete":
			return errors.New("the server completed the subscription")
		}
		s.tr.stats.parseErrs++
		return nil
	})
	// What came with the headers.
	if err := readUntil(conn, br, consume, func() bool { return true }); err != nil {
		if results > 0 {
			// The feed was live (a result came) and ended in the same
			// read: connected, then ended, as when it ends later.
			connected()
			return fmt.Errorf("gsse read: %w", ended(err))
		}
		return fmt.Errorf("gsse: %w", ended(err))
	}
	_ = conn.SetDeadline(time.Time{})
	connected()
	if err := env.loops.serve(ctx, conn, consume); err != nil {
		return fmt.Errorf("gsse read: %w", ended(err))
	}
	return nil
}
