package server

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/pushgate/pushgate/server/delivery"
	"github.com/pushgate/pushgate/server/observe"
)

// graphqlSSE accounts graphql-sse streams (POST with Accept:
// text/event-stream) from their first 2xx write, so that refusals are not
// counted as streams.
func graphqlSSEAccount(m *Metrics, next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || delivery.KindOf(r) != delivery.EventStream {
			next.ServeHTTP(w, r)
			return
		}
		st := m.NewStream(observe.GraphQLSSE, r)
		sw := &streamWriter{ResponseWriter: w, st: st}
		ctx := r.Context()
		next.ServeHTTP(sw, r.WithContext(observe.WithStream(ctx, st)))
		e := observe.End{By: "client", Reason: "client gone"}
		switch {
		case sw.slow.Load():
			e = observe.End{Drop: observe.DropSlowClient, By: "server", Reason: "slow client: write timed out"}
		case tokenExpired(ctx):
			e = observe.End{Drop: observe.DropExpired, By: "server", Reason: "token expired"}
		case delivery.ShuttingDown(ctx):
			e = observe.End{Drop: observe.DropShutdown, By: "server", Reason: "server shutting down"}
		case ctx.Err() == nil:
			e = observe.End{By: "server", Reason: "operation complete"}
		}
		st.End(e)
	})
}

// streamWriter opens its stream on the first successful write, and notes
// writes and flushes that time out.
type streamWriter struct {
	http.ResponseWriter
	st      *observe.Stream
	written bool
	slow    atomic.Bool
}

func (w *streamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *streamWriter) WriteHeader(status int) {
	if !w.written {
		w.written = true
		if status >= 200 && status < 300 {
			w.st.Open(false, nil)
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *streamWriter) Write(p []byte) (int, error) {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	if err != nil && delivery.IsTimeout(err) {
		w.slow.Store(true)
	}
	return n, err
}

func (w *streamWriter) FlushError() error {
	err := http.NewResponseController(w.ResponseWriter).Flush()
	if err != nil && delivery.IsTimeout(err) {
		w.slow.Store(true)
	}
	return err
}

// streamWriteTimeout bounds every write of a graphql-sse response. gqlgen
// writes a subscription's events synchronously, without a deadline: a client
// that stops reading would hold its connection's writer (and its goroutines)
// forever. With a deadline on each write, such a client is disconnected
// after timeout and resumes from its cursor; other clients never wait on it
// (pubsub's fan-out does not block). WebSocket and SSE
// connections have their own (delivery.Socket).
func streamWriteTimeout(timeout time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if delivery.KindOf(r) != delivery.EventStream {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		sw := &streamDeadline{ResponseWriter: w, rc: http.NewResponseController(w), timeout: timeout, cancel: cancel}
		defer func() { _ = sw.rc.SetWriteDeadline(time.Time{}) }()
		next.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// streamDeadline does the same for a streamed HTTP response (graphql-sse):
// a failed write or flush cancels the request, which ends the subscription.
type streamDeadline struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	cancel  context.CancelFunc
}

func (w *streamDeadline) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *streamDeadline) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	n, err := w.ResponseWriter.Write(p)
	if err != nil {
		w.cancel()
	}
	return n, err
}

func (w *streamDeadline) Flush() { _ = w.FlushError() }

func (w *streamDeadline) FlushError() error {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	err := w.rc.Flush()
	if err != nil {
		w.cancel()
	}
	return err
}
