package server

import (
	"context"
	"errors"
	"net"
	"net/http"

	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/rs/zerolog"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/pubsub"
)

// graphqlHandler serves the GraphQL API on every transport.
// lim enforces the operation and WebSocket limits (limits.go).
func graphqlHandler(cfg Config, broker pubsub.Broker, auth *Auth, lim *limits, pres *presence) http.Handler {
	// Sends are counted as they reach the broker (metrics.go).
	resolver := graph.NewResolver(cfg.Metrics.countSends(broker), auth, graph.Options{
		MaxMessageSize:   cfg.MaxMessageSize,
		MaxMessageSizeOf: func(ch string) int { return cfg.Namespaces.Of(ch).MaxMessageSize },
		Joined:           pres.join,
		Presence:         pres.get,
	})
	srv := handler.New(graph.NewExecutableSchema(graph.Config{Resolvers: resolver}))

	// The first transport that supports a request serves it: WebSocket
	// (any Upgrade), then graphql-sse (POST + Accept: text/event-stream),
	// then plain HTTP.
	// Each connection lasts no longer than its token (expiry.go).
	srv.AddTransport(expiringWebsocket{auth: auth, metrics: cfg.Metrics, Websocket: transport.Websocket{
		// Both graphql-transport-ws and the legacy graphql-ws; the chosen
		// subprotocol is echoed, as wx.connectSocket requires. Origins are
		// checked before the upgrade (origin.go); coder/websocket's own
		// check is told the same allow-list.
		Implementation: transport.CoderWebsocketImplementation{AcceptOptions: newOrigins(cfg.AllowedOrigins).acceptOptions()},
		InitFunc: func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			// Credentials are checked per operation, so that failures carry
			// extensions.code like on every other transport.
			if cred := initCredential(p); cred != "" {
				ctx = withCredential(ctx, cred)
			}
			// The connection counts for its token's subject from here on.
			if err := lim.websocketInit(ctx); err != nil {
				ctx = transport.AppendCloseReason(ctx, err.Error())
				return transport.WithWebsocketCloseCode(ctx, closeTooManyConnections), nil, err
			}
			return ctx, nil, nil
		},
		// A message as large as a request body; a larger one closes the
		// connection with 1009.
		PayloadReadLimit:      &cfg.MaxBodyBytes,
		InitTimeout:           cfg.InitTimeout,
		KeepAlivePingInterval: cfg.PingInterval, // graphql-ws "ka"
		PingPongInterval:      cfg.PingInterval, // graphql-transport-ws ping, pong expected
		ErrorFunc: func(ctx context.Context, err error) {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			zerolog.Ctx(ctx).Debug().Err(err).Msg("websocket")
		},
	}})
	srv.AddTransport(transport.SSE{KeepAlivePingInterval: cfg.PingInterval})
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})

	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	if !lim.DisableIntrospection {
		srv.Use(extension.Introspection{})
	}
	srv.Use(extension.AutomaticPersistedQuery{Cache: lru.New[string](100)})
	srv.Use(gqlMetrics{cfg.Metrics})
	srv.Use(newOperationLimits(lim)) // last: see operationLimits
	srv.SetErrorPresenter(graph.ErrorPresenter)
	srv.SetRecoverFunc(graph.Recover)

	// graphql-sse streams are accounted once admitted (metrics.go).
	return cfg.Metrics.graphqlSSE(lim.graphql(streamWriteTimeout(cfg.WriteTimeout, srv)))
}
