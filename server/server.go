// Package server is pushgate's HTTP surface: GraphQL over HTTP, WebSocket
// and SSE, health and readiness, logs. New builds it; routes.go lists every
// route. Who may do what is package access's (keys, tokens, namespaces,
// origins), and what one client may take is package limits's: server wires
// them in (New, limitHooks) and keeps the per-request state they read and
// note through their hooks. The transports here own their handshakes and
// encoders; every stream is written by package delivery (the only one that
// touches a socket) and counted by package observe.
package server

import (
	"context"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/delivery"
	"github.com/pushgate/pushgate/server/limits"
)

// Config is the server's configuration. The zero value of each field means
// its default.
type Config struct {
	// APIKeys may send (each to the channels of its patterns), and read
	// every channel.
	APIKeys []access.APIKey
	// JWTSecret verifies subscriber tokens (HS256); empty: tokens are
	// rejected.
	JWTSecret string
	// Tokens configures subscriber token verification: JWKS for RS256 and
	// ES256, issuer, audience, leeway. Tokens.Secret defaults to
	// JWTSecret. New panics when Tokens.Validate fails: check it first.
	Tokens access.TokenConfig
	// AllowAnonymous lets requests without credentials read every channel
	// of the default namespace but user:* ones (development); it turns on
	// Namespaces.Default.AnonymousRead.
	AllowAnonymous bool
	// MaxMessageSize bounds a message's data in bytes (default 64 KiB): the
	// default namespace's bound unless Namespaces.Default sets one.
	MaxMessageSize int
	// Namespaces are the rules per namespace (the part of a channel name
	// before its first ':'): anonymous reading, token publishing, message
	// size. A named namespace without a message size takes the default
	// namespace's. Retention is the broker's (see Namespaces.Retention).
	Namespaces access.Namespaces
	// MaxBodyBytes bounds a request body (default 1 MiB, and at least the
	// largest namespace's MaxMessageSize plus 64 KiB).
	MaxBodyBytes int64
	// MaxResponseBytes bounds what one GraphQL operation's history pages
	// may put in its response, estimated as the pages are read, before
	// anything is rendered (RESPONSE_TOO_LARGE over it), and a long-poll
	// answer (which then holds fewer messages) (default 16 MiB, and at
	// least the largest namespace's MaxMessageSize plus 64 KiB).
	MaxResponseBytes int64
	// ReadTimeout bounds the read of a request's body, from the end of its
	// headers (default 30 s): a client that has not sent it all by then is
	// answered 408 and its connection closed. It ends with the body: a
	// stream's response (graphql-sse, SSE, WebSocket) is not bounded by
	// it.
	ReadTimeout time.Duration
	// WriteTimeout bounds every write to a streaming client (WebSocket,
	// SSE); a client that does not take a write within it is disconnected
	// and resumes from its cursor (default 10 s).
	WriteTimeout time.Duration
	// InitTimeout bounds the wait for a WebSocket connection_init (default
	// 10 s).
	InitTimeout time.Duration
	// PingInterval is how often idle WebSocket and graphql-sse streams are pinged
	// (default 20 s). A graphql-transport-ws client that does not answer a
	// ping within two intervals is disconnected.
	PingInterval time.Duration
	// Heartbeat is how often an idle SSE stream gets a comment line, so
	// proxies keep it open (default 15 s).
	Heartbeat time.Duration
	// SSERetry is the reconnection delay hinted to EventSource (default 2 s).
	SSERetry time.Duration
	// AllowedOrigins are the browser origins, besides the server's own,
	// that may use /graphql (HTTP and WebSocket), /events and /poll:
	// https://h5.example.com, a pattern https://*.example.com, or "*" for
	// any. Other origins are refused with 403. Requests without Origin
	// (mini-programs, apps, servers) need none.
	AllowedOrigins []string
	// TrustedProxies are the peers (reverse proxies, load balancers) whose
	// X-Forwarded-For names the client, for the per-IP limits. Without
	// them the client IP is the TCP peer's.
	TrustedProxies []netip.Prefix
	// Limits bound what one client may take (package limits, docs/limits.md).
	Limits limits.Limits
	// Presence opens the store of presence (who is subscribed, for
	// namespaces with presence on), calling onChange on joins and leaves;
	// nil: pubsub.NewMemoryPresence, right for one node. Several nodes on
	// Redis use pubsub.NewRedisPresence.
	Presence func(onChange pubsub.PresenceChange) pubsub.Presence
	// Metrics are where the server counts, served on GET /metrics; the
	// caller shares them with the broker (Metrics.Observer) and its Redis
	// client (Metrics.RedisHook). nil: New makes its own.
	Metrics *Metrics
	// MetricsToken, when set, is required as Authorization: Bearer on
	// /metrics (401 without it); empty: /metrics is open.
	MetricsToken string
	// Streams, when set, counts the open WebSocket and SSE connections,
	// so that a node shutting down can wait for them to close
	// (Streams.Wait).
	Streams *Streams
	// Pprof serves net/http/pprof under /debug/pprof/ to requests whose
	// Authorization bears an API key allowed every channel (no pattern, or
	// "*"): a profile shows the process's memory. Others, scoped keys
	// included, get 404, and so does everyone when false.
	// /debug/pprof/cmdline, which shows the flags (keys and secrets among
	// them), is never served.
	Pprof bool
	// WeChat, when set, is the WeChat side (NewWeChat): the wechatLogin,
	// ack, notify and notification fields, and WeChat's message push on
	// /wechat/events/{appId}. The caller starts and closes it. nil: none
	// of it (those fields answer UNAVAILABLE, a notify is refused).
	WeChat *WeChat
	// Console serves the console page (package console) on /console;
	// false: /console is 404.
	Console bool
}

func (c Config) withDefaults() Config {
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = graph.DefaultMaxMessageSize
	}
	c.Namespaces = c.Namespaces.WithDefaults(c.MaxMessageSize, c.AllowAnonymous)
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	c.MaxBodyBytes = max(c.MaxBodyBytes, int64(c.Namespaces.MaxMessageSize())+64<<10)
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = graph.DefaultMaxResponseBytes
	}
	c.MaxResponseBytes = max(c.MaxResponseBytes, int64(c.Namespaces.MaxMessageSize())+64<<10)
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.InitTimeout <= 0 {
		c.InitTimeout = 10 * time.Second
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.SSERetry <= 0 {
		c.SSERetry = 2 * time.Second
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 20 * time.Second
	}
	return c
}

// DefaultReadTimeout is Config.ReadTimeout's default.
const DefaultReadTimeout = 30 * time.Second

// ErrShutdown is the cause with which the caller cancels the server's base
// context when the node shuts down: WebSocket clients are then closed with
// CloseServiceRestart and reconnect (to another node) with their cursor;
// SSE streams end (EventSource reconnects by itself) and held polls answer
// with their cursor.
var ErrShutdown = delivery.ErrShutdown

// CloseServiceRestart is the WebSocket close code on shutdown (1012,
// "service restart"): clients reconnect at once.
const CloseServiceRestart = 1012

// New returns pushgate's HTTP handler over broker. WebSocket and SSE
// streams, which outlive their request's handler, end when the http.Server
// shuts down (Shutdown runs the hook they register); long-polls and
// graphql-sse streams when the request's base context is cancelled with
// ErrShutdown. The caller does both on shutdown (see Streams).
func New(cfg Config, broker pubsub.Broker, log zerolog.Logger) http.Handler {
	cfg = cfg.withDefaults()
	auth := access.NewAuth(cfg.APIKeys, cfg.JWTSecret, cfg.AllowAnonymous)
	auth.SetTokenVerifier(mustTokenVerifier(cfg.Tokens, cfg.JWTSecret))
	auth.SetNamespaces(cfg.Namespaces)
	auth.SetSigner(cfg.Tokens, cfg.JWTSecret)
	auth.SetCredentialSource(requestCredentialOf)
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.Streams == nil {
		cfg.Streams = new(Streams)
	}
	mux := http.NewServeMux()
	addRoutes(mux, cfg, broker, auth, newPresence(cfg, broker, auth, log))
	inFlight := limits.NewInFlight(cfg.Limits, cfg.TrustedProxies, limitHooks(cfg.Metrics, auth))
	return requestContext(log, cfg.Metrics, inFlight.Limit(limitBody(cfg.MaxBodyBytes, cfg.ReadTimeout, notePattern(mux))))
}

// mustTokenVerifier returns the verifier of tokens, whose secret defaults
// to jwtSecret. Like ServeMux.Handle with a bad pattern, it panics on a
// configuration error, which access.TokenConfig.Validate reports beforehand.
func mustTokenVerifier(tokens access.TokenConfig, jwtSecret string) access.TokenVerifier {
	if tokens.Secret == "" {
		tokens.Secret = jwtSecret
	}
	v, err := access.NewTokenVerifier(tokens)
	if err != nil {
		panic("server.New: Config.Tokens: " + err.Error())
	}
	return v
}

// Streams counts open streaming connections (WebSocket, SSE). They are
// hijacked from net/http, so http.Server.Shutdown does not wait for them:
// on shutdown the caller cancels the base context with ErrShutdown (which
// ends held polls), calls Shutdown (which ends WebSocket and SSE streams), then
// Wait, so that every client got its close frame or the end of its stream
// before the process exits.
type Streams struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to 0 (made by a Wait)
}

// open counts a stream until the returned function is called (once).
// Unlike a WaitGroup's Add, it may run while Wait does.
func (s *Streams) open() (closed func()) {
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.n--
			if s.n == 0 && s.zero != nil {
				close(s.zero)
				s.zero = nil
			}
			s.mu.Unlock()
		})
	}
}

// Wait returns once every stream has closed, or ctx's error when it ends
// first.
func (s *Streams) Wait(ctx context.Context) error {
	s.mu.Lock()
	if s.n == 0 {
		s.mu.Unlock()
		return nil
	}
	if s.zero == nil {
		s.zero = make(chan struct{})
	}
	done := s.zero
	s.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
