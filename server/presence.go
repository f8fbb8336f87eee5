package server

import (
	"context"
	"encoding/json"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
)

// presenceSuffix names a channel's companion feed of join and leave events.
const presenceSuffix = access.PresenceSuffix

// presence counts the WebSocket, SSE and graphql-sse subscriptions of the
// channels whose namespace has presence on, by subject (the token's sub,
// key:<name> for an API key, anonymous), on every node through the store's
// Presence. When a subject appears on or leaves a channel, an event "join"
// or "leave" with data {"subject": ...} is published on the companion
// channel <channel>:presence, which clients subscribe to like any other
// (so presence events follow the same access rules and resume by cursor).
// Long-polls are not counted: they come and go with every request.
type presence struct {
	store  pubsub.Presence
	ns     access.Namespaces
	auth   *access.Auth
	broker pubsub.Broker
	log    zerolog.Logger
	// wechat, when set, also records each subscription of a user to its
	// own user:<sub> channel, whatever the namespace's presence (wechat.go).
	wechat *WeChat
}

func newPresence(cfg Config, broker pubsub.Broker, auth *access.Auth, log zerolog.Logger) *presence {
	p := &presence{ns: cfg.Namespaces, auth: auth, broker: broker, log: log, wechat: cfg.WeChat}
	open := cfg.Presence
	if open == nil {
		open = pubsub.NewMemoryPresence
	}
	p.store = open(p.changed)
	return p
}

func (p *presence) on(channel string) bool { return p.ns.Of(channel).Presence }

// join records a subscription of channels by the request's subject; the
// returned function ends it.
func (p *presence) join(ctx context.Context, channels []string) (leave func()) {
	subject := p.auth.Subject(ctx)
	var leaves []func()
	if p.wechat != nil {
		leaves = append(leaves, p.wechat.join(ctx, subject, channels, p.log))
	}
	for _, ch := range channels {
		if !p.on(ch) {
			continue
		}
		l, err := p.store.Join(ctx, ch, subject)
		if err != nil {
			// Presence is best effort: the subscription goes on.
			p.log.Warn().Err(err).Msg("presence join failed")
			continue
		}
		leaves = append(leaves, l)
	}
	return func() {
		for _, l := range leaves {
			l()
		}
	}
}

// get returns who is on channel, or nil when its namespace has presence off.
func (p *presence) get(ctx context.Context, channel string) (*pubsub.PresenceState, error) {
	if !p.on(channel) {
		return nil, nil
	}
	st, err := p.store.Get(ctx, channel)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// changed publishes a join or leave on the companion channel.
func (p *presence) changed(channel, subject string, joined bool) {
	companion := channel + presenceSuffix
	if !pubsub.ValidChannel(companion) {
		return // the name is too long for a companion
	}
	event := "leave"
	if joined {
		event = "join"
	}
	data, _ := json.Marshal(map[string]string{"subject": subject})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.broker.Publish(ctx, pubsub.PublishRequest{Channel: companion, Event: event, Data: data}); err != nil {
		p.log.Warn().Err(err).Str("event", event).Msg("presence event not published")
	}
}
