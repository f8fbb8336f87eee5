package server

import (
	"net/http"

	"github.com/pushgate/pushgate/pubsub"
)

// addRoutes lists every route of the server.
func addRoutes(mux *http.ServeMux, cfg Config, broker pubsub.Broker, auth *Auth) {
	gql := graphqlHandler(cfg, broker, auth)
	// Queries and mutations (POST, GET for queries), subscriptions over
	// WebSocket (GET + Upgrade) and graphql-sse (POST + Accept:
	// text/event-stream).
	mux.Handle("/graphql", allowMethods(gql, http.MethodGet, http.MethodPost, http.MethodOptions))

	// Fallbacks for clients that cannot hold a WebSocket: the SSE feed
	// (EventSource, chunked wx.request) and long-polling (wx.request).
	mux.Handle("GET /events", handleEvents(broker, auth, sseOptions{
		heartbeat: cfg.Heartbeat, writeTimeout: cfg.WriteTimeout, retry: cfg.SSERetry, origins: cfg.AllowedOrigins,
	}))
	mux.Handle("GET /poll", handlePoll(broker, auth, cfg.AllowedOrigins))

	mux.Handle("GET /healthz", healthz())
	mux.Handle("GET /readyz", readyz(broker))
	mux.Handle("/", notFound())
}
