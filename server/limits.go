package server

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/delivery"
	"github.com/pushgate/pushgate/server/observe"
)

// Limits bound what one client may take of the server; docs/limits.md
// lists each with what a client sees when it passes it. The zero value of
// each field means its default; a negative value turns the limit off where
// the field says so.
type Limits struct {
	// MaxSubscriptionChannels bounds the channels of one subscription
	// (GraphQL feed, SSE, long-poll): default and at most
	// pubsub.MaxChannelsPerSubscription (32), which the cursor format
	// carries.
	MaxSubscriptionChannels int
	// MaxSubscriptionsPerConnection bounds the operations active at once on
	// one WebSocket (default 100; negative: off). The one over it fails
	// with RATE_LIMITED; the connection and its other operations go on.
	MaxSubscriptionsPerConnection int
	// MaxConnectionsPerSubject bounds the streaming connections (WebSocket,
	// SSE, graphql-sse, long-polls in progress) open at once for one token
	// subject, the token's sub (default 100; negative: off). API keys and
	// anonymous readers are counted per IP only.
	MaxConnectionsPerSubject int
	// MaxConnectionsPerIP bounds the streaming connections open at once from
	// one client IP (default 1000; negative: off). Behind a reverse proxy,
	// set Config.TrustedProxies, or every client shares the proxy's IP.
	MaxConnectionsPerIP int
	// ConnectRatePerIP bounds how fast one client IP opens streaming
	// connections, long-polls included but for those that carry a cursor,
	// which follow a channel (default 50/s, burst 100).
	ConnectRatePerIP Rate
	// SendRatePerKey bounds the messages one API key sends (default
	// 1000/s, burst 2000). A broadcast counts one per channel.
	SendRatePerKey Rate
	// SendRatePerToken bounds the messages one token holder (sub) sends
	// where a namespace lets tokens send (default 10/s, burst 20).
	SendRatePerToken Rate
	// MaxQueryDepth bounds the nesting of a GraphQL operation's fields:
	// { a { b } } is 2 (default 10; negative: off). __schema and __type
	// are allowed at least 20, as tools' introspection queries nest ofType
	// (graphql-js's reaches 15).
	MaxQueryDepth int
	// MaxQueryComplexity bounds a GraphQL operation's cost: one per field,
	// fragments expanded, aliases counted separately, and a list's fields
	// once per item it may hold (history's nodes and edges once per message
	// of the page: history(last: 1000) { nodes { data } } costs 1002; a
	// presence's subjects 1000) (default 10000; negative: off).
	MaxQueryComplexity int
	// DisableIntrospection refuses __schema and __type (__typename stays).
	DisableIntrospection bool
	// MaxRequestsInFlightPerIP bounds the requests other than streams
	// (queries, mutations, health, metrics) that one client IP has in
	// progress at once, a body still being received included (default
	// 256; negative: off). The one over it is answered 429 RATE_LIMITED
	// with Retry-After.
	MaxRequestsInFlightPerIP int
	// WechatLoginRatePerIP bounds how fast one client IP calls
	// wechatLogin, each a call to WeChat's code2Session (default 10/s,
	// burst 20; negative: off). Only with WeChat configured.
	WechatLoginRatePerIP Rate
}

// Rate is a token bucket: PerSecond tokens are added each second, up to
// Burst. The zero Rate is the limit's default; a negative PerSecond turns
// the limit off; a zero Burst is twice PerSecond.
type Rate struct {
	PerSecond float64
	Burst     int
}

func (r Rate) off() bool { return r.PerSecond < 0 }

func (r Rate) withDefault(def Rate) Rate {
	switch {
	case r.PerSecond < 0:
		return Rate{PerSecond: -1}
	case r.PerSecond == 0 && r.Burst <= 0:
		return def
	case r.PerSecond == 0:
		r.PerSecond = def.PerSecond
	}
	if r.Burst <= 0 {
		r.Burst = max(1, int(math.Ceil(2*r.PerSecond)))
	}
	return r
}

// String is "10/s".
func (r Rate) String() string {
	return strconv.FormatFloat(r.PerSecond, 'f', -1, 64) + "/s"
}

// Default limits.
const (
	DefaultMaxSubscriptionsPerConnection = 100
	DefaultMaxConnectionsPerSubject      = 100
	DefaultMaxConnectionsPerIP           = 1000
	DefaultMaxQueryDepth                 = 10
	DefaultMaxQueryComplexity            = 10000
	DefaultMaxRequestsInFlightPerIP      = 256
)

// Default rates.
var (
	DefaultConnectRatePerIP     = Rate{PerSecond: 50, Burst: 100}
	DefaultSendRatePerKey       = Rate{PerSecond: 1000, Burst: 2000}
	DefaultSendRatePerToken     = Rate{PerSecond: 10, Burst: 20}
	DefaultWechatLoginRatePerIP = Rate{PerSecond: 10, Burst: 20}
)

func (l Limits) withDefaults() Limits {
	if l.MaxSubscriptionChannels <= 0 || l.MaxSubscriptionChannels > pubsub.MaxChannelsPerSubscription {
		l.MaxSubscriptionChannels = pubsub.MaxChannelsPerSubscription
	}
	orDefault := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	orDefault(&l.MaxSubscriptionsPerConnection, DefaultMaxSubscriptionsPerConnection)
	orDefault(&l.MaxConnectionsPerSubject, DefaultMaxConnectionsPerSubject)
	orDefault(&l.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP)
	orDefault(&l.MaxQueryDepth, DefaultMaxQueryDepth)
	orDefault(&l.MaxQueryComplexity, DefaultMaxQueryComplexity)
	orDefault(&l.MaxRequestsInFlightPerIP, DefaultMaxRequestsInFlightPerIP)
	l.ConnectRatePerIP = l.ConnectRatePerIP.withDefault(DefaultConnectRatePerIP)
	l.SendRatePerKey = l.SendRatePerKey.withDefault(DefaultSendRatePerKey)
	l.SendRatePerToken = l.SendRatePerToken.withDefault(DefaultSendRatePerToken)
	l.WechatLoginRatePerIP = l.WechatLoginRatePerIP.withDefault(DefaultWechatLoginRatePerIP)
	return l
}

// limits enforces Limits at run time. Its tables hold an entry per key in
// use (an open connection, a bucket not yet refilled), so their memory
// follows the load, not the history.
type limits struct {
	Limits
	auth    *Auth
	proxies []netip.Prefix

	warnedXFF    atomic.Bool
	ipConns      *counter // nil: off
	subjectConns *counter
	ipConnects   *buckets
	keySends     *buckets
	tokenSends   *buckets
	// wechatLogins: wechatLogin calls per client IP (nil: no WeChat, or off).
	wechatLogins *buckets
	// metrics count the connections and subscriptions refused (nil: not
	// counted).
	metrics *Metrics
}

// maxBuckets bounds each bucket table. A table is full only when that many
// keys are active within one refill period; then an arbitrary bucket is
// dropped, which only forgives its key a little.
const maxBuckets = 1 << 16

// busyRetryAfter is the Retry-After of a refusal for too many open
// connections: when one closes is unknown.
const busyRetryAfter = 5 * time.Second

func newLimits(l Limits, auth *Auth, proxies []netip.Prefix) *limits {
	l = l.withDefaults()
	lim := &limits{Limits: l, auth: auth, proxies: proxies}
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

// retrySeconds rounds a wait up to whole seconds, as Retry-After takes.
func retrySeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// writeLimitError answers a plain HTTP request refused for a limit: 429
// with Retry-After, or 400.
func writeLimitError(w http.ResponseWriter, e *limitError) {
	status := http.StatusBadRequest
	if e.code == graph.CodeRateLimited {
		status = http.StatusTooManyRequests
		w.Header().Set("Retry-After", strconv.Itoa(retrySeconds(e.retry)))
	}
	writeError(w, status, e.code, e.msg)
}

// channels refuses SSE and long-poll requests of too many channels.
func (l *limits) channels(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := len(r.URL.Query()["channel"]); n > l.MaxSubscriptionChannels {
			writeLimitError(w, l.tooManyChannels(n))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// streams admits SSE and long-poll requests: the number of channels, then
// admit's shares.
func (l *limits) streams(next http.Handler) http.Handler {
	return l.channels(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.serveAdmitted(w, r, next, true)
	}))
}

// polls admits long-polls as streams, but a poll that carries a cursor
// takes no token of the connect rate: it is one client following its
// channels, which polls again as soon as it is answered (up to 100 times a
// second on a channel sent to 100 times a second), not a new connection.
// It still takes the IP's and the subject's connection slots while it is
// held. A poll without a cursor, a client starting to follow, takes a
// token: a flood of new polls is stopped by the rate.
func (l *limits) polls(next http.Handler) http.Handler {
	return l.channels(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.serveAdmitted(w, r, next, r.URL.Query().Get("cursor") == "")
	}))
}

func (l *limits) serveAdmitted(w http.ResponseWriter, r *http.Request, next http.Handler, rate bool) {
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
// WebSocket): that one keeps it (keepStreamSlot) and gives it back when it ends.
type streamSlot struct {
	release func()
	kept    bool
}

type streamSlotKey struct{}

// keepStreamSlot takes over the slot of ctx's stream: the caller calls
// release once the stream ended.
func keepStreamSlot(ctx context.Context) (release func()) {
	s, ok := ctx.Value(streamSlotKey{}).(*streamSlot)
	if !ok {
		return func() {}
	}
	s.kept = true
	return s.release
}

// tooManyChannels refuses a subscription of n channels.
func (l *limits) tooManyChannels(n int) *limitError {
	l.metrics.Dropped(observe.DropLimit)
	return &limitError{code: graph.CodeBadUserInput,
		msg: fmt.Sprintf("channels: %d channels, over the limit of %d per subscription", n, l.MaxSubscriptionChannels)}
}

// graphql admits the streaming requests of /graphql: a WebSocket is
// admitted at the upgrade and its subject counted at connection_init
// (websocketInit), and its operations are counted by operationLimits; a
// graphql-sse stream is admitted as an SSE one. Other requests get a note
// through which a rate-limited mutation sets Retry-After.
func (l *limits) graphql(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch kind := delivery.KindOf(r); {
		case kind == delivery.Upgrade:
			release, err := l.admit(r, false)
			if err != nil {
				writeLimitError(w, err)
				return
			}
			ws := &wsLimits{max: l.MaxSubscriptionsPerConnection, metrics: l.metrics}
			r = r.WithContext(context.WithValue(r.Context(), wsLimitsKey{}, ws))
			serveWithSlot(w, r, next, func() { ws.close(); release() })
		case kind == delivery.EventStream && r.Method == http.MethodPost:
			release, err := l.admit(r, true)
			if err != nil {
				writeLimitError(w, err)
				return
			}
			serveWithSlot(w, r, next, release)
		default:
			if st := requestOf(r.Context()); st != nil {
				st.retryAfter = true
				if l.wechatLogins != nil {
					// wechatLogin is limited per client IP.
					st.client, _ = l.clientKey(r)
				}
			}
			next.ServeHTTP(w, r)
		}
	})
}

// admit takes a new streaming connection's shares: a token of its IP's
// connect rate, a slot of its IP's connections and, with subject, a slot of
// its token subject's connections. release gives the slots back.
func (l *limits) admit(r *http.Request, subject bool) (release func(), err *limitError) {
	return l.admitConnection(r, subject, true)
}

// admitConnection is admit, taking a token of the connect rate only when
// rate is set.
func (l *limits) admitConnection(r *http.Request, subject, rate bool) (release func(), err *limitError) {
	defer func() {
		if err != nil {
			l.metrics.Dropped(observe.DropLimit)
		}
	}()
	ip, ok := l.clientKey(r)
	if !ok {
		return func() {}, nil
	}
	if rate {
		if ok, wait := l.ipConnects.take(ip, 1, time.Now()); !ok {
			return nil, rateLimited(wait, "new connection rate limit of %s per client IP exceeded; retry after %ds",
				l.ConnectRatePerIP, retrySeconds(wait))
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
func (l *limits) admitSubject(ctx context.Context) (release func(), err *limitError) {
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

// closeTooManyConnections closes a WebSocket refused at connection_init for
// its subject's connections: graphql-transport-ws's code for "too many",
// which graphql-ws clients do not retry at once.
const closeTooManyConnections = 4429

// websocketInit counts a WebSocket's subject once connection_init named its
// credential; the slot is given back when the connection ends.
func (l *limits) websocketInit(ctx context.Context) error {
	ws, _ := ctx.Value(wsLimitsKey{}).(*wsLimits)
	if ws == nil {
		return nil
	}
	release, err := l.admitSubject(ctx)
	if err != nil {
		l.metrics.Dropped(observe.DropLimit)
		return err
	}
	ws.onClose(release)
	return nil
}

// subject returns the sub of the token in ctx ("" for none, an API key or
// an invalid token).
func (l *limits) subject(ctx context.Context) string {
	cred := credential(ctx)
	if cred == "" {
		return ""
	}
	if _, ok := l.auth.key(cred); ok {
		return ""
	}
	claims, err := l.auth.tokens.Verify(ctx, cred)
	if err != nil {
		return ""
	}
	return claims.Subject
}

// sendBucket returns the send-rate table and key of the credential in ctx:
// its API key's name, else its token's subject. ok is false without a
// valid credential (the resolver refuses the send).
func (l *limits) sendBucket(ctx context.Context) (b *buckets, key, who string, ok bool) {
	cred := credential(ctx)
	if cred == "" {
		return nil, "", "", false
	}
	if k, ok := l.auth.key(cred); ok {
		return l.keySends, k.name, "API key", true
	}
	claims, err := l.auth.tokens.Verify(ctx, cred)
	if err != nil {
		return nil, "", "", false
	}
	return l.tokenSends, claims.Subject, "token holder", true
}

// takeSend charges n messages to the sender in ctx.
func (l *limits) takeSend(ctx context.Context, n int) *limitError {
	b, key, who, ok := l.sendBucket(ctx)
	if !ok || b == nil {
		return nil
	}
	if n > b.rate.Burst {
		return &limitError{code: graph.CodeBadUserInput, msg: fmt.Sprintf(
			"%d messages in one operation is over the send burst of %d per %s; send fewer at once", n, b.rate.Burst, who)}
	}
	if ok, wait := b.take(key, n, time.Now()); !ok {
		return rateLimited(wait, "send rate limit of %s per %s exceeded; retry after %ds", b.rate, who, retrySeconds(wait))
	}
	return nil
}

// clientKey returns the key of the request's client for the per-IP
// limits: its IP, or for IPv6 its /64, which one host or home usually
// holds whole. ok is false when the peer has no IP address (a Unix socket).
func (l *limits) clientKey(r *http.Request) (string, bool) {
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

// clientIP returns the TCP peer's address; when the peer is a trusted proxy,
// the address X-Forwarded-For names before the trusted proxies (read from
// the right, as each proxy appends its peer).
func clientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	ip := ap.Addr().Unmap()
	if !isTrusted(ip, trusted) {
		return ip
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseHop(hops[i])
		if !ok {
			break // the nearest trusted proxy is the best known client
		}
		ip = hop
		if !isTrusted(ip, trusted) {
			break
		}
	}
	return ip
}

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// parseHop parses one X-Forwarded-For entry: an address, possibly with a
// port.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// counter counts open connections per key, up to limit each.
type counter struct {
	limit int
	mu    sync.Mutex
	n     map[string]int
}

func newCounter(limit int) *counter {
	return &counter{limit: limit, n: make(map[string]int)}
}

// acquire takes a slot of key; release (idempotent) gives it back.
func (c *counter) acquire(key string) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] >= c.limit {
		return nil, false
	}
	c.n[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.n[key]--; c.n[key] <= 0 {
				delete(c.n, key)
			}
		})
	}, true
}

// open returns the slots taken for key.
func (c *counter) open(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// buckets are token buckets by key, each created full. A bucket that has
// refilled is the same as a new one, so sweeps drop those; the table holds
// at most max buckets.
type buckets struct {
	rate  Rate
	max   int
	every time.Duration // between sweeps: the time to refill

	mu    sync.Mutex
	m     map[string]*rate.Limiter
	swept time.Time
}

// newBuckets returns the table of r, nil when r is off.
func newBuckets(r Rate, size int) *buckets {
	if r.off() {
		return nil
	}
	every := time.Duration(float64(r.Burst) / r.PerSecond * float64(time.Second))
	return &buckets{rate: r, max: size, every: max(every, time.Second), m: make(map[string]*rate.Limiter)}
}

// take takes n tokens of key's bucket at now; when there are not enough,
// it takes none and returns how long until there are. A nil table takes
// nothing and allows everything.
func (b *buckets) take(key string, n int, now time.Time) (ok bool, wait time.Duration) {
	if b == nil {
		return true, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.swept) >= b.every {
		b.sweep(now)
	}
	lim := b.m[key]
	if lim == nil {
		if len(b.m) >= b.max {
			if now.Sub(b.swept) >= time.Second {
				b.sweep(now)
			}
			for k := range b.m {
				if len(b.m) < b.max {
					break
				}
				delete(b.m, k)
			}
		}
		lim = rate.NewLimiter(rate.Limit(b.rate.PerSecond), b.rate.Burst)
		b.m[key] = lim
	}
	if lim.AllowN(now, n) {
		return true, 0
	}
	missing := float64(n) - lim.TokensAt(now)
	return false, time.Duration(missing / b.rate.PerSecond * float64(time.Second))
}

// sweep drops the buckets that are full again.
func (b *buckets) sweep(now time.Time) {
	b.swept = now
	for k, lim := range b.m {
		if lim.TokensAt(now) >= float64(b.rate.Burst) {
			delete(b.m, k)
		}
	}
}

// size returns the number of buckets held.
func (b *buckets) size() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}

// wsLimits are one WebSocket connection's: its active operations, and what
// to give back when it ends.
type wsLimits struct {
	max     int // negative: off
	ops     atomic.Int64
	metrics *Metrics // counts refusals

	mu      sync.Mutex
	closed  bool
	closers []func()
}

type wsLimitsKey struct{}

// acquire takes an operation slot.
func (ws *wsLimits) acquire() bool {
	if ws.max < 0 {
		return true
	}
	if ws.ops.Add(1) > int64(ws.max) {
		ws.ops.Add(-1)
		ws.metrics.Dropped(observe.DropLimit)
		return false
	}
	return true
}

func (ws *wsLimits) release() {
	if ws.max >= 0 {
		ws.ops.Add(-1)
	}
}

// onClose runs f when the connection ends (at once if it has).
func (ws *wsLimits) onClose(f func()) {
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

func (ws *wsLimits) close() {
	ws.mu.Lock()
	fs := ws.closers
	ws.closed, ws.closers = true, nil
	ws.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

// noteRetry has a GraphQL rate limit's wait sent in the HTTP response
// (requestWriter): Retry-After, and 429 for
// application/graphql-response+json, whose request errors are 4xx.
func noteRetry(ctx context.Context, wait time.Duration) {
	if st := requestOf(ctx); st != nil {
		st.retry.Store(int64(retrySeconds(wait)))
	}
}

// inFlight counts the requests in progress per client IP, streams aside
// (they have their own limits): a client that opens requests and stalls
// them (a body sent slowly, within ReadTimeout) takes its share, not the
// server's memory.
type inFlight struct {
	max     int // <= 0: off
	proxies []netip.Prefix
	metrics *Metrics
	mu      sync.Mutex
	n       map[netip.Prefix]int // by client: an IPv4 address, an IPv6 /64
}

func newInFlight(max int, proxies []netip.Prefix, m *Metrics) *inFlight {
	return &inFlight{max: max, proxies: proxies, metrics: m, n: make(map[netip.Prefix]int)}
}

// key is the request's client as limits.clientKey sees it, without
// formatting it (no allocation per request).
func (f *inFlight) key(r *http.Request) (netip.Prefix, bool) {
	ip := clientIP(r, f.proxies)
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p, true
	}
	return netip.PrefixFrom(ip, 32), true
}

// limit admits a request, or answers 429 RATE_LIMITED when its client IP
// has max in progress.
func (f *inFlight) limit(next http.Handler) http.Handler {
	if f.max <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := f.key(r)
		if !ok || isStream(r) {
			next.ServeHTTP(w, r)
			return
		}
		f.mu.Lock()
		n := f.n[key]
		if n >= f.max {
			f.mu.Unlock()
			f.metrics.Dropped(observe.DropLimit)
			writeLimitError(w, rateLimited(time.Second, "limit of %d requests in progress per client IP reached; "+
				"wait for one to end, or retry later", f.max))
			return
		}
		f.n[key] = n + 1
		f.mu.Unlock()
		defer f.done(key)
		next.ServeHTTP(w, r)
	})
}

func (f *inFlight) done(key netip.Prefix) {
	f.mu.Lock()
	if f.n[key]--; f.n[key] <= 0 {
		delete(f.n, key)
	}
	f.mu.Unlock()
}
