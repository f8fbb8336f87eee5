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

	"github.com/rs/xid"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"

	"github.com/pushgate/pushgate/graph"
)

// requestContext gives every request, in one copy of the request, the
// context that the layers below read: a logger with the request's id (also
// sent back as X-Request-Id), its credential (requestCredential), and, unless it
// is a stream, no cancellation at shutdown (drainable).
func requestContext(log zerolog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		id := xid.New()
		sid := id.String()
		l := log.With().Str("req_id", sid).Logger()
		ctx = hlog.CtxWithID(l.WithContext(ctx), id)
		w.Header().Set("X-Request-Id", sid)
		if !isStream(r) {
			ctx = drainable(ctx)
		}
		if cred := requestCredential(r); cred != "" {
			ctx = withCredential(ctx, cred)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
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

// requestCredential is the request's credential: the bearer of Authorization,
// else the token query parameter (for clients that cannot set headers). A
// WebSocket connection_init payload may replace it.
func requestCredential(r *http.Request) string {
	if cred := bearer(r.Header.Get("Authorization")); cred != "" {
		return cred
	}
	return r.URL.Query().Get("token")
}

// drainable keeps a request that is not a stream running when the base
// context is cancelled at shutdown, so http.Server.Shutdown drains it within
// the grace period (gqlgen answers a request whose context is done with a
// bare null). Streams (WebSocket, SSE, graphql-sse, long-poll) keep the base
// context: its cancellation with ErrShutdown is what ends them.
func drainable(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

func isStream(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" || r.URL.Path == "/events" || r.URL.Path == "/poll" ||
		strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}
