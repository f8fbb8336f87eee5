package server

import (
	"context"
	"errors"
	"time"

	"github.com/pushgate/pushgate/pubsub"
)

// A stream opened with a subscriber token lasts no longer than the token:
// when the verifier stops accepting it (exp plus the leeway), the client is
// told, with what it needs to resume, and the stream ends.
//
//   - WebSocket: the connection is closed with CloseTokenExpired ("token
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
// API keys do not expire, so their streams are not bounded.

// CloseTokenExpired is the WebSocket close code of a connection whose token
// expired (reason "token expired"). In the 4400-4499 range graphql-ws uses
// for client errors it is Forbidden, which graphql-ws clients retry.
const CloseTokenExpired = 4403

// errStreamTokenExpired is the cause of a stream context that ended because
// its token expired.
var errStreamTokenExpired = errors.New("token expired")

// tokenValidUntil returns the last instant the token credential of ctx is
// accepted. ok is false when there is no credential, when it is an API key
// (which never expires), and when it is a token that is refused anyway (the
// operations will say why).
func (a *Auth) tokenValidUntil(ctx context.Context) (until time.Time, ok bool) {
	cred := credential(ctx)
	if cred == "" {
		return time.Time{}, false
	}
	if _, isKey := a.key(cred); isKey {
		return time.Time{}, false
	}
	claims, err := a.tokens.Verify(ctx, cred)
	if err != nil || claims.ExpiresAt == nil {
		return time.Time{}, false
	}
	if v, ok := a.tokens.(interface{ validUntil(*Claims) time.Time }); ok {
		return v.validUntil(claims), true
	}
	return claims.ExpiresAt.Time, true
}

// untilTokenExpires returns ctx bounded by the life of its token: it ends,
// with tokenExpired true, when the token expires.
func (a *Auth) untilTokenExpires(ctx context.Context) (context.Context, context.CancelFunc) {
	until, ok := a.tokenValidUntil(ctx)
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadlineCause(ctx, until, errStreamTokenExpired)
}

// tokenExpired reports whether ctx (from untilTokenExpires) ended because
// its token expired.
func tokenExpired(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), errStreamTokenExpired)
}

// appendExpiredEvent appends the SSE block that ends a stream whose token
// expired.
func appendExpiredEvent(b []byte, cursor pubsub.Cursor) []byte {
	b = append(b, "event: expired\ndata: {\"reason\":\"token expired\",\"cursor\":\""...)
	b, _ = cursor.AppendText(b)
	return append(b, "\"}\n\n"...)
}

// graphqlSSEExpired is the result sent before complete when the token
// expired.
const graphqlSSEExpired = "event: next\ndata: " +
	`{"errors":[{"message":"the token has expired","extensions":{"code":"UNAUTHENTICATED"}}]}` + "\n\n"
