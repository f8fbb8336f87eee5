package server

import (
	"fmt"
	"net/http"
	"time"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"

	"github.com/pushgate/pushgate/graph"
)

// withLogger gives every request a logger with its request id, also sent
// back as X-Request-Id.
func withLogger(log zerolog.Logger, next http.Handler) http.Handler {
	return hlog.NewHandler(log)(hlog.RequestIDHandler("req_id", "X-Request-Id")(next))
}

// accessLog logs one line per request when it ends (for a WebSocket, when
// the connection closes). It logs the path without the query, which may
// carry a token.
func accessLog(next http.Handler) http.Handler {
	return hlog.AccessHandler(func(r *http.Request, status, size int, d time.Duration) {
		hlog.FromRequest(r).Info().
			Str("method", r.Method).
			Str("path", r.URL.Path).
			Int("status", status).
			Int("size", size).
			Dur("duration", d).
			Msg("request")
	})(next)
}

// limitBody refuses bodies over limit: at once when Content-Length says
// so, else when reading passes it.
func limitBody(limit int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			writeError(w, http.StatusRequestEntityTooLarge, graph.CodePayloadTooLarge,
				fmt.Sprintf("the request body of %d bytes is over the limit of %d bytes", r.ContentLength, limit))
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		next.ServeHTTP(w, r)
	})
}

// credentials puts the request's credential in its context: the bearer of
// Authorization, else the token query parameter (for clients that cannot
// set headers). A WebSocket connection_init payload may replace it.
func credentials(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred := bearer(r.Header.Get("Authorization"))
		if cred == "" {
			cred = r.URL.Query().Get("token")
		}
		if cred != "" {
			r = r.WithContext(withCredential(r.Context(), cred))
		}
		next.ServeHTTP(w, r)
	})
}
