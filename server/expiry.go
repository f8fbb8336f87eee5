package server

import (
	"context"
	"io"
	"net/http"
	"strings"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
)

// A stream opened with a subscriber token lasts no longer than the token:
// when the verifier stops accepting it (exp plus the leeway), the client is
// told, with what it needs to resume, and the stream ends.
//
//   - WebSocket: the connection is closed with access.CloseTokenExpired ("token
//     expired"); its subscriptions end without complete. graphql-ws clients
//     retry on that code and call connectionParams again, so they come
//     back with a fresh token.
//   - SSE (GET /events): the last block is "event: expired" with data
//     {"reason":"token expired","cursor":"<cursor>"}; the client reconnects
//     with a fresh token and that cursor.
//   - graphql-sse: the operation gets a last result whose error has code
//     UNAUTHENTICATED, then completes.
//   - Long-poll: a poll is short; one whose token expires during its hold
//     answers normally, and the next poll needs a fresh token.
//
// API keys do not expire, so their streams are not bounded
// (access.Auth.UntilTokenExpires).

// appendExpiredEvent appends the SSE block that ends a stream whose token
// expired.
func appendExpiredEvent(b []byte, cursor pubsub.Cursor) []byte {
	b = append(b, "event: expired\ndata: {\"reason\":\"token expired\",\"cursor\":\""...)
	b, _ = cursor.AppendText(b)
	return append(b, "\"}\n\n"...)
}

// expireGraphQLSSE bounds graphql-sse streams (POST with Accept:
// text/event-stream) by their token: when it expires, the operation ends
// with a last result carrying an UNAUTHENTICATED error, then completes.
func expireGraphQLSSE(auth *access.Auth, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := auth.UntilTokenExpires(r.Context())
		defer cancel()
		next.ServeHTTP(&expiringSSEWriter{ResponseWriter: w, ctx: ctx}, r.WithContext(ctx))
	})
}

// graphqlSSEExpired is the result sent before complete when the token
// expired.
const graphqlSSEExpired = "event: next\ndata: " +
	`{"errors":[{"message":"the token has expired","extensions":{"code":"UNAUTHENTICATED"}}]}` + "\n\n"

// expiringSSEWriter inserts graphqlSSEExpired before gqlgen's complete
// event when the stream ended because its token expired.
type expiringSSEWriter struct {
	http.ResponseWriter
	ctx context.Context
}

func (w *expiringSSEWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *expiringSSEWriter) Write(p []byte) (int, error) {
	if string(p) == "event: complete\n\n" && access.TokenExpired(w.ctx) {
		if _, err := io.WriteString(w.ResponseWriter, graphqlSSEExpired); err != nil {
			return 0, err
		}
	}
	return w.ResponseWriter.Write(p)
}
