package server

import (
	"context"
	"net/http"
	"time"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/delivery"
	"github.com/pushgate/pushgate/server/observe"
)

// Long-poll limits. WeChat caps a request at 60 s, so a hold stays well
// under it.
const (
	pollDefaultTimeout = 25
	pollMaxTimeout     = 50
	pollDefaultLimit   = 100
	pollMaxLimit       = 1000
	// pollMessageOverhead bounds a message's JSON besides its data, and
	// the answer's end.
	pollMessageOverhead = 1024
)

// handlePoll serves GET /poll. Without a cursor it answers at once with the
// current position, so a client can start polling without missing what
// comes next. With one it answers at once with what is retained after it,
// else holds until a message arrives or the timeout passes, and then answers
// with no messages and the same cursor. The answer is always
// {"messages":[...],"cursor":"...","reset":null|{...}}; the next poll passes
// cursor. An answer holds at most limit messages and, past the first, no
// more than maxBytes of JSON: the client polls again for the rest.
func handlePoll(broker pubsub.Broker, auth *access.Auth, metrics *Metrics, maxBytes int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := parseReadRequest(r, false)
		if err != nil {
			writeErr(w, err)
			return
		}
		timeout, limit, err := pollParams(r)
		if err != nil {
			writeErr(w, err)
			return
		}
		hold := timeout > 0
		// The hold bounds only the wait for a first message; reading what is
		// already retained is bounded by the request itself.
		ctx := r.Context()
		holdCtx, cancel := context.WithTimeout(ctx, seconds(timeout))
		defer cancel()
		sub, err := subscribeRead(ctx, broker, auth, req)
		if err != nil {
			writeErr(w, err)
			return
		}
		defer sub.Close()
		st := metrics.NewStream(observe.Poll, r)
		st.Open(true, nil)

		cursor := sub.Cursor()
		buf := make([]byte, 0, 512)
		buf = append(buf, `{"messages":[`...)
		var reset []byte
		var created []time.Time // of the messages, for the metrics
		n := 0
	collect:
		for !req.cursor.IsZero() && n < limit {
			ev, ok := sub.TryNext()
			catching := false
			if !ok {
				// Read the flag before looking again: a catch-up queues all
				// it read before it stops catching up.
				catching = sub.CatchingUp()
				ev, ok = sub.TryNext()
			}
			if !ok {
				var err error
				switch {
				case catching:
					// A backlog is being read from the store: wait for it.
					ev, ok, err = sub.NextUntil(ctx, time.After(time.Millisecond))
				case hold && n == 0 && reset == nil:
					ev, ok, err = sub.NextUntil(holdCtx, nil)
				default:
					break collect
				}
				if err != nil {
					break collect
				}
				if !ok {
					continue
				}
			}
			if ev.Reset != nil {
				if reset != nil || n > 0 {
					break collect // the next poll reports it
				}
				reset = appendResetJSON(nil, ev.Reset, ev.Cursor)
			} else {
				if n > 0 && int64(len(buf)+len(ev.Message.Data))+pollMessageOverhead > maxBytes {
					// The next poll, from the cursor before it, gets it.
					break collect
				}
				if n > 0 {
					buf = append(buf, ',')
				}
				buf = growAnswer(buf, len(ev.Message.Data)+pollMessageOverhead, int(maxBytes))
				buf = appendMessageJSON(buf, ev.Message)
				created = append(created, ev.Message.Time)
				n++
			}
			cursor = ev.Cursor
		}
		// Also when the request's context ended (shutdown): the client gets
		// a well-formed answer and polls again, elsewhere.
		buf = append(buf, `],"cursor":"`...)
		buf, _ = cursor.AppendText(buf)
		buf = append(buf, `","reset":`...)
		if reset == nil {
			buf = append(buf, "null"...)
		} else {
			buf = append(buf, reset...)
		}
		buf = append(buf, "}\n"...)
		pollHeaders(w.Header())
		end := observe.End{}
		if delivery.ShuttingDown(ctx) {
			end.Drop = observe.DropShutdown
		}
		if _, err := w.Write(buf); err == nil {
			st.Deliver(time.Now(), created...)
		}
		st.End(end)
	})
}

// growAnswer makes room for need more bytes, doubling up to limit: append
// grows a large slice by a quarter at a time, which costs five times a
// 16 MiB answer in allocations instead of about twice.
func growAnswer(buf []byte, need, limit int) []byte {
	if cap(buf)-len(buf) >= need {
		return buf
	}
	c := min(2*cap(buf), limit)
	if c > limit/2 {
		// A doubling past half the limit is nearly the limit again.
		c = limit
	}
	grown := make([]byte, len(buf), max(c, len(buf)+need))
	copy(grown, buf)
	return grown
}

// pollParams reads a poll's timeout (seconds) and limit.
func pollParams(r *http.Request) (timeout, limit int, err error) {
	if timeout, err = intParam(r, "timeout", pollDefaultTimeout, 0, pollMaxTimeout); err != nil {
		return 0, 0, err
	}
	if limit, err = intParam(r, "limit", pollDefaultLimit, 1, pollMaxLimit); err != nil {
		return 0, 0, err
	}
	return timeout, limit, nil
}

// pollHeaders are the headers of a poll's answer (and of a HEAD of one).
func pollHeaders(h http.Header) {
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
}
