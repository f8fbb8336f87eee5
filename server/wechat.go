package server

import (
	"context"
	"fmt"
	"net/http"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/limits"
	"github.com/pushgate/pushgate/wechat"
)

// WeChat is pushgate's WeChat side as the server runs it (docs/wechat.md):
// the wechat.Service, and the record of who is online that decides its
// OFFLINE notifications. The caller makes it (NewWeChat), hands it to
// New in Config.WeChat, starts it, and closes it after the server.
//
// Online is its own presence store, not the namespaces' presence: that
// one counts only namespaces with presence on and publishes join and
// leave events, while a notification needs to know, for every user:<sub>
// channel, whether <sub> itself holds a live subscription (WebSocket, SSE
// or graphql-sse; long-polls come and go with each request and are not
// counted) on any node. It publishes nothing.
type WeChat struct {
	svc    *wechat.Service
	online pubsub.Presence
}

// WeChatOptions are NewWeChat's inputs.
type WeChatOptions struct {
	// Config names the apps; it must have at least one.
	Config wechat.Config
	// Store is shared by the nodes (wechat.NewRedisStore); nil: in memory.
	Store wechat.Store
	// Online records live subscriptions to user:<sub> channels:
	// pubsub.NewRedisPresence under its own prefix when several nodes share
	// Redis; nil: this node's memory (pubsub.NewMemoryPresence).
	Online pubsub.Presence
	// Metrics, when set, gets the WeChat metrics in its registry.
	Metrics *Metrics
	Logger  zerolog.Logger
	// HTTPClient and Backoff replace the Service's (tests).
	HTTPClient *http.Client
	Backoff    wechat.Backoff
}

// NewWeChat returns the WeChat side of opts. It starts nothing: call Start.
func NewWeChat(opts WeChatOptions) (*WeChat, error) {
	w := &WeChat{online: opts.Online}
	if w.online == nil {
		w.online = pubsub.NewMemoryPresence(nil)
	}
	var obs wechat.Observer
	if opts.Metrics != nil {
		m, err := wechat.NewMetrics(opts.Metrics.Registry())
		if err != nil {
			return nil, fmt.Errorf("wechat metrics: %w", err)
		}
		obs = m
	}
	svc, err := wechat.New(opts.Config, wechat.Options{
		Store: opts.Store, Online: w.isOnline, Logger: opts.Logger, Observer: obs,
		HTTPClient: opts.HTTPClient, Backoff: opts.Backoff,
	})
	if err != nil {
		return nil, err
	}
	w.svc = svc
	return w, nil
}

// Service returns the wechat.Service.
func (w *WeChat) Service() *wechat.Service { return w.svc }

// Start runs the notification workers.
func (w *WeChat) Start() { w.svc.Start() }

// Close stops the workers and the online record.
func (w *WeChat) Close() error {
	err := w.svc.Close()
	if cerr := w.online.Close(); err == nil {
		err = cerr
	}
	return err
}

// isOnline is the Service's wechat.Online: sub holds a live subscription
// to user:<sub> on some node.
func (w *WeChat) isOnline(ctx context.Context, _, sub string) (bool, error) {
	st, err := w.online.Get(ctx, "user:"+sub)
	if err != nil {
		return false, err
	}
	for _, s := range st.Subjects {
		if s == sub {
			return true, nil
		}
	}
	return false, nil
}

// join records subject's subscription of the user:<subject> channel among
// channels (none when it is not one of them); leave ends it.
func (w *WeChat) join(ctx context.Context, subject string, channels []string, log zerolog.Logger) (leave func()) {
	own := "user:" + subject
	for _, ch := range channels {
		if ch != own {
			continue
		}
		l, err := w.online.Join(ctx, ch, subject)
		if err != nil {
			// Best effort: the user counts as offline, and may get a
			// notification for a message they saw.
			log.Warn().Err(err).Msg("wechat: online join failed")
			return func() {}
		}
		return l
	}
	return func() {}
}

// wechatAccess is graph.WeChatAccess over the server's access rules.
type wechatAccess struct {
	auth *access.Auth
	lim  *limits.Limiter
}

var _ graph.WeChatAccess = wechatAccess{}

func (a wechatAccess) MintToken(_ context.Context, req graph.TokenRequest) (graph.IssuedToken, error) {
	if !a.auth.CanMint() {
		return graph.IssuedToken{}, graph.Errorf(graph.CodeUnavailable, "wechatLogin is not available: the server has no "+
			"JWT secret to sign tokens with (set --jwt-secret, PUSHGATE_JWT_SECRET or jwt.secret in the config file)")
	}
	tok, err := a.auth.Mint(req)
	if err != nil {
		return graph.IssuedToken{}, &graph.Error{Code: graph.CodeInternal, Message: "internal error", Err: err}
	}
	return tok, nil
}

func (a wechatAccess) TakeLogin(ctx context.Context) error {
	st := requestOf(ctx)
	if st == nil {
		return nil
	}
	return a.lim.TakeWechatLogin(ctx, st.client)
}

func (a wechatAccess) MayAck(ctx context.Context, sub string) error {
	cred := a.auth.Credential(ctx)
	if cred == "" {
		return graph.Errorf(graph.CodeUnauthenticated, "ack requires the user's token")
	}
	if _, ok := a.auth.Key(cred); ok {
		return graph.Errorf(graph.CodeForbidden, "ack is for the user's client, with the user's token, not for API keys")
	}
	claims, err := a.auth.Verify(ctx, cred)
	if err != nil {
		return graph.Errorf(graph.CodeUnauthenticated, "invalid token")
	}
	if claims.Subject != sub {
		return graph.Errorf(graph.CodeForbidden, "ack: user:%s is not the token holder's own channel", sub)
	}
	return nil
}

func (a wechatAccess) MayAdmin(ctx context.Context) error {
	k, err := a.apiKey(ctx)
	if err != nil {
		return err
	}
	if !k.EveryChannel() {
		return graph.Errorf(graph.CodeForbidden, "wechatAccessToken is for API keys allowed every channel; key %q is not", k.Name())
	}
	return nil
}

func (a wechatAccess) MayInspect(ctx context.Context, channel string) error {
	k, err := a.apiKey(ctx)
	if err != nil {
		return err
	}
	if !k.Covers(channel) {
		return graph.Errorf(graph.CodeForbidden, "wechatSubscription: key %q may not send to %s", k.Name(), channel)
	}
	return nil
}

func (a wechatAccess) apiKey(ctx context.Context) (*access.Key, error) {
	cred := a.auth.Credential(ctx)
	if cred == "" {
		return nil, graph.Errorf(graph.CodeUnauthenticated, "an API key is required: Authorization: Bearer <key>")
	}
	k, ok := a.auth.Key(cred)
	if !ok {
		if _, err := a.auth.Verify(ctx, cred); err == nil {
			return nil, graph.Errorf(graph.CodeForbidden, "a subscriber token cannot read WeChat state: use an API key")
		}
		return nil, graph.Errorf(graph.CodeUnauthenticated, "invalid API key")
	}
	return k, nil
}
