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
func graphqlHandler(cfg Config, broker pubsub.Broker, auth *Auth) http.Handler {
	resolver := graph.NewResolver(broker, auth, graph.Options{MaxMessageSize: cfg.MaxMessageSize})
	srv := handler.New(graph.NewExecutableSchema(graph.Config{Resolvers: resolver}))

	// The first transport that supports a request serves it: WebSocket
	// (any Upgrade), then graphql-sse (POST + Accept: text/event-stream),
	// then plain HTTP.
	srv.AddTransport(transport.Websocket{
		// Both graphql-transport-ws and the legacy graphql-ws; the chosen
		// subprotocol is echoed, as wx.connectSocket requires. The default
		// coder/websocket origin check accepts requests without Origin
		// (mini-programs, native apps) and same-origin ones.
		Implementation: transport.CoderWebsocketImplementation{},
		InitFunc: func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			// Credentials are checked per operation, so that failures carry
			// extensions.code like on every other transport.
			if cred := initCredential(p); cred != "" {
				ctx = withCredential(ctx, cred)
			}
			return ctx, nil, nil
		},
		InitTimeout:           cfg.InitTimeout,
		KeepAlivePingInterval: cfg.PingInterval, // graphql-ws "ka"
		PingPongInterval:      cfg.PingInterval, // graphql-transport-ws ping, pong expected
		ErrorFunc: func(ctx context.Context, err error) {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			zerolog.Ctx(ctx).Debug().Err(err).Msg("websocket")
		},
	})
	srv.AddTransport(transport.SSE{KeepAlivePingInterval: cfg.PingInterval})
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})

	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	srv.Use(extension.Introspection{})
	srv.Use(extension.AutomaticPersistedQuery{Cache: lru.New[string](100)})
	srv.SetErrorPresenter(graph.ErrorPresenter)
	srv.SetRecoverFunc(graph.Recover)

	return streamWriteTimeout(cfg.WriteTimeout, srv)
}
