// Package access decides who may do what on pushgate: it owns the API keys,
// subscriber tokens (HS256 with the shared secret; RS256 and ES256 with the
// keys of a JWKS, fetched and cached here), the minting of tokens
// (issueToken, wechatLogin), the rules of each namespace, the browser
// origin policy, how a request names its credential, and how long a stream
// opened with a token may last.
//
// Its contract with the rest of the server:
//
//   - Auth is graph.Access: MaySend, MayRead and IssueToken answer with a
//     *graph.Error whose code (UNAUTHENTICATED, FORBIDDEN, UNAVAILABLE) and
//     message the client is shown as they are; a message never echoes a
//     secret or a token.
//   - Every decision reads only the credential of the context
//     (Auth.Credential): one WithCredential set (a WebSocket's
//     connection_init), else the request's, through the source the server
//     gives SetCredentialSource. Without either, the request is anonymous.
//   - An Auth is configured before it serves (NewAuth and the Set methods)
//     and is then safe for concurrent use; it keeps no state per request or
//     per connection. Its only I/O is the JWKS fetch, bounded in time and
//     rate (TokenConfig).
//   - Origins.Guard answers refused origins and preflights itself, with
//     the same JSON error body as every plain HTTP endpoint.
//
// access may not touch: connections, streams and their writers (it hands
// out a context that ends when a token expires, UntilTokenExpires, and the
// close code to use, CloseTokenExpired; the transports end the stream),
// metrics and logs other than the JWKS fetch's warning, limits, and the
// broker. It imports no other package of the server.
package access

import (
	"context"
	"strings"

	"github.com/99designs/gqlgen/graphql/handler/transport"
)

type credentialKey struct{}

// WithCredential returns ctx with its credential replaced by cred (a
// WebSocket's connection_init names one after the upgrade).
func WithCredential(ctx context.Context, cred string) context.Context {
	return context.WithValue(ctx, credentialKey{}, cred)
}

// SetCredentialSource makes a read the credential of a request that
// WithCredential did not replace with source (the server keeps it in its
// per-request state; "" when none). Without a source, such a request has
// none.
func (a *Auth) SetCredentialSource(source func(context.Context) string) { a.source = source }

// Credential returns the request's API key or token ("" when none).
func (a *Auth) Credential(ctx context.Context) string {
	if s, ok := ctx.Value(credentialKey{}).(string); ok {
		return s // replaced (a WebSocket's connection_init)
	}
	if a.source != nil {
		return a.source(ctx)
	}
	return ""
}

// Bearer returns the credential of an Authorization value, with or without
// the "Bearer " prefix.
func Bearer(v string) string {
	v = strings.TrimSpace(v)
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		v = strings.TrimSpace(v[7:])
	}
	return v
}

// InitCredential returns the credential of a WebSocket connection_init
// payload: token, Authorization or authorization.
func InitCredential(p transport.InitPayload) string {
	if t := p.GetString("token"); t != "" {
		return Bearer(t)
	}
	return Bearer(p.Authorization())
}
