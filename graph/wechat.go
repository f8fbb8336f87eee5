package graph

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/99designs/gqlgen/graphql"

	"github.com/pushgate/pushgate/graph/model"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/wechat"
)

// WeChatAccess is what the WeChat fields need of the server's access rules
// besides Access. The server implements it; its errors are *Error.
type WeChatAccess interface {
	// MintToken signs the token of req (already validated) without looking
	// at the request's credential: wechatLogin's caller proved who it is
	// with a wx.login code. UNAVAILABLE when tokens cannot be signed.
	MintToken(ctx context.Context, req TokenRequest) (IssuedToken, error)
	// TakeLogin charges one wechatLogin to the request's client IP
	// (RATE_LIMITED over the rate).
	TakeLogin(ctx context.Context) error
	// MayAck returns nil when the request bears a token whose subject is
	// sub, the owner of user:<sub>.
	MayAck(ctx context.Context, sub string) error
	// MayAdmin returns nil when the request bears an API key allowed every
	// channel.
	MayAdmin(ctx context.Context) error
	// MayInspect returns nil when the request bears an API key whose
	// patterns cover channel.
	MayInspect(ctx context.Context, channel string) error
}

// errNoWeChat answers the WeChat fields of a server without WeChat apps.
func errNoWeChat(field string) *Error {
	return Errorf(CodeUnavailable, "%s: WeChat is not configured on this server (--wechat-app-id or wechat.apps in the config file)", field)
}

// weChat returns the Service and its access rules, or the error of field
// when WeChat is not configured.
func (r *Resolver) weChat(field string) (*wechat.Service, WeChatAccess, error) {
	if r.opts.WeChat == nil || r.opts.WeChatAccess == nil {
		return nil, nil, errNoWeChat(field)
	}
	return r.opts.WeChat, r.opts.WeChatAccess, nil
}

// notifyMessageID is the id a notification of the message at p is kept
// under: its epoch and offset, so that a channel whose history was reset
// (a new epoch, offsets counted again) never shows an old outcome.
func notifyMessageID(p pubsub.Position) string {
	return p.Epoch + ":" + strconv.FormatUint(p.Offset, 10)
}

// notifyOf returns the wechat.Notify of in for channel (MessageID unset).
func notifyOf(channel string, in *model.NotifyInput) wechat.Notify {
	n := wechat.Notify{Channel: channel, TemplateID: in.TemplateID, Data: in.Data}
	if in.AppID != nil {
		n.AppID = *in.AppID
	}
	if in.Page != nil {
		n.Page = *in.Page
	}
	if in.When != nil {
		n.When = wechat.When(*in.When)
	}
	return n
}

// checkNotify checks a send's or broadcast's notify for each of channels
// before anything is appended: a bad one refuses the send (BAD_USER_INPUT
// naming the field, or the key of data).
func (r *Resolver) checkNotify(channels []string, in *model.NotifyInput) error {
	if in == nil {
		return nil
	}
	if r.opts.WeChat == nil {
		return badInput("notify: WeChat is not configured on this server (--wechat-app-id or wechat.apps in the config file)")
	}
	for _, ch := range channels {
		n := notifyOf(ch, in)
		if err := r.opts.WeChat.CheckNotify(&n); err != nil {
			return Classify(err)
		}
	}
	return nil
}

// notifyTag is the pubsub tag of a message sent with notify. The message
// carries it from the append on, so every reader, on any node, knows from
// its first rendering that the message has a notification, though the
// notification is queued only once the append returned its position (the
// notification's id): until then Message.notification reads PENDING
// (wechat.Service.NotificationOf).
const notifyTag = "notify"

// tagNotify tags the requests of a send or broadcast with notify.
func tagNotify(reqs []pubsub.PublishRequest, in *model.NotifyInput) {
	if in == nil {
		return
	}
	for i := range reqs {
		reqs[i].Tag = notifyTag
	}
}

// notify queues the notifications of the messages a send or broadcast
// appended. A message is notified at most once (a duplicate send queues
// nothing new, and nothing for an original sent without notify); a
// failure to queue is the field's error, beside the messages, which were
// appended.
func (r *Resolver) notify(ctx context.Context, in *model.NotifyInput, res []pubsub.PublishResult) {
	if in == nil || r.opts.WeChat == nil {
		return
	}
	ctx = context.WithoutCancel(ctx)
	for i := range res {
		m := &res[i].Message
		if m.Tag != notifyTag {
			continue // a duplicate of a send without notify
		}
		n := notifyOf(m.Channel, in)
		n.MessageID = notifyMessageID(m.Position())
		if err := r.opts.WeChat.Notify(ctx, n); err != nil {
			e := *Classify(err)
			e.Message = "the message was sent, but its WeChat notification was not queued: " + e.Message +
				"; send again with the same idempotencyKey to queue it"
			graphql.AddError(ctx, &e)
			return
		}
	}
}

// notification resolves Message.notification: null, without a store
// read, for a message not sent with notify.
func (r *Resolver) notification(ctx context.Context, m *model.Message) (*model.Notification, error) {
	if r.opts.WeChat == nil || m.Tag != notifyTag || !strings.HasPrefix(m.Channel, "user:") {
		return nil, nil
	}
	c, err := pubsub.ParseCursor(m.Cursor)
	if err != nil {
		return nil, nil // cannot happen: the server made the cursor
	}
	p, ok := c.Position(m.Channel)
	if !ok {
		return nil, nil
	}
	o, err := r.opts.WeChat.NotificationOf(ctx, m.Channel, notifyMessageID(p), m.CreatedAt)
	if err != nil {
		return nil, Classify(err)
	}
	if o == nil {
		return nil, nil
	}
	out := &model.Notification{Status: model.NotificationStatus(o.Status), Attempts: o.Attempts, UpdatedAt: o.UpdatedAt}
	if o.Reason != "" {
		out.Reason = &o.Reason
	}
	if o.Errcode != 0 {
		out.Errcode = &o.Errcode
	}
	if o.Errmsg != "" {
		out.Errmsg = &o.Errmsg
	}
	return out, nil
}

// wechatLogin resolves Mutation.wechatLogin.
func (r *Resolver) wechatLogin(ctx context.Context, in model.WechatLoginInput) (*model.IssuedToken, error) {
	svc, acc, err := r.weChat("wechatLogin")
	if err != nil {
		return nil, err
	}
	if err := acc.TakeLogin(ctx); err != nil {
		return nil, Classify(err)
	}
	appID := ""
	if in.AppID != nil {
		appID = *in.AppID
	}
	sess, err := svc.Login(ctx, appID, in.Code)
	if err != nil {
		return nil, Classify(err)
	}
	if why := ReservedSubject(sess.Subject); why != "" {
		return nil, Errorf(CodeInternal, "wechatLogin: WeChat answered a subject pushgate cannot use: %s", why)
	}
	tok, err := acc.MintToken(ctx, TokenRequest{Subject: sess.Subject, Channels: sess.Channels, TTL: sess.TokenLifetime})
	if err != nil {
		return nil, Classify(err)
	}
	return &model.IssuedToken{Token: tok.Token, ExpiresAt: tok.ExpiresAt}, nil
}

// ack resolves Mutation.ack.
func (r *Resolver) ack(ctx context.Context, channel, cursor string) (bool, error) {
	svc, acc, err := r.weChat("ack")
	if err != nil {
		return false, err
	}
	sub, ok := strings.CutPrefix(channel, "user:")
	if !ok || !pubsub.ValidChannel(channel) {
		return false, badInput("channel: ack takes the caller's own user:<sub> channel, got %q", channel)
	}
	c, err := pubsub.ParseCursor(cursor)
	if err != nil {
		return false, badInput("cursor: %s", err.Error())
	}
	p, ok := c.Position(channel)
	if !ok || p.Offset == 0 {
		return false, badInput("cursor: it names no message of channel %q (use the message's cursor)", channel)
	}
	if err := acc.MayAck(ctx, sub); err != nil {
		return false, Classify(err)
	}
	if err := svc.Ack(ctx, channel, notifyMessageID(p)); err != nil {
		return false, Classify(err)
	}
	return true, nil
}

// wechatAccessToken resolves Query.wechatAccessToken.
func (r *Resolver) wechatAccessToken(ctx context.Context, appID *string) (string, error) {
	svc, acc, err := r.weChat("wechatAccessToken")
	if err != nil {
		return "", err
	}
	if err := acc.MayAdmin(ctx); err != nil {
		return "", Classify(err)
	}
	tok, err := svc.AccessToken(ctx, deref(appID))
	if err != nil {
		return "", Classify(err)
	}
	return tok.Token.Reveal(), nil
}

// wechatSubscription resolves Query.wechatSubscription.
func (r *Resolver) wechatSubscription(ctx context.Context, appID *string, subject, templateID string) (*model.WechatSubscription, error) {
	svc, acc, err := r.weChat("wechatSubscription")
	if err != nil {
		return nil, err
	}
	channel := "user:" + subject
	if !pubsub.ValidChannel(channel) {
		return nil, badInput("subject: %q does not make a valid user:<subject> channel", subject)
	}
	if err := acc.MayInspect(ctx, channel); err != nil {
		return nil, Classify(err)
	}
	q, err := svc.Subscription(ctx, deref(appID), subject, templateID)
	if err != nil {
		return nil, Classify(err)
	}
	out := &model.WechatSubscription{Known: q.Known, Accepted: q.Accepted, Count: q.Count}
	if !q.UpdatedAt.IsZero() {
		t := q.UpdatedAt
		out.UpdatedAt = &t
	}
	return out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// classifyWeChat maps a *wechat.Error to the *Error a client sees (its
// message names WeChat's errcode and never a secret), and an unknown app
// to BAD_USER_INPUT.
func classifyWeChat(err error) (*Error, bool) {
	if we, ok := errors.AsType[*wechat.Error](err); ok {
		return &Error{Code: we.Code, Message: we.Message, Err: err}, true
	}
	if errors.Is(err, wechat.ErrUnknownApp) {
		return &Error{Code: CodeBadUserInput, Message: "appId: no such WeChat app is configured", Err: err}, true
	}
	return nil, false
}
