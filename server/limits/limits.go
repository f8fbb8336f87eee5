// Package limits bounds what one client may take of a pushgate server
// (docs/limits.md): it owns Limits and their defaults, the admission of
// streaming connections (per client IP and per token subject), the rates
// of new connections, of sends and of wechatLogin calls, the operations
// active on one WebSocket, the requests in progress per client IP
// (InFlight), the GraphQL checks of depth, complexity and introspection
// (Operations, a gqlgen extension), and who the client IP is behind trusted
// proxies.
//
// Its contract with the rest of the server:
//
//   - A refusal changes nothing: nothing is taken from any other limit, and
//     the client gets RATE_LIMITED with when to retry (Retry-After, or
//     extensions.retryAfter), or BAD_USER_INPUT for what can never pass.
//   - Every slot taken is given back exactly once, by the release a
//     stream keeps (KeepStreamSlot) or by its handler's return; the tables
//     hold an entry per key in use, so memory follows the load, not the
//     history.
//   - A Limiter and an InFlight are safe for concurrent use once built;
//     LimitWechatLogins is called before they serve.
//
// limits may not touch: credentials and tokens (Hooks.Who names the
// sender), metrics (Hooks.Refused counts), the request's state and its
// response headers other than a refusal's (Hooks.NoteRetry,
// Hooks.NoteGraphQL), connections and streams (the server closes a
// WebSocket with CloseTooManyConnections when WebSocketInit refuses it),
// and the broker. It imports no other package of the server.
package limits

import (
	"math"
	"strconv"

	"github.com/pushgate/pushgate/pubsub"
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

// WithDefaults returns l with the default of each zero field.
func (l Limits) WithDefaults() Limits {
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
