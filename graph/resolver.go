// Package graph is pushgate's GraphQL API: thin resolvers that parse input,
// authorize it and call the pubsub Broker, plus the code gqlgen generates
// from schema.graphqls (generated.go, model/models_gen.go).
package graph

//go:generate go tool gqlgen generate

import (
	"context"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/wechat"
)

// Access decides who may send and read, and mints subscriber tokens. The
// server implements it from the request's credentials; its errors are
// *Error with code UNAUTHENTICATED or FORBIDDEN (and UNAVAILABLE from
// IssueToken when tokens cannot be signed).
type Access interface {
	// MaySend returns nil when the request may send to every one of
	// channels (all valid names). A refusal names the first channel refused
	// and the rule that refused it; the caller then appends nothing.
	MaySend(ctx context.Context, channels []string) error
	// MayRead returns nil when the request may read every one of channels
	// (all valid names).
	MayRead(ctx context.Context, channels []string) error
	// IssueToken mints a subscriber token for req (already validated: a
	// subject, 1..32 channel patterns, at most 32 publish patterns, a TTL
	// of 1 s to 24 h) when the request's credential may grant every pattern
	// of req.Channels and req.Publish.
	IssueToken(ctx context.Context, req TokenRequest) (IssuedToken, error)
}

// Options are the API's limits.
type Options struct {
	// MaxMessageSize bounds a message's data in bytes (compact JSON); default
	// DefaultMaxMessageSize.
	MaxMessageSize int
	// MaxMessageSizeOf, when set, returns the bound of a channel (its
	// namespace's) instead; a result <= 0 means MaxMessageSize.
	MaxMessageSizeOf func(channel string) int
	// Joined, when set, is called once a feed subscription runs, with its
	// channels; the function it returns is called when the subscription
	// ends (presence).
	Joined func(ctx context.Context, channels []string) (leave func())
	// Presence, when set, returns who is on a channel, or nil when the
	// channel's namespace has presence off.
	Presence func(ctx context.Context, channel string) (*pubsub.PresenceState, error)
	// WeChat, when set, is the WeChat side (wechatLogin, notify, ack,
	// Message.notification, wechatAccessToken, wechatSubscription), and
	// WeChatAccess its access rules; both nil: those fields answer
	// UNAVAILABLE and a send with notify is refused.
	WeChat       *wechat.Service
	WeChatAccess WeChatAccess
}

// maxPresenceSubjects bounds the subjects Channel.presence lists.
const maxPresenceSubjects = MaxPresenceSubjects

// MaxPresenceSubjects bounds the subjects Channel.presence lists: what the
// operation limits count for a presence's subjects.
const MaxPresenceSubjects = 1000

// Limits of the API.
const (
	DefaultMaxMessageSize = 64 << 10
	// MaxBroadcastChannels bounds the channels of one broadcast.
	MaxBroadcastChannels = 100
	// DefaultPageSize is the history page size when neither first nor last
	// is given.
	DefaultPageSize = 50
)

// Resolver holds the resolvers' dependencies.
type Resolver struct {
	broker pubsub.Broker
	access Access
	opts   Options
}

// NewResolver returns the root resolver.
func NewResolver(broker pubsub.Broker, access Access, opts Options) *Resolver {
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = DefaultMaxMessageSize
	}
	return &Resolver{broker: broker, access: access, opts: opts}
}

// OpenFeed validates and authorizes a feed of channels from cursor and
// subscribes to it, for as long as ctx lasts. The caller closes the
// subscription and then calls leave (presence). Its errors are those the
// feed field reports. Transports that encode events themselves (the
// WebSocket fast path) call it instead of the feed resolver.
func (r *Resolver) OpenFeed(ctx context.Context, channels []string, cursor *string) (sub *pubsub.Subscription, leave func(), err error) {
	if err := pubsub.ValidateChannels(channels); err != nil {
		return nil, nil, &Error{Code: CodeBadUserInput, Message: "channels: " + err.Error(), Err: err}
	}
	var cur pubsub.Cursor
	if cursor != nil {
		c, err := pubsub.ParseCursor(*cursor)
		if err != nil {
			return nil, nil, &Error{Code: CodeBadUserInput, Message: "cursor: " + err.Error(), Err: err}
		}
		cur = c
	}
	if err := r.access.MayRead(ctx, channels); err != nil {
		return nil, nil, Classify(err)
	}
	sub, err = r.broker.Subscribe(ctx, channels, cur)
	if err != nil {
		return nil, nil, Classify(err)
	}
	leave = func() {}
	if r.opts.Joined != nil {
		leave = r.opts.Joined(ctx, channels)
	}
	return sub, leave, nil
}
