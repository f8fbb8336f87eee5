package access

import (
	"context"
	"errors"
	"time"
)

// A stream opened with a subscriber token lasts no longer than the token
// (server/expiry.go says what each transport tells its client). API keys
// do not expire, so their streams are not bounded.

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
	cred := a.Credential(ctx)
	if cred == "" {
		return time.Time{}, false
	}
	if _, isKey := a.Key(cred); isKey {
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

// UntilTokenExpires returns ctx bounded by the life of its token: it ends,
// with TokenExpired true, when the token expires (exp plus the leeway).
func (a *Auth) UntilTokenExpires(ctx context.Context) (context.Context, context.CancelFunc) {
	until, ok := a.tokenValidUntil(ctx)
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadlineCause(ctx, until, errStreamTokenExpired)
}

// TokenExpired reports whether ctx (from UntilTokenExpires) ended because
// its token expired.
func TokenExpired(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), errStreamTokenExpired)
}
