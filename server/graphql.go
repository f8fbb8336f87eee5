package server

import (
	"net/http"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/limits"
)

// graphqlHandler serves the GraphQL API on every transport.
// lim enforces the operation and WebSocket limits (package limits).
func graphqlHandler(cfg Config, broker pubsub.Broker, auth *access.Auth, lim *limits.Limiter, pres *presence, dl streaming) http.Handler {
	// Sends are counted as they reach the broker (observe.Metrics.CountSends).
	opts := graph.Options{
		MaxMessageSize:   cfg.MaxMessageSize,
		MaxMessageSizeOf: func(ch string) int { return cfg.Namespaces.Of(ch).MaxMessageSize },
		Joined:           pres.join,
		Presence:         pres.get,
	}
	if cfg.WeChat != nil {
		opts.WeChat = cfg.WeChat.svc
		opts.WeChatAccess = wechatAccess{auth: auth, lim: lim}
	}
	resolver := graph.NewResolver(cfg.Metrics.CountSends(broker), auth, opts)
	// The fast path's plans, shared by WebSocket and graphql-sse feeds.
	plans := newFeedPlans()
	srv := handler.New(graph.NewExecutableSchema(graph.Config{Resolvers: resolver}))

	// The first transport that supports a request serves it: WebSocket
	// (any Upgrade), then graphql-sse (POST + Accept: text/event-stream),
	// then plain HTTP.
	srv.AddTransport(&wsTransport{
		resolver: resolver,
		auth:     auth,
		lim:      lim,
		metrics:  cfg.Metrics,
		// Origins are checked before the upgrade (access.Origins.Guard); coder/websocket's
		// own check is told the same allow-list.
		accept: access.NewOrigins(cfg.AllowedOrigins).AcceptOptions(),
		// A message as large as a request body; a larger one closes the
		// connection with 1009.
		readLimit:    cfg.MaxBodyBytes,
		initTimeout:  cfg.InitTimeout,
		pingInterval: cfg.PingInterval,
		writeTimeout: cfg.WriteTimeout,
		plans:        plans,
		writers:      dl.writers,
		streams:      cfg.Streams,
		stopping:     dl.stopping,
	})
	docs := lru.New[*ast.QueryDocument](1000)
	srv.AddTransport(graphqlSSE{auth: auth, metrics: cfg.Metrics, resolver: resolver, plans: plans,
		writers: dl.writers, stopping: dl.stopping, streams: cfg.Streams,
		heartbeat: cfg.PingInterval, writeTimeout: cfg.WriteTimeout})
	srv.AddTransport(transport.Options{})
	// GET, but for mutations (graphql_http.go).
	srv.AddTransport(getTransport{docs: docs})
	// POST, with the fast path of send (sendfast.go), and every body
	// checked to be one JSON object (graphql_http.go).
	srv.AddTransport(&sendTransport{resolver: resolver, lim: lim, metrics: gqlMetrics{cfg.Metrics}})
	// A POST of another content type.
	srv.AddTransport(jsonRequired{})

	srv.SetQueryCache(docs)
	if !lim.DisableIntrospection {
		srv.Use(extension.Introspection{})
	}
	srv.Use(extension.AutomaticPersistedQuery{Cache: lru.New[string](100)})
	srv.Use(gqlMetrics{cfg.Metrics})
	srv.Use(graph.ResponseLimit{Max: cfg.MaxResponseBytes})
	// A mutation's sends are checked as one before any runs (graph/mutation.go).
	srv.Use(graph.NewMutationCheck(resolver))
	srv.Use(limits.NewOperations(lim)) // last: see limits.Operations
	srv.SetErrorPresenter(graph.ErrorPresenter)
	srv.SetRecoverFunc(graph.Recover)

	return lim.GraphQL(srv)
}
