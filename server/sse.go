package server

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/delivery"
	"github.com/pushgate/pushgate/server/limits"
	"github.com/pushgate/pushgate/server/observe"
)

// sseOptions configure GET /events.
type sseOptions struct {
	heartbeat    time.Duration // comment line interval on an idle stream
	writeTimeout time.Duration // a write that does not complete drops the client
	retry        time.Duration // reconnection delay hinted to EventSource
	presence     *presence     // counts the stream's subject on its channels
	metrics      *Metrics      // accounts the stream
	streams      *Streams      // counts it open, for shutdown
	// writers write the server's streams; stopping ends them on shutdown.
	writers  *delivery.Writers
	stopping *delivery.Shutdowns
}

// handleEvents serves GET /events, the SSE feed. Every message is one event
// whose id is the cursor right after it and whose single data line is the
// message JSON; a reset is "event: reset". An EventSource reconnecting with
// Last-Event-ID, or any client passing cursor, resumes without loss. The
// stream starts with an id-only block naming the start position, so even a
// client that reconnects before its first message resumes from where it
// started (the SSE spec sets lastEventId without dispatching an event).
// A stream opened with a token ends when the token expires, with
// "event: expired" and data {"reason":"token expired","cursor":...}.
//
// Once the headers are out, the connection is taken from net/http
// (hijacked) and the handler returns: the stream is a delivery.Stream,
// written by the server's writers in chunked encoding, and this transport
// only frames its events (sseEncoder). An idle stream holds no write
// buffer of its own and one small goroutine, which waits for the client
// to go away (watch).
func handleEvents(broker pubsub.Broker, auth *access.Auth, opts sseOptions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := parseReadRequest(r, true)
		if err != nil {
			writeErr(w, err)
			return
		}
		if r.ProtoMajor != 1 {
			writeError(w, http.StatusHTTPVersionNotSupported, "HTTP_VERSION_NOT_SUPPORTED", "GET /events streams over HTTP/1.1")
			return
		}
		// The stream outlives its request: once it is set up, the handler
		// returns and a small goroutine watches the socket (watch), so that
		// an idle stream holds neither the handler's stack nor net/http's
		// buffers. Its context keeps the request's values; it ends when the
		// server shuts down (delivery.Shutdowns), or with the stream.
		var cleanup cleanups
		defer func() { cleanup.run() }() // unless the stream took it over
		ctx, cancel := context.WithCancelCause(context.WithoutCancel(r.Context()))
		stopWatch := opts.stopping.Watch(r, cancel)
		cleanup.add(func() { stopWatch(); cancel(nil) })
		cleanup.add(limits.KeepStreamSlot(r.Context()))
		sub, err := subscribeRead(ctx, broker, auth, req)
		if err != nil {
			writeErr(w, err)
			return
		}
		cleanup.add(sub.Close)
		// A token bounds the stream: when it expires the client gets
		// "event: expired" with its cursor (expiry.go).
		live, stop := auth.UntilTokenExpires(ctx)
		cleanup.add(stop)
		if opts.presence != nil {
			cleanup.add(opts.presence.join(ctx, req.channels))
		}

		sseHeaders(w.Header())
		w.WriteHeader(http.StatusOK) // chunked: no length
		sock, err := delivery.Hijack(w, opts.writeTimeout)
		if err != nil {
			zerolog.Ctx(ctx).Error().Err(err).Msg("SSE: hijack")
			return
		}
		// The socket closes from here on.
		cleanup.add(opts.streams.open())
		cleanup.add(func() { _ = sock.Close() })

		st := opts.metrics.NewStream(observe.SSE, r)
		st.Open(true, func(e *zerolog.Event) { e.Int("channels", len(req.channels)).Bool("resume", !req.cursor.IsZero()) })
		s := delivery.New(delivery.Options{
			Sub: sub, Conn: sock, Encoder: sseEncoder{}, Writers: opts.writers, Account: st,
			Chunked: true, Heartbeat: opts.heartbeat, Ctx: ctx,
			// The first end closes the socket, which ends watch.
			OnEnd:   func(observe.End) { _ = sock.Close() },
			OnPanic: func(v any) { logPanic(ctx, "SSE write", v) },
		})
		sock.OnResume(s.Kick)
		cleanup.add(func() { st.End(s.Ended()) })

		s.Send(func(b []byte) []byte {
			b = append(b, "retry: "...)
			b = strconv.AppendInt(b, opts.retry.Milliseconds(), 10)
			b = append(b, "\nid: "...)
			b, _ = sub.Cursor().AppendText(b)
			return append(b, "\n\n"...)
		})
		s.Start()
		stopEnd := finishWhenDone(live, s, "SSE stream end")
		cleanup.add(func() { stopEnd() })

		go watch(ctx, sock, s, cleanup)
		cleanup = nil
	})
}

// finishWhenDone finishes s, with its end frame, when live ends because
// its token expired or the server shuts down (the cause of live, or of
// the context it derives from); any other end (the client gone, the stream
// ended) leaves s to whoever ended it. stop cancels it.
func finishWhenDone(live context.Context, s *delivery.Stream, where string) (stop func() bool) {
	return context.AfterFunc(live, func() {
		defer recoverClient(live, where, func() { s.End(delivery.InternalEnd) })
		switch {
		case access.TokenExpired(live):
			s.Finish(delivery.Expired)
		case delivery.ShuttingDown(live):
			s.Finish(delivery.Shutdown)
		}
	})
}

// sseHeaders are the headers of an SSE stream (and of a HEAD of one).
func sseHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	// The socket closes with the stream: no client may reuse it.
	h.Set("Connection", "close")
}

// watch waits for the end of a hijacked stream (SSE, graphql-sse), then
// cleans up after it. Clients send nothing more: a read ends when the
// client goes away, or when the stream ended and closed the socket.
func watch(ctx context.Context, sock *delivery.Socket, s *delivery.Stream, cleanup cleanups) {
	defer cleanup.run()
	defer recoverClient(ctx, "stream watch", func() { s.End(delivery.InternalEnd) })
	var one [1]byte
	for {
		if _, err := sock.Read(one[:]); err != nil {
			if sock.TimedOut() {
				s.End(delivery.SlowClient)
			}
			s.End(delivery.ClientGone)
			return
		}
	}
}

// cleanups are functions to run in the reverse order of their adding.
type cleanups []func()

func (cs *cleanups) add(f func()) { *cs = append(*cs, f) }

func (cs cleanups) run() {
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// sseEncoder frames the events of GET /events: one block per event, a
// comment line as heartbeat, "event: expired" with the cursor when the
// token expired.
type sseEncoder struct{}

func (sseEncoder) AppendEvent(b []byte, ev pubsub.Event) []byte { return appendSSEEvent(b, ev) }

func (sseEncoder) AppendHeartbeat(b []byte) []byte { return append(b, ": heartbeat\n\n"...) }

func (sseEncoder) AppendEnd(b []byte, e observe.End, cursor pubsub.Cursor) []byte {
	if e == delivery.Expired {
		b = appendExpiredEvent(b, cursor)
	}
	return b
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
