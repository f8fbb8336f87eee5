package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/pubsub"
)

// sseOptions configure GET /events.
type sseOptions struct {
	heartbeat    time.Duration // comment line interval on an idle stream
	writeTimeout time.Duration // a write that does not complete drops the client
	retry        time.Duration // reconnection delay hinted to EventSource
	presence     *presence     // counts the stream's subject on its channels
	metrics      *Metrics      // accounts the stream
}

// maxCoalesce bounds how many queued events one write carries.
const maxCoalesce = 64

// handleEvents serves GET /events, the SSE feed. Every message is one event
// whose id is the cursor right after it and whose single data line is the
// message JSON; a reset is "event: reset". An EventSource reconnecting with
// Last-Event-ID, or any client passing cursor, resumes without loss. The
// stream starts with an id-only block naming the start position, so even a
// client that reconnects before its first message resumes from where it
// started (the SSE spec sets lastEventId without dispatching an event).
// A stream opened with a token ends when the token expires, with
// "event: expired" and data {"reason":"token expired","cursor":...}.
func handleEvents(broker pubsub.Broker, auth *Auth, opts sseOptions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := parseReadRequest(r, true)
		if err != nil {
			writeErr(w, err)
			return
		}
		ctx := r.Context()
		sub, err := subscribeRead(ctx, broker, auth, req)
		if err != nil {
			writeErr(w, err)
			return
		}
		defer sub.Close()
		// A token bounds the stream: when it expires the client gets
		// "event: expired" with its cursor (expiry.go).
		live, stop := auth.untilTokenExpires(ctx)
		defer stop()
		if opts.presence != nil {
			defer opts.presence.join(ctx, req.channels)()
		}
		st := opts.metrics.newStream(transportSSE, r)
		st.open(true, func(e *zerolog.Event) { e.Int("channels", len(req.channels)).Bool("resume", !req.cursor.IsZero()) })
		end := streamEnd{by: "client", reason: "client gone"}
		defer func() { st.end(end) }()

		h := w.Header()
		h.Set("Content-Type", "text/event-stream; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		if r.ProtoMajor == 1 {
			h.Set("Connection", "keep-alive")
		}
		w.WriteHeader(http.StatusOK)

		rc := http.NewResponseController(w)
		var werr error // of the last write
		write := func(b []byte) bool {
			_ = rc.SetWriteDeadline(time.Now().Add(opts.writeTimeout))
			if _, werr = w.Write(b); werr != nil {
				return false
			}
			werr = rc.Flush()
			return werr == nil
		}
		writeFailed := func() streamEnd {
			if isTimeout(werr) {
				return streamEnd{drop: dropSlowClient, by: "server", reason: "slow client: write timed out"}
			}
			return streamEnd{by: "client", reason: "client gone"}
		}
		defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()

		buf := make([]byte, 0, 1024)
		buf = append(buf, "retry: "...)
		buf = strconv.AppendInt(buf, opts.retry.Milliseconds(), 10)
		buf = append(buf, "\nid: "...)
		buf, _ = sub.Cursor().AppendText(buf)
		buf = append(buf, "\n\n"...)
		if !write(buf) {
			end = writeFailed()
			return
		}

		heartbeat := time.NewTicker(opts.heartbeat)
		defer heartbeat.Stop()
		var created []time.Time // of the messages in buf, for the metrics
		for {
			ev, ok, err := sub.NextUntil(live, heartbeat.C)
			if err != nil {
				switch {
				case tokenExpired(live) && ctx.Err() == nil:
					write(appendExpiredEvent(buf[:0], sub.Cursor()))
					end = streamEnd{drop: dropExpired, by: "server", reason: "token expired"}
				case shuttingDown(ctx):
					end = streamEnd{drop: dropShutdown, by: "server", reason: "server shutting down"}
				case ctx.Err() == nil:
					end = streamEnd{by: "server", reason: "subscription ended: " + err.Error()}
				}
				return
			}
			buf, created = buf[:0], created[:0]
			if !ok {
				buf = append(buf, ": heartbeat\n\n"...)
			} else {
				buf = appendSSEEvent(buf, ev)
				if ev.Message != nil {
					created = append(created, ev.Message.Time)
				}
				// Whatever else is queued goes in the same write.
				for n := 1; n < maxCoalesce; n++ {
					ev, ok := sub.TryNext()
					if !ok {
						break
					}
					buf = appendSSEEvent(buf, ev)
					if ev.Message != nil {
						created = append(created, ev.Message.Time)
					}
				}
			}
			if !write(buf) {
				end = writeFailed()
				return
			}
			st.deliver(time.Now(), created...)
			if cap(buf) > 64<<10 {
				buf = make([]byte, 0, 1024) // do not keep a burst's buffer
			}
			if cap(created) > 8 {
				created = nil
			}
		}
	})
}

// appendSSEEvent appends one event block.
func appendSSEEvent(b []byte, ev pubsub.Event) []byte {
	b = append(b, "id: "...)
	b, _ = ev.Cursor.AppendText(b)
	if ev.Reset != nil {
		b = append(b, "\nevent: reset\ndata: "...)
		b = appendResetJSON(b, ev.Reset, ev.Cursor)
	} else {
		b = append(b, "\ndata: "...)
		b = appendMessageJSON(b, ev.Message)
	}
	return append(b, "\n\n"...)
}
