// Package server is pushgate's HTTP surface: GraphQL over HTTP, WebSocket
// and SSE, health and readiness, access rules, logs and limits. New builds
// it; routes.go lists every route.
package server

import (
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/pubsub"
)

// Config is the server's configuration. The zero value of each field means
// its default.
type Config struct {
	// APIKeys may send, and read every channel.
	APIKeys []APIKey
	// JWTSecret verifies subscriber tokens (HS256); empty: tokens are
	// rejected.
	JWTSecret string
	// AllowAnonymous lets requests without credentials read every channel
	// but user:* ones (development).
	AllowAnonymous bool
	// MaxMessageSize bounds a message's data in bytes (default 64 KiB).
	MaxMessageSize int
	// MaxBodyBytes bounds a request body (default 1 MiB, and at least
	// MaxMessageSize plus 64 KiB).
	MaxBodyBytes int64
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
	// AllowedOrigins are the browser origins allowed to read SSE and
	// long-poll cross-origin ("*": any). Requests without Origin
	// (mini-programs) need none.
	AllowedOrigins []string
}

func (c Config) withDefaults() Config {
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = graph.DefaultMaxMessageSize
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	c.MaxBodyBytes = max(c.MaxBodyBytes, int64(c.MaxMessageSize)+64<<10)
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

// New returns pushgate's HTTP handler over broker. Streams (WebSocket, SSE)
// end when the request's base context is cancelled: the caller's
// http.Server cancels it on shutdown.
func New(cfg Config, broker pubsub.Broker, log zerolog.Logger) http.Handler {
	cfg = cfg.withDefaults()
	auth := NewAuth(cfg.APIKeys, cfg.JWTSecret, cfg.AllowAnonymous)
	mux := http.NewServeMux()
	addRoutes(mux, cfg, broker, auth)
	var h http.Handler = mux
	h = credentials(h)
	h = limitBody(cfg.MaxBodyBytes, h)
	h = accessLog(h)
	return withLogger(log, h)
}
