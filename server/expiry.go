package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"

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

// expiringWebsocket is the WebSocket transport with each connection bounded
// by the token it was initialised with (connection_init, else the upgrade
// request's): when the token expires, the connection is closed with
// CloseTokenExpired. gqlgen closes a connection whose InitFunc context
// ended with 1000 "terminated"; the connection handed to it turns that
// close into 4403 when the token is why.
type expiringWebsocket struct {
	transport.Websocket
	auth    *Auth
	metrics *Metrics // accounts the connection (metrics.go)
}

func (t expiringWebsocket) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	ws := t.Websocket
	state := &wsExpiry{}
	defer state.end()
	impl := ws.Implementation
	if impl == nil {
		impl = transport.CoderWebsocketImplementation{}
	}
	acct := t.metrics.newWSStream(r)
	if acct != nil {
		r = r.WithContext(withStream(r.Context(), acct.stream))
	}
	ws.Implementation = expiringAccept{WebsocketImplementation: impl, state: state, acct: acct}
	init := ws.InitFunc
	ws.InitFunc = func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
		var ack *transport.InitPayload
		if init != nil {
			var err error
			if ctx, ack, err = init(ctx, p); err != nil {
				return ctx, ack, err
			}
		}
		ctx, cancel := t.auth.untilTokenExpires(ctx)
		state.start(ctx, cancel)
		return ctx, ack, nil
	}
	ws.Do(w, r, exec)
	acct.ensureClosed(wsCloseGrace)
}

// wsCloseGrace is how long after gqlgen's Do returns a connection it has
// not closed is closed (see wsStream.ensureClosed).
const wsCloseGrace = 5 * time.Second

// wsExpiry is one connection's bounded context, once initialised.
type wsExpiry struct {
	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
}

func (s *wsExpiry) start(ctx context.Context, cancel context.CancelFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ctx, s.cancel = ctx, cancel
}

func (s *wsExpiry) expired() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctx != nil && tokenExpired(s.ctx)
}

// end releases the context's timer once the connection is over.
func (s *wsExpiry) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		s.cancel()
	}
}

// expiringAccept hands gqlgen connections whose normal close becomes
// CloseTokenExpired once the token expired.
type expiringAccept struct {
	transport.WebsocketImplementation
	state *wsExpiry
	acct  *wsStream // nil: not accounted
}

func (a expiringAccept) Accept(w http.ResponseWriter, r *http.Request, opts transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	c, err := a.WebsocketImplementation.Accept(w, r, opts)
	if err != nil {
		return nil, err
	}
	ec := &expiringConn{WebsocketConn: c, state: a.state, req: r.Context(), acct: a.acct}
	a.acct.accepted(ec)
	return ec, nil
}

type expiringConn struct {
	transport.WebsocketConn
	state *wsExpiry
	req   context.Context // the upgrade request's: cancelled with ErrShutdown on shutdown
	acct  *wsStream       // notes how the connection ends
}

// legacyExpired tells a legacy graphql-ws client why before the close (the
// graphql-transport-ws protocol has no such message: the code says it).
var legacyExpired = map[string]any{
	"type":    "connection_error",
	"payload": map[string]any{"message": "the token has expired", "extensions": map[string]any{"code": "UNAUTHENTICATED"}},
}

func (c *expiringConn) WriteClose(code int, reason string) error {
	switch {
	case code != transport.WebsocketCloseNormalClosure:
	case c.state.expired():
		if c.Subprotocol() != "graphql-transport-ws" {
			_ = c.WriteJSON(legacyExpired)
		}
		code, reason = CloseTokenExpired, "token expired"
	case errors.Is(context.Cause(c.req), ErrShutdown):
		code, reason = CloseServiceRestart, "server restarting: reconnect"
	}
	c.acct.closing(code, reason)
	return c.WebsocketConn.WriteClose(code, reason)
}

// NextReader, WriteJSON and Close tell the account how the connection
// ends.
func (c *expiringConn) NextReader() (int, io.Reader, error) {
	typ, r, err := c.WebsocketConn.NextReader()
	if err != nil {
		c.acct.readFailed(err)
	}
	return typ, r, err
}

func (c *expiringConn) WriteJSON(v any) error {
	err := c.WebsocketConn.WriteJSON(v)
	if err != nil {
		c.acct.writeFailed(err)
	}
	return err
}

func (c *expiringConn) Close() error {
	err := c.WebsocketConn.Close()
	c.acct.done()
	return err
}

// SetReadLimit and SetReadDeadline pass on the optional interfaces gqlgen
// looks for (payload limit, pong deadline).
func (c *expiringConn) SetReadLimit(n int64) {
	if l, ok := c.WebsocketConn.(transport.WebsocketReadLimiter); ok {
		l.SetReadLimit(n)
	}
}

func (c *expiringConn) SetReadDeadline(t time.Time) error {
	if d, ok := c.WebsocketConn.(transport.WebsocketReadDeadliner); ok {
		return d.SetReadDeadline(t)
	}
	return nil
}

// expireGraphQLSSE bounds graphql-sse streams (POST with Accept:
// text/event-stream) by their token: when it expires, the operation ends
// with a last result carrying an UNAUTHENTICATED error, then completes.
func expireGraphQLSSE(auth *Auth, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := auth.untilTokenExpires(r.Context())
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
	if string(p) == "event: complete\n\n" && tokenExpired(w.ctx) {
		if _, err := io.WriteString(w.ResponseWriter, graphqlSSEExpired); err != nil {
			return 0, err
		}
	}
	return w.ResponseWriter.Write(p)
}
