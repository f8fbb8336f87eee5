package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	coderws "github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/graph/model"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
)

// Metrics are pushgate's Prometheus metrics, in a registry of their own
// with the Go runtime and process collectors. README.md ("Metrics") lists
// each. No label value ever names a channel, a subject, a token or an
// address: labels take a few fixed values (transports, reasons, error
// codes, Redis command names, route patterns), so the number of series is
// bounded whatever the traffic.
//
// One Metrics serves one server: cmd/pushgate hands the same one to the
// broker (Observer), to the Redis client (RedisHook) and to New
// (Config.Metrics).
type Metrics struct {
	reg *prometheus.Registry

	connections      [numTransports]prometheus.Gauge
	connectionsTotal [numTransports]prometheus.Counter
	subscriptions    [numTransports]prometheus.Gauge
	delivered        [numTransports]prometheus.Counter
	latency          [numTransports]prometheus.Observer
	dropped          [numDropReasons]prometheus.Counter

	sent       prometheus.Counter
	duplicates prometheus.Counter
	sendErrors *prometheus.CounterVec

	resumed      prometheus.Counter
	resumedReset prometheus.Counter
	resets       *prometheus.CounterVec
	storeErrors  *prometheus.CounterVec

	redisErrors     *prometheus.CounterVec
	redisReconnects prometheus.Counter

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	httpRoutes   sync.Map // route -> *routeMetrics, the children of the two
}

// transportKind is a label value of the streaming transports.
type transportKind uint8

const (
	transportWebSocket transportKind = iota
	transportSSE
	transportPoll
	transportGraphQLSSE
	numTransports
)

var transportNames = [numTransports]string{"websocket", "sse", "poll", "graphql_sse"}

// dropReason is why the server ended or refused a streaming connection or
// subscription (pushgate_dropped_total).
type dropReason uint8

const (
	dropNone       dropReason = iota
	dropSlowClient            // a write did not complete within the write timeout
	dropLimit                 // refused by a connection or subscription limit
	dropExpired               // its token expired
	dropShutdown              // the node shut down
	numDropReasons
)

var dropNames = [numDropReasons]string{"", "slow_client", "limit", "expired", "shutdown"}

// latencyBuckets suit publish-to-delivery latency: from a loopback
// millisecond to a client catching up after seconds.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewMetrics returns a fresh set of metrics in its own registry.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := promauto{m.reg}
	connections := f.gaugeVec("pushgate_connections", "Streaming connections open, by transport (a long-poll counts while it is held).", "transport")
	connectionsTotal := f.counterVec("pushgate_connections_total", "Streaming connections opened, by transport.", "transport")
	subscriptions := f.gaugeVec("pushgate_subscriptions", "Subscriptions running, by transport (GraphQL subscription operations; an SSE stream or a long-poll is one).", "transport")
	delivered := f.counterVec("pushgate_messages_delivered_total", "Messages written to clients, by transport.", "transport")
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pushgate_delivery_latency_seconds",
		Help:    "Time from a message's append to the store until a transport writes it to a client, by transport.",
		Buckets: latencyBuckets,
	}, []string{"transport"})
	m.reg.MustRegister(latency)
	for t, name := range transportNames {
		m.connections[t] = connections.WithLabelValues(name)
		m.connectionsTotal[t] = connectionsTotal.WithLabelValues(name)
		m.subscriptions[t] = subscriptions.WithLabelValues(name)
		m.delivered[t] = delivered.WithLabelValues(name)
		m.latency[t] = latency.WithLabelValues(name)
	}
	dropped := f.counterVec("pushgate_dropped_total", "Streaming connections and subscriptions the server ended or refused, by reason: "+
		"slow_client, limit, expired (token), shutdown.", "reason")
	for r := dropSlowClient; r < numDropReasons; r++ {
		m.dropped[r] = dropped.WithLabelValues(dropNames[r])
	}

	m.sent = f.counter("pushgate_messages_sent_total", "Messages appended by the send and broadcast mutations (one per channel).")
	m.duplicates = f.counter("pushgate_messages_duplicate_total", "Sends that repeated an idempotency key within its window: nothing was appended.")
	m.sendErrors = f.counterVec("pushgate_send_errors_total", "Errors of send and broadcast mutations, by GraphQL error code.", "code")
	for _, c := range []string{graph.CodeBadUserInput, graph.CodeUnauthenticated, graph.CodeForbidden,
		graph.CodePayloadTooLarge, graph.CodeRateLimited, graph.CodeUnavailable, graph.CodeInternal} {
		m.sendErrors.WithLabelValues(c)
	}

	resumes := f.counterVec("pushgate_resumes_total", "Subscriptions started with a cursor, once caught up, by outcome: "+
		"resumed (no reset), reset (a Reset came first).", "outcome")
	m.resumed, m.resumedReset = resumes.WithLabelValues("resumed"), resumes.WithLabelValues("reset")
	m.resets = f.counterVec("pushgate_resets_total", "Resets sent to subscribers, by reason.", "reason")
	for _, r := range []pubsub.ResetReason{pubsub.ResetExpired, pubsub.ResetEpochChanged, pubsub.ResetUnknownPosition} {
		m.resets.WithLabelValues(string(r))
	}
	m.storeErrors = f.counterVec("pushgate_store_errors_total", "Store operations that failed, by operation "+
		"(publish, history, state, subscribe, catch_up).", "op")
	for _, op := range []string{"publish", "history", "state", "subscribe", "catch_up"} {
		m.storeErrors.WithLabelValues(op)
	}

	m.redisErrors = f.counterVec("pushgate_redis_errors_total", "Redis commands that failed (not counting nil replies), by command; "+
		"op=dial for failed connection attempts.", "op")
	m.redisReconnects = f.counter("pushgate_redis_reconnects_total", "Connections to Redis opened after the first one.")

	m.httpRequests = f.counterVec("pushgate_http_requests_total", "HTTP requests, by route pattern and status class.", "route", "status")
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pushgate_http_request_duration_seconds",
		Help:    "Duration of HTTP requests other than streams (WebSocket, SSE), by route pattern.",
		Buckets: prometheus.DefBuckets,
	}, []string{"route"})
	m.reg.MustRegister(m.httpDuration)

	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// BuildInfo sets pushgate_build_info{version,commit,goversion} to 1: the
// facts of the running binary, to be joined with other series in queries
// (one series per process, so the labels stay bounded). Call it once.
func (m *Metrics) BuildInfo(version, commit, goVersion string) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pushgate_build_info",
		Help: "Always 1; the labels are the version, VCS commit and Go version of the running binary.",
	}, []string{"version", "commit", "goversion"})
	m.reg.MustRegister(g)
	g.WithLabelValues(version, commit, goVersion).Set(1)
}

// Registerer is where more collectors can be added, to be served with
// these.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// promauto registers the metrics it makes.
type promauto struct{ reg *prometheus.Registry }

func (f promauto) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f promauto) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f promauto) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

// drop counts a connection or subscription the server ended or refused.
func (m *Metrics) drop(r dropReason) {
	if m != nil && r != dropNone {
		m.dropped[r].Inc()
	}
}

// labelValue keeps a label value from outside pushgate's own constants (an
// error code, a Redis command name) to a short token, so that an unexpected
// value cannot add unbounded series.
func labelValue(v string) string {
	if v == "" || len(v) > 32 {
		return "other"
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return "other"
		}
	}
	return v
}

// Observer returns the broker's observer feeding these metrics
// (pubsub.Options.Observer).
func (m *Metrics) Observer() pubsub.Observer { return brokerObserver{m} }

type brokerObserver struct{ m *Metrics }

func (o brokerObserver) Reset(reason pubsub.ResetReason) {
	o.m.resets.WithLabelValues(labelValue(string(reason))).Inc()
}

func (o brokerObserver) Resumed(withReset bool) {
	if withReset {
		o.m.resumedReset.Inc()
	} else {
		o.m.resumed.Inc()
	}
}

func (o brokerObserver) StoreError(op string) {
	o.m.storeErrors.WithLabelValues(labelValue(op)).Inc()
}

// RedisHook returns a go-redis hook that counts the client's failed
// commands (pushgate_redis_errors_total, by command) and its reconnects
// (pushgate_redis_reconnects_total: every connection dialled after the
// first, which includes the pool growing and connections replacing idle
// ones that were closed). Nil replies are not errors, nor are commands
// abandoned because their caller went away, nor NOSCRIPT, which go-redis
// answers by sending the script. Use one hook per client.
func (m *Metrics) RedisHook() redis.Hook { return &redisHook{m: m} }

type redisHook struct {
	m      *Metrics
	dialed atomic.Bool
}

func (h *redisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				h.m.redisErrors.WithLabelValues("dial").Inc()
			}
			return conn, err
		}
		if h.dialed.Swap(true) {
			h.m.redisReconnects.Inc()
		}
		return conn, nil
	}
}

func (h *redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil {
			h.failed(cmd.Name(), err)
		}
		return err
	}
}

func (h *redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if err == nil {
			return nil
		}
		counted := false
		for _, cmd := range cmds {
			if cerr := cmd.Err(); cerr != nil {
				counted = h.failed(cmd.Name(), cerr) || counted
			}
		}
		if !counted {
			h.failed("pipeline", err)
		}
		return err
	}
}

// failed counts err of the command op unless it is no failure.
func (h *redisHook) failed(op string, err error) bool {
	if errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || redis.HasErrorPrefix(err, "NOSCRIPT") {
		return false
	}
	h.m.redisErrors.WithLabelValues(labelValue(op)).Inc()
	return true
}

// countSends returns broker counting what its Publish appends, for the
// send and broadcast mutations (other publishers, such as presence events,
// use the broker itself).
func (m *Metrics) countSends(b pubsub.Broker) pubsub.Broker {
	if m == nil {
		return b
	}
	return sendCounter{Broker: b, m: m}
}

type sendCounter struct {
	pubsub.Broker
	m *Metrics
}

func (b sendCounter) Publish(ctx context.Context, req pubsub.PublishRequest) (pubsub.PublishResult, error) {
	res, err := b.Broker.Publish(ctx, req)
	switch {
	case err != nil:
	case res.Duplicate:
		b.m.duplicates.Inc()
	default:
		b.m.sent.Inc()
	}
	return res, err
}

// handler serves the metrics; with a token, only to requests that bear it
// (Authorization: Bearer <token>).
func (m *Metrics) handler(token string) http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(access.Bearer(r.Header.Get("Authorization"))))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			writeError(w, http.StatusUnauthorized, graph.CodeUnauthenticated, "the metrics token is missing or wrong")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// pprofHandler serves net/http/pprof under /debug/pprof/ to requests
// whose Authorization bears an API key; to others it does not exist (404).
func pprofHandler(auth *access.Auth) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // and the named profiles: heap, goroutine, ...
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hidden := notFound()
	// The command line holds the API keys and the JWT secret: never served.
	mux.Handle("/debug/pprof/cmdline", hidden)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The header only: a ?token= could be an API key logged by proxies.
		// Only a key allowed every channel: profiles show the process's
		// memory and goroutines, all of its channels' data included.
		if k, ok := auth.Key(access.Bearer(r.Header.Get("Authorization"))); !ok || !k.EveryChannel() {
			hidden.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// HTTP requests are counted by the pattern of the route that served them,
// never by path. The pattern is known once the mux has matched, deep in
// the handler chain, while the count is made around it: the request
// (requestOf) carries it back out.

// notePattern records the pattern the mux matched in the request.
func notePattern(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		if st := requestOf(r.Context()); st != nil {
			st.route = r.Pattern // set by the mux on r
		}
	})
}

// count counts a request that ended by route and status class, and times
// it unless it was a stream.
func (m *Metrics) count(r *http.Request, route string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched" // refused before routing (413), or a mux redirect
	}
	if status == 0 {
		status = http.StatusOK
	}
	rm := m.routeMetrics(route)
	if class := status / 100; class < len(rm.requests) {
		c := rm.requests[class].Load()
		if c == nil {
			cc := m.httpRequests.WithLabelValues(route, strconv.Itoa(class)+"xx")
			c = &cc
			rm.requests[class].Store(c)
		}
		(*c).Inc()
	} else {
		m.httpRequests.WithLabelValues(route, strconv.Itoa(class)+"xx").Inc()
	}
	streaming := status == http.StatusSwitchingProtocols || route == "GET /events" ||
		strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	if !streaming {
		o := rm.duration.Load()
		if o == nil { // made on first use: a route never timed has no series
			oo := m.httpDuration.WithLabelValues(route)
			o = &oo
			rm.duration.Store(o)
		}
		(*o).Observe(d.Seconds())
	}
}

// routeMetrics are a route's children of httpRequests (by status class)
// and httpDuration, looked up once instead of by label values on every
// request.
type routeMetrics struct {
	requests [6]atomic.Pointer[prometheus.Counter] // by status / 100
	duration atomic.Pointer[prometheus.Observer]
}

func (m *Metrics) routeMetrics(route string) *routeMetrics {
	if rm, ok := m.httpRoutes.Load(route); ok {
		return rm.(*routeMetrics)
	}
	rm, _ := m.httpRoutes.LoadOrStore(route, new(routeMetrics))
	return rm.(*routeMetrics)
}

// stream is the account of one streaming connection (WebSocket, SSE,
// graphql-sse) or long-poll: the gauges while it is open, the messages
// written to it, how it ended, and for streams a log line when it opens
// and one when it closes. A nil *stream accounts nothing.
type stream struct {
	m            *Metrics
	transport    transportKind
	log          *zerolog.Logger
	start        time.Time
	subscription bool // it is one subscription (SSE, long-poll)
	opened       atomic.Bool
	ended        atomic.Bool
	delivered    atomic.Int64
}

type streamKey struct{}

func (m *Metrics) newStream(t transportKind, r *http.Request) *stream {
	if m == nil {
		return nil
	}
	return &stream{m: m, transport: t, log: hlog.FromRequest(r)}
}

func withStream(ctx context.Context, s *stream) context.Context {
	return context.WithValue(ctx, streamKey{}, s)
}

func streamOf(ctx context.Context) *stream {
	s, _ := ctx.Value(streamKey{}).(*stream)
	return s
}

// open counts the stream open; subscription: it is one subscription. It
// logs the opening of streams (not of long-polls, which the access log
// has) with the fields of e, if any.
func (s *stream) open(subscription bool, fields func(*zerolog.Event)) {
	if s == nil || s.opened.Load() { // once: each caller opens a stream once
		return
	}
	s.start, s.subscription = time.Now(), subscription
	s.opened.Store(true) // publishes start and subscription to end
	s.m.connections[s.transport].Inc()
	s.m.connectionsTotal[s.transport].Inc()
	if subscription {
		s.m.subscriptions[s.transport].Inc()
	}
	if s.transport == transportPoll {
		return
	}
	e := s.log.Info().Str("transport", transportNames[s.transport])
	if fields != nil {
		fields(e)
	}
	e.Msg("stream open")
}

// deliver counts messages written to the stream at now, created being the
// times the store appended them.
func (s *stream) deliver(now time.Time, created ...time.Time) {
	if s == nil || len(created) == 0 {
		return
	}
	s.delivered.Add(int64(len(created)))
	s.m.delivered[s.transport].Add(float64(len(created)))
	obs := s.m.latency[s.transport]
	for _, t := range created {
		obs.Observe(max(now.Sub(t).Seconds(), 0)) // clocks of several nodes may disagree
	}
}

// streamEnd says how a stream ended.
type streamEnd struct {
	drop   dropReason
	by     string // "client" or "server"
	reason string // why, in a few words (never a client's own text)
	code   int    // the WebSocket close code, 0 for none
}

// end counts the stream closed, once, and logs it.
func (s *stream) end(e streamEnd) {
	if s == nil || !s.opened.Load() || !s.ended.CompareAndSwap(false, true) {
		return
	}
	m := s.m
	m.connections[s.transport].Dec()
	if s.subscription {
		m.subscriptions[s.transport].Dec()
	}
	m.drop(e.drop)
	if s.transport == transportPoll {
		return
	}
	ev := s.log.Info().
		Str("transport", transportNames[s.transport]).
		Dur("duration", time.Since(s.start)).
		Int64("delivered", s.delivered.Load())
	if e.by != "" {
		ev = ev.Str("closed_by", e.by)
	}
	if e.code != 0 {
		ev = ev.Int("close_code", e.code)
	}
	if e.drop != dropNone {
		ev = ev.Str("drop", dropNames[e.drop])
	}
	ev.Str("reason", e.reason).Msg("stream closed")
}

// isTimeout reports whether a write failed for its deadline: the client
// did not take it in time.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// shuttingDown reports whether ctx ended because the node shuts down.
func shuttingDown(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), ErrShutdown)
}

// wsStream is a WebSocket's account: what closed it first.
type wsStream struct {
	*stream
	mu     sync.Mutex
	conn   io.Closer // once accepted
	first  streamEnd // the first close seen; by "" until then
	slow   bool      // a write timed out
	closed bool
}

func (m *Metrics) newWSStream(r *http.Request) *wsStream {
	s := m.newStream(transportWebSocket, r)
	if s == nil {
		return nil
	}
	return &wsStream{stream: s}
}

// accepted opens the account of the accepted conn.
func (s *wsStream) accepted(conn interface {
	io.Closer
	Subprotocol() string
}) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	s.open(false, func(e *zerolog.Event) { e.Str("subprotocol", conn.Subprotocol()) })
}

func (s *wsStream) note(e streamEnd) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first.by == "" {
		s.first = e
	}
}

// readFailed notes why reading ended: the client's close frame, or the
// connection lost. A read of a connection the server closed notes nothing.
func (s *wsStream) readFailed(err error) {
	if s == nil || errors.Is(err, net.ErrClosed) {
		return
	}
	switch code := coderws.CloseStatus(err); {
	case errors.Is(err, transport.ErrWebsocketClosed):
		s.note(streamEnd{by: "client", code: int(coderws.StatusNormalClosure), reason: "client closed"})
	case code != -1:
		s.note(streamEnd{by: "client", code: int(code), reason: "client closed"})
	default:
		s.note(streamEnd{by: "client", code: int(coderws.StatusAbnormalClosure), reason: "connection lost"})
	}
}

// writeFailed notes a failed write: one that timed out drops a slow client.
func (s *wsStream) writeFailed(err error) {
	if s == nil || !isTimeout(err) {
		return
	}
	s.mu.Lock()
	s.slow = true
	s.mu.Unlock()
	s.note(streamEnd{by: "server", code: int(coderws.StatusAbnormalClosure), reason: "slow client: write timed out"})
}

// closing notes the server's close frame.
func (s *wsStream) closing(code int, reason string) {
	if s == nil {
		return
	}
	s.note(streamEnd{by: "server", code: code, reason: reason})
}

// done ends the account once the connection is closed.
func (s *wsStream) done() {
	if s == nil {
		return
	}
	s.mu.Lock()
	e, slow := s.first, s.slow
	s.closed = true
	s.mu.Unlock()
	switch {
	case slow:
		e.drop = dropSlowClient
	case e.by == "server" && e.code == access.CloseTokenExpired:
		e.drop = dropExpired
	case e.by == "server" && e.code == CloseServiceRestart:
		e.drop = dropShutdown
	}
	s.end(e)
}

// graphqlSSE accounts graphql-sse streams (POST with Accept:
// text/event-stream) from their first 2xx write, so that refusals are not
// counted as streams.
func (m *Metrics) graphqlSSE(next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
			next.ServeHTTP(w, r)
			return
		}
		st := m.newStream(transportGraphQLSSE, r)
		sw := &streamWriter{ResponseWriter: w, st: st}
		ctx := r.Context()
		next.ServeHTTP(sw, r.WithContext(withStream(ctx, st)))
		e := streamEnd{by: "client", reason: "client gone"}
		switch {
		case sw.slow.Load():
			e = streamEnd{drop: dropSlowClient, by: "server", reason: "slow client: write timed out"}
		case access.TokenExpired(ctx):
			e = streamEnd{drop: dropExpired, by: "server", reason: "token expired"}
		case shuttingDown(ctx):
			e = streamEnd{drop: dropShutdown, by: "server", reason: "server shutting down"}
		case ctx.Err() == nil:
			e = streamEnd{by: "server", reason: "operation complete"}
		}
		st.end(e)
	})
}

// streamWriter opens its stream on the first successful write, and notes
// writes and flushes that time out.
type streamWriter struct {
	http.ResponseWriter
	st      *stream
	written bool
	slow    atomic.Bool
}

func (w *streamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *streamWriter) WriteHeader(status int) {
	if !w.written {
		w.written = true
		if status >= 200 && status < 300 {
			w.st.open(false, nil)
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *streamWriter) Write(p []byte) (int, error) {
	if !w.written {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	if err != nil && isTimeout(err) {
		w.slow.Store(true)
	}
	return n, err
}

func (w *streamWriter) FlushError() error {
	err := http.NewResponseController(w.ResponseWriter).Flush()
	if err != nil && isTimeout(err) {
		w.slow.Store(true)
	}
	return err
}

// sendAliases adds to sends the response keys of the send and broadcast
// fields of set. It ignores @skip and @include: an operation refused before
// it ran may have variables that do not fit them (graphql.CollectFields
// panics then).
func sendAliases(set ast.SelectionSet, sends map[string]bool, depth int) map[string]bool {
	if depth > 3 {
		return sends
	}
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name == "send" || s.Name == "broadcast" {
				if sends == nil {
					sends = make(map[string]bool)
				}
				sends[s.Alias] = true
			}
		case *ast.InlineFragment:
			sends = sendAliases(s.SelectionSet, sends, depth+1)
		case *ast.FragmentSpread:
			if s.Definition != nil {
				sends = sendAliases(s.Definition.SelectionSet, sends, depth+1)
			}
		}
	}
	return sends
}

// gqlMetrics is the GraphQL side of the metrics: subscription operations
// running, messages a feed writes (WebSocket, graphql-sse) and the errors
// of send and broadcast.
type gqlMetrics struct{ m *Metrics }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
	graphql.FieldInterceptor
	graphql.ResponseInterceptor
} = gqlMetrics{}

func (x gqlMetrics) ExtensionName() string                          { return "PushgateMetrics" }
func (x gqlMetrics) Validate(schema graphql.ExecutableSchema) error { return nil }

// feedTap sees each event of a feed as it is written. gqlgen takes one
// event from the resolver's channel per response; InterceptField hands
// gqlgen a channel of its own instead, which InterceptResponse fills with
// the resolver's next event right before gqlgen reads it, on the same
// goroutine: no goroutine nor extra wake-up per event.
type feedTap struct {
	in     <-chan model.FeedEvent // the resolver's
	out    chan model.FeedEvent   // gqlgen's, capacity 1
	closed bool
}

type feedTapKey struct{}

func (x gqlMetrics) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	if oc.Operation == nil || oc.Operation.Operation != ast.Subscription {
		return next(ctx)
	}
	if st := streamOf(ctx); st != nil {
		g := x.m.subscriptions[st.transport]
		g.Inc()
		context.AfterFunc(ctx, g.Dec) // when the operation ends
	}
	return next(context.WithValue(ctx, feedTapKey{}, &feedTap{}))
}

func (x gqlMetrics) InterceptField(ctx context.Context, next graphql.Resolver) (any, error) {
	res, err := next(ctx)
	in, ok := res.(<-chan model.FeedEvent)
	if !ok || err != nil {
		return res, err
	}
	tap, _ := ctx.Value(feedTapKey{}).(*feedTap)
	if tap == nil || tap.in != nil {
		return res, err
	}
	tap.in, tap.out = in, make(chan model.FeedEvent, 1)
	return (<-chan model.FeedEvent)(tap.out), nil
}

func (x gqlMetrics) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	if !graphql.HasOperationContext(ctx) {
		return next(ctx)
	}
	oc := graphql.GetOperationContext(ctx)
	if oc.Operation == nil {
		return next(ctx)
	}
	switch oc.Operation.Operation {
	case ast.Subscription:
		return x.feedResponse(ctx, next)
	case ast.Mutation:
		resp := next(ctx)
		x.countSendErrors(oc, resp)
		return resp
	}
	return next(ctx)
}

// feedResponse passes the feed's next event to gqlgen and counts it
// delivered once gqlgen made it a response, which the transport writes.
func (x gqlMetrics) feedResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	tap, _ := ctx.Value(feedTapKey{}).(*feedTap)
	if tap == nil || tap.in == nil || tap.closed || len(tap.out) > 0 {
		return next(ctx)
	}
	var created time.Time
	select {
	case ev, ok := <-tap.in:
		if !ok {
			tap.closed = true
			close(tap.out)
			break
		}
		tap.out <- ev
		switch msg := ev.(type) {
		case *model.Message:
			created = msg.CreatedAt
		case model.Message:
			created = msg.CreatedAt
		}
	case <-ctx.Done():
	}
	resp := next(ctx)
	if resp != nil && !created.IsZero() {
		streamOf(ctx).deliver(time.Now(), created)
	}
	return resp
}

// countSendErrors counts the errors of resp that belong to a send or a
// broadcast: every error of an operation with one that was refused before
// it ran (it has no data), else those on the paths of those fields.
func (x gqlMetrics) countSendErrors(oc *graphql.OperationContext, resp *graphql.Response) {
	if resp == nil || len(resp.Errors) == 0 {
		return
	}
	sends := sendAliases(oc.Operation.SelectionSet, nil, 0)
	if sends == nil {
		return
	}
	refused := resp.Data == nil
	for _, e := range resp.Errors {
		if !refused {
			if len(e.Path) == 0 {
				continue
			}
			if alias, ok := e.Path[0].(ast.PathName); !ok || !sends[string(alias)] {
				continue
			}
		}
		code, _ := e.Extensions["code"].(string)
		x.countSendError(code)
	}
}

// countSendError counts one error of a send or broadcast by its code.
func (x gqlMetrics) countSendError(code string) {
	x.m.sendErrors.WithLabelValues(labelValue(code)).Inc()
}
