package limits

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/internal/httperr"
	"github.com/pushgate/pushgate/server/delivery"
)

// Hooks connect a Limiter to the server that runs it: they count and take
// notes, and never decide. A nil hook does nothing.
type Hooks struct {
	// Refused counts a request, connection, subscription or operation
	// refused for a limit.
	Refused func()
	// Who names the sender of ctx's credential: its API key's name (token
	// false) or its token's subject (token true). ok is false without a
	// valid credential (anonymous, or refused: the resolvers say why).
	Who func(ctx context.Context) (name string, token, ok bool)
	// NoteRetry has a GraphQL rate limit's wait (whole seconds) sent in the
	// response of ctx's request: Retry-After, and 429 for
	// application/graphql-response+json, whose request errors are 4xx.
	NoteRetry func(ctx context.Context, seconds int)
	// NoteGraphQL tells the server that ctx's request is a GraphQL request
	// other than a stream (its response may carry a NoteRetry), and client
	// its client IP's key, for TakeWechatLogin ("" when wechatLogin is not
	// limited).
	NoteGraphQL func(ctx context.Context, client string)
	// IsStream tells streams (WebSocket, SSE, graphql-sse, long-poll) from
	// the other requests, which InFlight counts.
	IsStream func(r *http.Request) bool
}

func (h Hooks) refused() {
	if h.Refused != nil {
		h.Refused()
	}
}

func (h Hooks) noteRetry(ctx context.Context, wait time.Duration) {
	if h.NoteRetry != nil {
		h.NoteRetry(ctx, RetrySeconds(wait))
	}
}

// Limiter enforces Limits at run time. Its tables hold an entry per key in
// use (an open connection, a bucket not yet refilled), so their memory
// follows the load, not the history.
type Limiter struct {
	Limits
	hooks   Hooks
	proxies []netip.Prefix

	warnedXFF    atomic.Bool
	ipConns      *counter // nil: off
	subjectConns *counter
	ipConnects   *buckets
	keySends     *buckets
	tokenSends   *buckets
	// wechatLogins: wechatLogin calls per client IP (nil: no WeChat, or off).
	wechatLogins *buckets
}

// maxBuckets bounds each bucket table. A table is full only when that many
// keys are active within one refill period; then an arbitrary bucket is
// dropped, which only forgives its key a little.
const maxBuckets = 1 << 16

// busyRetryAfter is the Retry-After of a refusal for too many open
// connections: when one closes is unknown.
const busyRetryAfter = 5 * time.Second

// New returns the Limiter of l (its defaults filled) for a server whose
// trusted proxies are proxies.
func New(l Limits, proxies []netip.Prefix, h Hooks) *Limiter {
	l = l.WithDefaults()
	lim := &Limiter{Limits: l, hooks: h, proxies: proxies}
	if l.MaxConnectionsPerIP > 0 {
		lim.ipConns = newCounter(l.MaxConnectionsPerIP)
	}
	if l.MaxConnectionsPerSubject > 0 {
		lim.subjectConns = newCounter(l.MaxConnectionsPerSubject)
	}
	lim.ipConnects = newBuckets(l.ConnectRatePerIP, maxBuckets)
	lim.keySends = newBuckets(l.SendRatePerKey, maxBuckets)
	lim.tokenSends = newBuckets(l.SendRatePerToken, maxBuckets)
	return lim
}

// LimitWechatLogins turns on the limit of wechatLogin calls per client IP
// (TakeWechatLogin), for a server with WeChat configured. It is called
// before the Limiter serves.
func (l *Limiter) LimitWechatLogins() {
	l.wechatLogins = newBuckets(l.WechatLoginRatePerIP, maxBuckets)
}

// TakeWechatLogin takes a wechatLogin call of client (the key NoteGraphQL
// was given): RATE_LIMITED over its rate, with the wait noted.
func (l *Limiter) TakeWechatLogin(ctx context.Context, client string) error {
	if client == "" || l.wechatLogins == nil {
		return nil
	}
	if ok, wait := l.wechatLogins.take(client, 1, time.Now()); !ok {
		l.hooks.noteRetry(ctx, wait)
		return graph.Errorf(graph.CodeRateLimited, "wechatLogin rate limit of %s per client IP exceeded; retry after %ds",
			l.WechatLoginRatePerIP, RetrySeconds(wait))
	}
	return nil
}

// limitError is a refusal for a limit: RATE_LIMITED, or BAD_USER_INPUT
// for a request that can never pass. retry, when positive, is when trying
// again can succeed.
type limitError struct {
	code  string
	msg   string
	retry time.Duration
}

func (e *limitError) Error() string { return e.msg }

func rateLimited(retry time.Duration, format string, args ...any) *limitError {
	return &limitError{code: graph.CodeRateLimited, msg: fmt.Sprintf(format, args...), retry: retry}
}

// RetrySeconds rounds a wait up to whole seconds, as Retry-After takes.
func RetrySeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// writeLimitError answers a plain HTTP request refused for a limit: 429
// with Retry-After, or 400.
func writeLimitError(w http.ResponseWriter, e *limitError) {
	status := http.StatusBadRequest
	if e.code == graph.CodeRateLimited {
		status = http.StatusTooManyRequests
		w.Header().Set("Retry-After", strconv.Itoa(RetrySeconds(e.retry)))
	}
	httperr.Write(w, status, e.code, e.msg)
}

// Channels refuses SSE and long-poll requests of too many channels.
func (l *Limiter) Channels(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := len(r.URL.Query()["channel"]); n > l.MaxSubscriptionChannels {
			writeLimitError(w, l.tooManyChannels(n))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Streams admits SSE and long-poll requests: the number of channels, then
// admit's shares.
func (l *Limiter) Streams(next http.Handler) http.Handler {
	return l.Channels(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.serveAdmitted(w, r, next, true)
	}))
}

// Polls admits long-polls as Streams does, but a poll that carries a
// cursor takes no token of the connect rate: it is one client following
// its channels, which polls again as soon as it is answered (up to 100
// times a second on a channel sent to 100 times a second), not a new
// connection. It still takes the IP's and the subject's connection slots
// while it is held. A poll without a cursor, a client starting to follow,
// takes a token: a flood of new polls is stopped by the rate.
func (l *Limiter) Polls(next http.Handler) http.Handler {
	return l.Channels(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.serveAdmitted(w, r, next, r.URL.Query().Get("cursor") == "")
	}))
}

func (l *Limiter) serveAdmitted(w http.ResponseWriter, r *http.Request, next http.Handler, rate bool) {
	release, err := l.admitConnection(r, true, rate)
	if err != nil {
		writeLimitError(w, err)
		return
	}
	serveWithSlot(w, r, next, release)
}

// serveWithSlot serves a stream admitted with release: its slot is given
// back when the handler returns, unless the stream kept it.
func serveWithSlot(w http.ResponseWriter, r *http.Request, next http.Handler, release func()) {
	slot := &streamSlot{release: release}
	defer func() {
		if !slot.kept {
			release()
		}
	}()
	next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), streamSlotKey{}, slot)))
}

// streamSlot is an admitted stream's share of the limits, given back when
// its handler returns, unless the stream outlives the handler (SSE,
// WebSocket): that one keeps it (KeepStreamSlot) and gives it back when it ends.
type streamSlot struct {
	release func()
	kept    bool
}

type streamSlotKey struct{}

// KeepStreamSlot takes over the slot of ctx's stream: the caller calls
// release once the stream ended.
func KeepStreamSlot(ctx context.Context) (release func()) {
	s, ok := ctx.Value(streamSlotKey{}).(*streamSlot)
	if !ok {
		return func() {}
	}
	s.kept = true
	return s.release
}

// tooManyChannels refuses a subscription of n channels.
func (l *Limiter) tooManyChannels(n int) *limitError {
	l.hooks.refused()
	return &limitError{code: graph.CodeBadUserInput,
		msg: fmt.Sprintf("channels: %d channels, over the limit of %d per subscription", n, l.MaxSubscriptionChannels)}
}

// GraphQL admits the streaming requests of /graphql: a WebSocket is
// admitted at the upgrade and its subject counted at connection_init
// (WebSocketInit), and its operations are counted by Operations; a
// graphql-sse stream is admitted as an SSE one. Other requests get a note
// through which a rate-limited mutation sets Retry-After.
func (l *Limiter) GraphQL(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch kind := delivery.KindOf(r); {
		case kind == delivery.Upgrade:
			release, err := l.admit(r, false)
			if err != nil {
				writeLimitError(w, err)
				return
			}
			ws := &WebSocket{max: l.MaxSubscriptionsPerConnection, refused: l.hooks.refused}
			r = r.WithContext(context.WithValue(r.Context(), wsLimitsKey{}, ws))
			serveWithSlot(w, r, next, func() { ws.close(); release() })
		case kind == delivery.EventStream && r.Method == http.MethodPost:
			release, err := l.admit(r, true)
			if err != nil {
				writeLimitError(w, err)
				return
			}
			// A graphql-sse feed may outlive its handler (KeepStreamSlot).
			serveWithSlot(w, r, next, release)
		default:
			if l.hooks.NoteGraphQL != nil {
				var client string
				if l.wechatLogins != nil {
					// wechatLogin is limited per client IP.
					client, _ = l.clientKey(r)
				}
				l.hooks.NoteGraphQL(r.Context(), client)
			}
			next.ServeHTTP(w, r)
		}
	})
}

// admit takes a new streaming connection's shares: a token of its IP's
// connect rate, a slot of its IP's connections and, with subject, a slot of
// its token subject's connections. release gives the slots back.
func (l *Limiter) admit(r *http.Request, subject bool) (release func(), err *limitError) {
	return l.admitConnection(r, subject, true)
}

// admitConnection is admit, taking a token of the connect rate only when
// rate is set.
func (l *Limiter) admitConnection(r *http.Request, subject, rate bool) (release func(), err *limitError) {
	defer func() {
		if err != nil {
			l.hooks.refused()
		}
	}()
	ip, ok := l.clientKey(r)
	if !ok {
		return func() {}, nil
	}
	if rate {
		if ok, wait := l.ipConnects.take(ip, 1, time.Now()); !ok {
			return nil, rateLimited(wait, "new connection rate limit of %s per client IP exceeded; retry after %ds",
				l.ConnectRatePerIP, RetrySeconds(wait))
		}
	}
	releaseIP := func() {}
	if l.ipConns != nil {
		if releaseIP, ok = l.ipConns.acquire(ip); !ok {
			return nil, rateLimited(busyRetryAfter, "connection limit of %d open connections per client IP reached; "+
				"close one or retry later", l.MaxConnectionsPerIP)
		}
	}
	if !subject {
		return releaseIP, nil
	}
	releaseSubject, err := l.admitSubject(r.Context())
	if err != nil {
		releaseIP()
		return nil, err
	}
	return func() { releaseSubject(); releaseIP() }, nil
}

// admitSubject takes a slot of the connections of the token in ctx. A
// request without a valid token takes none (its handler refuses it, or it
// reads as an API key or anonymously).
func (l *Limiter) admitSubject(ctx context.Context) (release func(), err *limitError) {
	if l.subjectConns == nil {
		return func() {}, nil
	}
	sub := l.subject(ctx)
	if sub == "" {
		return func() {}, nil
	}
	release, ok := l.subjectConns.acquire(sub)
	if !ok {
		return nil, rateLimited(busyRetryAfter, "connection limit of %d open connections per subject (token sub) reached; "+
			"close one or retry later", l.MaxConnectionsPerSubject)
	}
	return release, nil
}

// CloseTooManyConnections closes a WebSocket refused at connection_init for
// its subject's connections: graphql-transport-ws's code for "too many",
// which graphql-ws clients do not retry at once.
const CloseTooManyConnections = 4429

// WebSocketInit counts a WebSocket's subject once connection_init named its
// credential; the slot is given back when the connection ends.
func (l *Limiter) WebSocketInit(ctx context.Context) error {
	ws, _ := ctx.Value(wsLimitsKey{}).(*WebSocket)
	if ws == nil {
		return nil
	}
	release, err := l.admitSubject(ctx)
	if err != nil {
		l.hooks.refused()
		return err
	}
	ws.onClose(release)
	return nil
}

// subject returns the sub of the token in ctx ("" for none, an API key or
// an invalid token).
func (l *Limiter) subject(ctx context.Context) string {
	if l.hooks.Who == nil {
		return ""
	}
	name, token, ok := l.hooks.Who(ctx)
	if !ok || !token {
		return ""
	}
	return name
}

// sendBucket returns the send-rate table and key of the credential in ctx:
// its API key's name, else its token's subject. ok is false without a
// valid credential (the resolver refuses the send).
func (l *Limiter) sendBucket(ctx context.Context) (b *buckets, key, who string, ok bool) {
	if l.hooks.Who == nil {
		return nil, "", "", false
	}
	name, token, ok := l.hooks.Who(ctx)
	switch {
	case !ok:
		return nil, "", "", false
	case token:
		return l.tokenSends, name, "token holder", true
	default:
		return l.keySends, name, "API key", true
	}
}

// TakeSend charges n messages to the sender in ctx; over the rate, it
// takes none and says why (the send fast path leaves the answer to
// gqlgen's path, whose Operations extension takes again).
func (l *Limiter) TakeSend(ctx context.Context, n int) error {
	if err := l.takeSend(ctx, n); err != nil {
		return err
	}
	return nil
}

// takeSend charges n messages to the sender in ctx.
func (l *Limiter) takeSend(ctx context.Context, n int) *limitError {
	b, key, who, ok := l.sendBucket(ctx)
	if !ok || b == nil {
		return nil
	}
	if n > b.rate.Burst {
		return &limitError{code: graph.CodeBadUserInput, msg: fmt.Sprintf(
			"%d messages in one operation is over the send burst of %d per %s; send fewer at once", n, b.rate.Burst, who)}
	}
	if ok, wait := b.take(key, n, time.Now()); !ok {
		return rateLimited(wait, "send rate limit of %s per %s exceeded; retry after %ds", b.rate, who, RetrySeconds(wait))
	}
	return nil
}

// clientKey returns the key of the request's client for the per-IP
// limits: its IP, or for IPv6 its /64, which one host or home usually
// holds whole. ok is false when the peer has no IP address (a Unix socket).
func (l *Limiter) clientKey(r *http.Request) (string, bool) {
	if len(l.proxies) == 0 && r.Header.Get("X-Forwarded-For") != "" && l.warnedXFF.CompareAndSwap(false, true) {
		zerolog.Ctx(r.Context()).Warn().Msg("X-Forwarded-For is ignored without trusted proxies: behind a reverse proxy, " +
			"set the trusted proxies, or every client shares the proxy's IP for the per-IP limits")
	}
	ip := clientIP(r, l.proxies)
	if !ip.IsValid() {
		return "", false
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String(), true
	}
	return ip.String(), true
}

// WebSocket is one WebSocket connection's limits: its active operations,
// and what to give back when it ends. An operation admitted by Operations
// holds a slot, found in its stats under WebSocketSlot, until Release.
type WebSocket struct {
	max     int // negative: off
	ops     atomic.Int64
	refused func() // counts refusals

	mu      sync.Mutex
	closed  bool
	closers []func()
}

type wsLimitsKey struct{}

// acquire takes an operation slot.
func (ws *WebSocket) acquire() bool {
	if ws.max < 0 {
		return true
	}
	if ws.ops.Add(1) > int64(ws.max) {
		ws.ops.Add(-1)
		ws.refused()
		return false
	}
	return true
}

// Release gives an operation's slot back.
func (ws *WebSocket) Release() {
	if ws.max >= 0 {
		ws.ops.Add(-1)
	}
}

// onClose runs f when the connection ends (at once if it has).
func (ws *WebSocket) onClose(f func()) {
	ws.mu.Lock()
	if !ws.closed {
		ws.closers = append(ws.closers, f)
		f = nil
	}
	ws.mu.Unlock()
	if f != nil {
		f()
	}
}

func (ws *WebSocket) close() {
	ws.mu.Lock()
	fs := ws.closers
	ws.closed, ws.closers = true, nil
	ws.mu.Unlock()
	for _, f := range fs {
		f()
	}
}
