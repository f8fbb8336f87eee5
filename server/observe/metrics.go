// Package observe counts and logs what pushgate does: its Prometheus
// metrics (one registry per server, with the Go runtime and process
// collectors), the account and the open/close log lines of every stream,
// the classification of how a WebSocket connection ended, request counts
// by route, and the profiler's handler.
//
// It owns counting, never steering: nothing here decides whether a
// stream goes on, how it is written, or what a client is told. Callers
// say what happened (a stream opened, N messages written, a slow client
// dropped, a close frame sent with a code and a drop reason) and observe
// records it. The accounts (*Stream, *WSStream) and what a stream's code
// calls on *Metrics (NewStream, NewWSStream, Dropped, Subscribed,
// SendError, CountSends) are safe on nil and count nothing: metrics are
// optional to the code that counts.
//
// It is a leaf: it imports no pushgate server package, only pubsub (whose
// Observer it implements) and graph's error codes.
package observe

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/internal/httperr"
	"github.com/pushgate/pushgate/pubsub"
)

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

// Transport is a label value of the streaming transports.
// Transport is a streaming transport, a label value of the stream metrics.
type Transport uint8

const (
	WebSocket Transport = iota
	SSE
	Poll
	GraphQLSSE
	numTransports
)

var transportNames = [numTransports]string{"websocket", "sse", "poll", "graphql_sse"}

// Drop is why the server ended or refused a streaming connection or
// subscription (pushgate_dropped_total).
type Drop uint8

const (
	DropNone       Drop = iota
	DropSlowClient      // a write did not complete within the write timeout
	DropLimit           // refused by a connection or subscription limit
	DropExpired         // its token expired
	DropShutdown        // the node shut down
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
	for r := DropSlowClient; r < numDropReasons; r++ {
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

// Dropped counts a connection or subscription the server ended or refused.
func (m *Metrics) Dropped(r Drop) {
	if m != nil && r != DropNone {
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

// CountSends returns broker counting what its Publish appends, for the
// send and broadcast mutations (other publishers, such as presence events,
// use the broker itself).
func (m *Metrics) CountSends(b pubsub.Broker) pubsub.Broker {
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

// Handler serves the metrics; with a token, only to requests whose
// credential (Authorization: Bearer <token>, as credential reads it) is
// that token. Others get 401 UNAUTHENTICATED.
func (m *Metrics) Handler(token string, credential func(*http.Request) string) http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(credential(r)))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			httperr.Write(w, http.StatusUnauthorized, graph.CodeUnauthenticated, "the metrics token is missing or wrong")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// PprofHandler serves net/http/pprof under /debug/pprof/ to requests that
// allowed accepts; to others, and for /debug/pprof/cmdline (the command
// line holds the API keys and the JWT secret) to every request, it serves
// hidden (a 404: the profiler does not exist for them).
func PprofHandler(allowed func(*http.Request) bool, hidden http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // and the named profiles: heap, goroutine, ...
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/pprof/cmdline", hidden)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowed(r) {
			hidden.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// CountRequest counts a request that ended by the pattern of the route
// that served it (never its path: "" counts as "unmatched") and its status
// class, and times it unless it was a stream, whose duration is its life.
func (m *Metrics) CountRequest(route string, status int, d time.Duration, stream bool) {
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
	if !stream {
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

// SendError counts one error of a send or broadcast mutation by its
// GraphQL error code.
func (m *Metrics) SendError(code string) {
	if m != nil {
		m.sendErrors.WithLabelValues(labelValue(code)).Inc()
	}
}

// Subscribed counts one subscription of transport t running until the
// returned function is called (once).
func (m *Metrics) Subscribed(t Transport) (unsubscribed func()) {
	if m == nil {
		return func() {}
	}
	g := m.subscriptions[t]
	g.Inc()
	return g.Dec
}

// Registry is the registry of these metrics, for packages that register
// their own collectors in it (wechat.NewMetrics).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }
