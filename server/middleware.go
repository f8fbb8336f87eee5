package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/xid"
	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/delivery"
	"github.com/pushgate/pushgate/server/limits"
	"github.com/pushgate/pushgate/server/observe"
)

// request is what the layers below requestContext know of one request,
// in one allocation: its logger (with the request's id), its credential,
// the route that served it, a GraphQL rate limit's wait, and the writer
// that records the status and size for the metrics and the access log.
type request struct {
	w          requestWriter
	log        zerolog.Logger
	id         string       // the request's id
	cred       string       // the request's credential (requestCredential)
	route      string       // the mux pattern that served it (notePattern)
	retry      atomic.Int64 // seconds a GraphQL rate limit asks to wait (limits.Hooks.NoteRetry)
	retryAfter bool         // the response carries retry (a GraphQL request, not a stream)
	body       deadlineBody // the body under its read deadline (limitBody), in the same allocation
	client     string       // the client IP's limits key, for wechatLogin (limits.graphql)
}

type requestKey struct{}

// requestCredentialOf is the credential requestContext read from ctx's
// request ("" outside it): access.Auth's credential source.
func requestCredentialOf(ctx context.Context) string {
	if st := requestOf(ctx); st != nil {
		return st.cred
	}
	return ""
}

// limitHooks connect the limits to the server: m counts their refusals,
// auth names senders, and a GraphQL request's rate-limit wait goes into
// its request, for requestWriter's Retry-After.
func limitHooks(m *Metrics, auth *access.Auth) limits.Hooks {
	return limits.Hooks{
		Refused: func() { m.Dropped(observe.DropLimit) },
		Who:     auth.Who,
		NoteRetry: func(ctx context.Context, seconds int) {
			if st := requestOf(ctx); st != nil {
				st.retry.Store(int64(seconds))
			}
		},
		NoteGraphQL: func(ctx context.Context, client string) {
			if st := requestOf(ctx); st != nil {
				st.retryAfter = true
				st.client = client
			}
		},
		IsStream: isStream,
	}
}

// requestOf returns ctx's request, or nil outside requestContext.
func requestOf(ctx context.Context) *request {
	st, _ := ctx.Value(requestKey{}).(*request)
	return st
}

// requestContext gives every request, in one copy of the request, the
// context that the layers below read: a logger with the request's id (also
// sent back as X-Request-Id), its credential (requestCredential), and, unless it
// is a stream, no cancellation at shutdown (drainable). When the request
// ends (for a WebSocket, when the connection closes) it is counted by
// route and status class (m), timed unless it is a stream, and logged in
// one access log line at info level. The log line has the path without
// the query, which may carry a token.
func requestContext(log zerolog.Logger, m *Metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		st := &request{cred: requestCredential(r)}
		st.w = requestWriter{ResponseWriter: w, req: st}
		st.id = xid.New().String()
		// The id is added by a hook when a line is written, instead of to
		// a copy of the logger's context (With copies it into 500 bytes).
		st.log = log.Hook(requestIDHook{st})
		w.Header().Set("X-Request-Id", st.id)
		ctx := context.WithValue(r.Context(), requestKey{}, st)
		ctx = st.log.WithContext(ctx)
		if !isStream(r) {
			ctx = drainable(ctx)
		}
		r = r.WithContext(ctx)
		st.serve(next, r)
		d := time.Since(start)
		status, size := st.w.status, st.w.size
		// A stream outlives its handler (SSE, hijacked), and with it its
		// context and st: st must not keep net/http's response and its
		// buffers (11 KB per idle SSE connection).
		st.w = requestWriter{}
		// A stream's duration is its life, not the time to answer it.
		stream := status == http.StatusSwitchingProtocols || st.route == "GET /events" ||
			delivery.KindOf(r) == delivery.EventStream
		m.CountRequest(st.route, status, d, stream)
		st.log.Info().
			Str("method", r.Method).
			Str("path", r.URL.Path).
			Int("status", status).
			Int64("size", size).
			Dur("duration", d).
			Msg("request")
	})
}

// serve serves r through next, recovering a panic of the handler
// (recoverRequest).
func (st *request) serve(next http.Handler, r *http.Request) {
	defer recoverRequest(r.Context(), &st.w)
	next.ServeHTTP(&st.w, r)
}

// requestIDHook adds the request's id to every line of its logger.
type requestIDHook struct{ st *request }

func (h requestIDHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) { e.Str("req_id", h.st.id) }

// requestWriter records the response's status and size, and adds a
// GraphQL rate limit's Retry-After (with 429 for
// application/graphql-response+json, whose request errors are 4xx).
type requestWriter struct {
	http.ResponseWriter
	req    *request
	status int // the first status written; 0: none
	size   int64
	// body, while set, is a body read under a deadline (limitBody): a
	// hijack ends the deadline.
	body *deadlineBody
	// discard: the request was answered for its body's timeout; what the
	// handler writes afterwards goes nowhere.
	discard bool
}

func (w *requestWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *requestWriter) WriteHeader(status int) {
	if w.status != 0 {
		return // as net/http would, but without its complaint in the log
	}
	if w.req.retryAfter {
		if s := w.req.retry.Load(); s > 0 {
			h := w.Header()
			h.Set("Retry-After", strconv.FormatInt(s, 10))
			if status == http.StatusOK && strings.HasPrefix(h.Get("Content-Type"), "application/graphql-response+json") {
				status = http.StatusTooManyRequests
			}
		}
	}
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

func (w *requestWriter) Write(p []byte) (int, error) {
	if w.discard {
		return len(p), nil
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.size += int64(n)
	return n, err
}

func (w *requestWriter) Flush() { _ = w.FlushError() }

func (w *requestWriter) FlushError() error {
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *requestWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.body != nil {
		w.body.clear()
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// limitBody refuses bodies over limit with 413: at once when
// Content-Length says so; a body of unknown length (chunked) is read here
// first, as gqlgen would answer a failed read with 200. A body must arrive
// within timeout (deadlineBody), or the request is answered 408.
func limitBody(limit int64, timeout time.Duration, next http.Handler) http.Handler {
	tooLarge := func(w http.ResponseWriter, size string) {
		writeError(w, http.StatusRequestEntityTooLarge, graph.CodePayloadTooLarge,
			fmt.Sprintf("the request body of %s bytes is over the limit of %d bytes", size, limit))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			tooLarge(w, strconv.FormatInt(r.ContentLength, 10))
			return
		}
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		if rw, ok := w.(*requestWriter); ok {
			if body := newDeadlineBody(rw, r.Body, timeout); body != nil {
				r.Body = body
			}
		}
		if r.ContentLength < 0 {
			body, err := io.ReadAll(r.Body)
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				tooLarge(w, "more than "+strconv.FormatInt(limit, 10))
				return
			}
			if err != nil {
				if rw, ok := w.(*requestWriter); !ok || !rw.discard {
					writeError(w, http.StatusBadRequest, graph.CodeBadUserInput, "the request body could not be read")
				}
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r)
	})
}

// requestCredential is the request's credential: the bearer of Authorization,
// else the token query parameter (for clients that cannot set headers). A
// WebSocket connection_init payload may replace it.
func requestCredential(r *http.Request) string {
	if cred := access.Bearer(r.Header.Get("Authorization")); cred != "" {
		return cred
	}
	return r.URL.Query().Get("token")
}

// drainable keeps a request that is not a stream running when the base
// context is cancelled at shutdown, so http.Server.Shutdown drains it within
// the grace period (gqlgen answers a request whose context is done with a
// bare null). Streams (WebSocket, SSE, graphql-sse, long-poll) keep the base
// context: its cancellation with ErrShutdown is what ends them.
func drainable(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

func isStream(r *http.Request) bool {
	return delivery.KindOf(r) != delivery.Request || r.URL.Path == "/events" || r.URL.Path == "/poll"
}

// CodeRequestTimeout: the request's body did not arrive within the read
// timeout (HTTP 408).
const CodeRequestTimeout = "REQUEST_TIMEOUT"

// deadlineBody is a request body read under a deadline on the connection
// (http.ResponseController.SetReadDeadline, not http.Server.ReadTimeout,
// which would also cut streams). The deadline ends when the body does
// (net/http then watches the connection for the client's going away, which
// the deadline must not cut) and when the connection is hijacked. A body
// never read to its end keeps it, which also bounds net/http's discarding
// of what is left after the handler. A read that misses it answers the
// request 408 REQUEST_TIMEOUT at once (what the handler writes afterwards
// is dropped), and net/http closes the connection.
//
// http.Server's ReadHeaderTimeout and IdleTimeout bound the rest; net/http
// sets the connection's deadline anew for each request.
type deadlineBody struct {
	io.ReadCloser
	w       *requestWriter
	conn    readDeadliner // net/http's response, which sets its connection's read deadline
	timeout time.Duration
	set     bool
}

// readDeadliner is what http.ResponseController calls to set a read
// deadline: asked of net/http's writer directly, it costs no allocation
// per request.
type readDeadliner interface{ SetReadDeadline(time.Time) error }

// newDeadlineBody puts body under timeout, in w's request; nil when the
// writer cannot set a read deadline (the body is then read as it is).
func newDeadlineBody(w *requestWriter, body io.ReadCloser, timeout time.Duration) *deadlineBody {
	conn, ok := w.ResponseWriter.(readDeadliner)
	if !ok || w.req == nil {
		return nil
	}
	b := &w.req.body
	*b = deadlineBody{ReadCloser: body, w: w, conn: conn, timeout: timeout}
	b.set = conn.SetReadDeadline(time.Now().Add(timeout)) == nil
	w.body = b
	return b
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && b.set {
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() && b.w.status == 0 {
			b.set = false // passed: net/http's discard of the rest fails at once
			b.w.body = nil
			b.w.Header().Set("Connection", "close")
			writeError(b.w, http.StatusRequestTimeout, CodeRequestTimeout,
				fmt.Sprintf("the request body did not arrive within %v", b.timeout))
			b.w.discard = true
			return n, err
		}
		b.clear()
	}
	return n, err
}

// clear ends the deadline.
func (b *deadlineBody) clear() {
	if b.set {
		b.set = false
		_ = b.conn.SetReadDeadline(time.Time{})
	}
	if b.w.body == b {
		b.w.body = nil
	}
}

// notePattern records the pattern the mux matched in the request: HTTP
// requests are counted by the pattern of the route that served them, never
// by path, and the pattern is known once the mux has matched, deep in the
// handler chain, while the count is made around it (requestContext).
func notePattern(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		if st := requestOf(r.Context()); st != nil {
			st.route = r.Pattern // set by the mux on r
		}
	})
}
