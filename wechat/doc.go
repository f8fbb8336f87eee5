// Package wechat is pushgate's WeChat side: login by wx.login code, one
// access token shared by every node, subscribe messages (订阅消息) for users
// who are not there to see a message, and WeChat's message push (消息推送)
// that keeps a quota ledger.
//
// It owns the calls to WeChat's APIs (code2Session, getStableAccessToken,
// subscribeMessage.send), the value rules of subscribe-message data, the
// notification queue and its outcomes, the ledger, and the handler of
// /wechat/events/<appId>. It depends on a Store (NewMemoryStore, or
// NewRedisStore on go-redis), on an Online function the server gives it
// (presence), and on nothing else of pushgate: it does not import pubsub,
// server or graph, mints no token and reads no channel. The server wires
// it in a few calls:
//
//	svc, err := wechat.New(cfg.WeChat, wechat.Options{
//		Store:    wechat.NewRedisStore(redisClient, "pushgate:"), // or nil: in memory
//		Online:   func(ctx context.Context, app, sub string) (bool, error) { /* presence of user:<sub> */ },
//		Logger:   log,
//		Observer: metrics, // wechat.NewMetrics(registry)
//	})
//	svc.Start()
//	defer svc.Close()
//
//	mux.Handle("/wechat/events/{appId}", svc.EventsHandler())
//
//	// Mutation.wechatLogin: sess.Subject, sess.Channels, sess.TokenLifetime
//	// are the token's sub, patterns and TTL.
//	sess, err := svc.Login(ctx, in.AppID, in.Code)
//
//	// SendInput.notify, before the append (a bad notify appends nothing),
//	// then after it with the message's id:
//	n := wechat.Notify{AppID: ..., Channel: ch, TemplateID: ..., Data: ..., Page: ..., When: ...}
//	if err := svc.CheckNotify(&n); err != nil { ... }
//	msg := broker.Publish(...)  // marked with notify, so readers know at once
//	n.MessageID = id(msg)
//	err = svc.Notify(ctx, n)
//
//	svc.Ack(ctx, channel, messageID)                  // Mutation.ack
//	svc.NotificationOf(ctx, channel, messageID, at)   // Message.notification of a marked message
//	svc.AccessToken(ctx, appID)                       // Query.wechatAccessToken
//	svc.Subscription(ctx, appID, subject, templateID) // Query.wechatSubscription
//
// Every error a client may see is an *Error whose Code is one of pushgate's
// error codes (BAD_USER_INPUT, FORBIDDEN, RATE_LIMITED, UNAVAILABLE,
// INTERNAL) and whose Message names WeChat's errcode when there is one.
//
// # Delivery
//
// A notification is recorded (PENDING) and queued once per (channel,
// message id). OFFLINE and UNSEEN ones wait out the app's grace period,
// then are skipped when the user acknowledged the message (Ack) or, for
// OFFLINE, is online; ALWAYS ones go at once. A user the ledger knows to
// have no quota is SKIPPED (NO_QUOTA) without a call. Before each call the
// record is marked in flight; WeChat's answer ends it: SENT, REFUSED
// (43101), FAILED (47003, 40003, 40037, 41030, another errcode, or the max
// age passed), or PENDING again with a backoff for -1, 45009, 45011, a 5xx
// or a request that could not be sent. A request that went out without an
// answer (a timeout, a reset), or one whose node died before recording the
// answer, is UNKNOWN and never sent again, unless the app opts into
// at-least-once. A node that dies holding a notification it had not begun
// loses nothing: another node claims it after ClaimIdle.
//
// # Secrets
//
// App secrets, push tokens, AES keys and access tokens are Secrets: they
// print as "[redacted]", and no error, log line or metric of this package
// holds one (errors of net/http, which name the request URL and so the
// secret or token in its query, are stripped of it).
package wechat
