package server

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/pubsub"
)

// healthz answers while the process serves HTTP.
func healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok")
	})
}

// readyz answers 200 while the store is reachable, else 503.
func readyz(broker pubsub.Broker) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := broker.Ready(ctx); err != nil {
			writeError(w, http.StatusServiceUnavailable, graph.CodeUnavailable, "the message store is not reachable: "+err.Error())
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok")
	})
}
