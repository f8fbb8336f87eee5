package server

import (
	"net/http"

	"github.com/pushgate/pushgate/console"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/delivery"
	"github.com/pushgate/pushgate/server/limits"
	"github.com/pushgate/pushgate/server/observe"
)

// addRoutes lists every route of the server.
//
// Browser origins are checked on the routes browsers use (access.Origins), and
// streaming connections are admitted by the limits (package limits): WebSocket
// and graphql-sse inside the GraphQL handler, SSE and long-poll here.
func addRoutes(mux *http.ServeMux, cfg Config, broker pubsub.Broker, auth *access.Auth, pres *presence) {
	lim := limits.New(cfg.Limits, cfg.TrustedProxies, limitHooks(cfg.Metrics, auth))
	if cfg.WeChat != nil {
		lim.LimitWechatLogins()
	}
	org := access.NewOrigins(cfg.AllowedOrigins)
	// One pool of writers and one shutdown hook for every stream of the
	// server, whatever its transport.
	dl := streaming{writers: delivery.NewWriters(), stopping: new(delivery.Shutdowns)}
	gql := graphqlHandler(cfg, broker, auth, lim, pres, dl)
	// Queries and mutations (POST, GET for queries), subscriptions over
	// WebSocket (GET + Upgrade) and graphql-sse (POST + Accept:
	// text/event-stream); streams end when their token expires (expiry.go).
	mux.Handle("/graphql", org.Guard("GET, POST",
		allowMethods(gql, http.MethodGet, http.MethodPost, http.MethodOptions)))

	// Fallbacks for clients that cannot hold a WebSocket: the SSE feed
	// (EventSource, chunked wx.request) and long-polling (wx.request).
	mux.Handle("GET /events", org.Guard("GET", lim.Streams(handleEvents(broker, auth, sseOptions{
		heartbeat: cfg.Heartbeat, writeTimeout: cfg.WriteTimeout, retry: cfg.SSERetry, presence: pres,
		metrics: cfg.Metrics, streams: cfg.Streams, writers: dl.writers, stopping: dl.stopping,
	}))))
	mux.Handle("GET /poll", org.Guard("GET", lim.Polls(handlePoll(broker, auth, cfg.Metrics, cfg.MaxResponseBytes))))
	// A HEAD has no body to stream: it gets the status and headers its GET
	// would start with, and opens nothing (methods.go).
	mux.Handle("HEAD /events", org.Guard("GET", lim.Channels(headRead(auth, parseEventsRequest, sseHeaders))))
	mux.Handle("HEAD /poll", org.Guard("GET", lim.Channels(headRead(auth, parsePollRequest, pollHeaders))))
	mux.Handle("OPTIONS /events", org.Guard("GET", nil)) // CORS preflights
	mux.Handle("OPTIONS /poll", org.Guard("GET", nil))

	mux.Handle("GET /healthz", healthz())
	mux.Handle("GET /readyz", readyz(broker))
	// Prometheus (package observe), behind Config.MetricsToken when set; the
	// profiler only when Config.Pprof, for API keys.
	mux.Handle("GET /metrics", cfg.Metrics.Handler(cfg.MetricsToken, func(r *http.Request) string { return access.Bearer(r.Header.Get("Authorization")) }))
	// The other methods of these paths: 405 with Allow, not the 404 of "/".
	for path, allow := range map[string][]string{
		"/events": {"GET", "HEAD", "OPTIONS"}, "/poll": {"GET", "HEAD", "OPTIONS"},
		"/healthz": {"GET", "HEAD"}, "/readyz": {"GET", "HEAD"}, "/metrics": {"GET", "HEAD"},
	} {
		mux.Handle(path, methodNotAllowed(allow...))
	}
	// WeChat's message push (消息推送), the URL entered in the
	// mini-program's console; only with WeChat apps (docs/wechat.md).
	if cfg.WeChat != nil {
		mux.Handle("/wechat/events/{appId}", cfg.WeChat.svc.EventsHandler())
	}
	if cfg.Pprof {
		// The header only: a ?token= could be an API key logged by proxies.
		// Only a key allowed every channel: profiles show the process's
		// memory and goroutines, all of its channels' data included.
		mux.Handle("/debug/pprof/", observe.PprofHandler(func(r *http.Request) bool {
			k, ok := auth.Key(access.Bearer(r.Header.Get("Authorization")))
			return ok && k.EveryChannel()
		}, notFound()))
	}
	if cfg.Console { // the page and its files; it uses the routes above
		mux.Handle(console.Path, console.Handler())
		mux.Handle(console.Path+"/", console.Handler())
	}
	mux.Handle("/", notFound())
}

// streaming is what the streams of a server share: the writers that write
// every stream (delivery.Writers, sized for the whole process), and the
// hook that ends them when the server shuts down.
type streaming struct {
	writers  *delivery.Writers
	stopping *delivery.Shutdowns
}
