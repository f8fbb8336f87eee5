package server

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
)

// The JSON shapes SSE and long-poll share. They are written by hand, not by
// encoding/json: channel and event names are restricted to characters that
// need no escaping, data is already compact JSON, and the cursor is
// base64url, so each message is one append without reflection.

// appendMessageJSON appends {"channel","id","event","data","createdAt"}
// ("event" only when the message has one).
func appendMessageJSON(b []byte, m *pubsub.Message) []byte {
	b = append(b, `{"channel":"`...)
	b = append(b, m.Channel...)
	b = append(b, `","id":"`...)
	b = strconv.AppendUint(b, m.Offset, 10)
	b = append(b, '"')
	if m.Event != "" {
		b = append(b, `,"event":"`...)
		b = append(b, m.Event...)
		b = append(b, '"')
	}
	b = append(b, `,"data":`...)
	b = append(b, m.Data...)
	b = append(b, `,"createdAt":"`...)
	b = appendTime(b, m.Time)
	return append(b, `"}`...)
}

// appendTime appends t in timeFormat. Every subscriber of a message writes
// the same time, so recent formattings are kept in a small lock-free cache
// indexed by millisecond: formatting costs more than the rest of a
// message's JSON.
func appendTime(b []byte, t time.Time) []byte {
	ms := t.UnixMilli()
	slot := &timeCache[uint64(ms)%uint64(len(timeCache))]
	if e := slot.Load(); e != nil && e.ms == ms {
		return append(b, e.text...)
	}
	text := t.UTC().AppendFormat(make([]byte, 0, len(timeFormat)), timeFormat)
	slot.Store(&formattedTime{ms: ms, text: text})
	return append(b, text...)
}

type formattedTime struct {
	ms   int64
	text []byte
}

var timeCache [256]atomic.Pointer[formattedTime]

// timeFormat is RFC 3339 with milliseconds, as the GraphQL Time scalar.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// appendResetJSON appends {"channel","reason","cursor"}.
func appendResetJSON(b []byte, r *pubsub.Reset, cursor pubsub.Cursor) []byte {
	b = append(b, `{"channel":"`...)
	b = append(b, r.Channel...)
	b = append(b, `","reason":"`...)
	b = append(b, r.Reason...)
	b = append(b, `","cursor":"`...)
	b, _ = cursor.AppendText(b)
	return append(b, `"}`...)
}

// readRequest is what the SSE and long-poll endpoints share: the channels
// (repeatable channel parameter) and the cursor.
type readRequest struct {
	channels []string
	cursor   pubsub.Cursor
}

// parseReadRequest reads channels and cursor (the Last-Event-ID header wins
// over the cursor parameter when both are present).
func parseReadRequest(r *http.Request, lastEventID bool) (readRequest, error) {
	q := r.URL.Query()
	req := readRequest{channels: q["channel"]}
	if err := pubsub.ValidateChannels(req.channels); err != nil {
		return req, err
	}
	text := q.Get("cursor")
	if id := r.Header.Get("Last-Event-ID"); lastEventID && id != "" {
		text = id
	}
	c, err := pubsub.ParseCursor(text)
	if err != nil {
		return req, err
	}
	req.cursor = c
	return req, nil
}

// subscribeRead authorizes req for the request's credential and subscribes
// to it for as long as ctx lasts.
func subscribeRead(ctx context.Context, broker pubsub.Broker, auth *access.Auth, req readRequest) (*pubsub.Subscription, error) {
	if err := auth.MayRead(ctx, req.channels); err != nil {
		return nil, err
	}
	return broker.Subscribe(ctx, req.channels, req.cursor)
}

// intParam reads an integer query parameter within [min, max].
func intParam(r *http.Request, name string, def, min, max int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < min || v > max {
		return 0, graph.Errorf(graph.CodeBadUserInput, "%s must be an integer from %d to %d, got %q", name, min, max, s)
	}
	return v, nil
}

// seconds turns a whole number of seconds into a duration.
func seconds(n int) time.Duration { return time.Duration(n) * time.Second }
