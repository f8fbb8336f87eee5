package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
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

// limitBody refuses bodies over limit with 413: at once when
// Content-Length says so; a body of unknown length (chunked) is read here
// first, as gqlgen would answer a failed read with 200.
func limitBody(limit int64, next http.Handler) http.Handler {
	tooLarge := func(w http.ResponseWriter, size string) {
		writeError(w, http.StatusRequestEntityTooLarge, graph.CodePayloadTooLarge,
			fmt.Sprintf("the request body of %s bytes is over the limit of %d bytes", size, limit))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			tooLarge(w, strconv.FormatInt(r.ContentLength, 10))
			return
		}
		if r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		if r.ContentLength < 0 {
			body, err := io.ReadAll(r.Body)
			if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
				tooLarge(w, "more than "+strconv.FormatInt(limit, 10))
				return
			}
			if err != nil {
				writeError(w, http.StatusBadRequest, graph.CodeBadUserInput, "the request body could not be read")
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
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

// drainable keeps a request that is not a stream running when the base
// context is cancelled at shutdown, so http.Server.Shutdown drains it within
// the grace period (gqlgen answers a request whose context is done with a
// bare null). Streams (WebSocket, SSE, graphql-sse, long-poll) keep the base
// context: its cancellation with ErrShutdown is what ends them.
func drainable(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isStream(r) {
			r = r.WithContext(context.WithoutCancel(r.Context()))
		}
		next.ServeHTTP(w, r)
	})
}

func isStream(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" || r.URL.Path == "/events" || r.URL.Path == "/poll" ||
		strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}
