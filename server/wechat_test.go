package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/internal/logbuf"
	"github.com/pushgate/pushgate/internal/wechattest"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/limits"
	"github.com/pushgate/pushgate/wechat"
)

// The WeChat side wired into the server, end to end over loopback: a real
// pushgate handler, the wechattest stand-in for WeChat's API, real SSE
// subscriptions for presence, and WeChat's message push signed as WeChat
// signs it.

const (
	wxApp      = "wx0123456789abcdef"
	wxSecret   = "wx-app-secret-0123456789abcdef"
	wxPush     = "pushToken123"
	wxAESKey   = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
	wxTemplate = "tmplOrderShipped"
)

type wxEnv struct {
	*env
	wx  *wechattest.Server
	log *logbuf.Buffer
}

// startWeChat serves pushgate with one WeChat app on the stand-in, with a
// short grace and poll interval so that a notification is decided within
// a test's deadline.
func startWeChat(t *testing.T, grace time.Duration) *wxEnv {
	t.Helper()
	return startWeChatWith(t, grace, func(*server.Config) {})
}

// startWeChatWith is startWeChat with the server's configuration changed
// by edit first.
func startWeChatWith(t *testing.T, grace time.Duration, edit func(*server.Config)) *wxEnv {
	t.Helper()
	return startWeChatOpts(t, grace, wxOptions{server: edit})
}

// wxOptions change startWeChat's setup.
type wxOptions struct {
	store  wechat.Store            // the WeChat state (nil: in memory)
	app    func(*wechat.AppConfig) // edits the app's configuration
	server func(*server.Config)    // edits the server's configuration
}

// startWeChatOpts is startWeChat with the changes of o.
func startWeChatOpts(t *testing.T, grace time.Duration, o wxOptions) *wxEnv {
	t.Helper()
	wx := wechattest.New(t)
	wx.AddApp(wxApp, wxSecret)
	wx.AddTemplate(wxApp, wxTemplate, false, "thing1", "amount2")
	log := &logbuf.Buffer{}
	cfg := testConfig()
	metrics := server.NewMetrics()
	app := wechat.AppConfig{
		AppID: wxApp, AppSecret: wxSecret, PushToken: wxPush, AESKey: wxAESKey,
		APIURL: wx.URL, OfflineGrace: grace, NotifyMaxAge: time.Minute,
		LoginChannels: []string{"room:{sub}:*"},
	}
	if o.app != nil {
		o.app(&app)
	}
	w, err := server.NewWeChat(server.WeChatOptions{
		Config:  wechat.Config{PollInterval: 20 * time.Millisecond, Apps: []wechat.AppConfig{app}},
		Store:   o.store,
		Metrics: metrics,
		Logger:  zerolog.New(log),
		Backoff: func(int) time.Duration { return 10 * time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	w.Start()
	t.Cleanup(func() { _ = w.Close() })
	cfg.WeChat = w
	cfg.Metrics = metrics
	if o.server != nil {
		o.server(&cfg)
	}
	e := startEnvLog(t, cfg, memoryBroker(t, pubsub.Options{}), log)
	return &wxEnv{env: e, wx: wx, log: log}
}

// login exchanges a fresh code of openid for a pushgate token.
func (e *wxEnv) login(t *testing.T, openid string) string {
	t.Helper()
	code := "code-" + openid
	e.wx.AddCode(wxApp, code, wechattest.User{OpenID: openid, SessionKey: "session-key-" + openid})
	var out struct {
		WechatLogin struct{ Token string }
	}
	e.do(t, "", `mutation($c: String!) { wechatLogin(input: {code: $c}) { token expiresAt } }`,
		map[string]any{"c": code}).decode(t, &out)
	if out.WechatLogin.Token == "" {
		t.Fatal("wechatLogin: no token")
	}
	return out.WechatLogin.Token
}

type sentMessage struct {
	ID     string `json:"id"`
	Cursor string `json:"cursor"`
}

// sendNotify sends to user:<openid> with notify when, by the API key.
func (e *wxEnv) sendNotify(t *testing.T, openid, when string, data any) (sentMessage, gqlResponse) {
	t.Helper()
	res := e.do(t, testKey, `mutation($in: SendInput!) { send(input: $in) { message { id cursor } } }`, map[string]any{
		"in": map[string]any{
			"channel": "user:" + openid, "data": map[string]any{"text": "shipped"},
			"notify": map[string]any{"templateId": wxTemplate, "data": data, "page": "pages/order?id=1", "when": when},
		},
	})
	var out struct {
		Send *struct{ Message sentMessage }
	}
	if len(res.Errors) == 0 {
		res.decode(t, &out)
		return out.Send.Message, res
	}
	return sentMessage{}, res
}

var goodData = map[string]any{"thing1": map[string]any{"value": "Your order shipped"}, "amount2": map[string]any{"value": "¥9.90"}}

type notification struct {
	Status   string
	Reason   *string
	Errcode  *int
	Attempts int
}

// notificationOf reads Message.notification of the newest message of
// user:<openid> through history.
func (e *wxEnv) notificationOf(t *testing.T, openid string) *notification {
	t.Helper()
	var out struct {
		History struct {
			Nodes []struct{ Notification *notification }
		}
	}
	e.do(t, testKey, `query($c: String!) { history(channel: $c, last: 1) { nodes { notification { status reason errcode attempts } } } }`,
		map[string]any{"c": "user:" + openid}).decode(t, &out)
	if len(out.History.Nodes) != 1 {
		t.Fatalf("history of user:%s: %d messages", openid, len(out.History.Nodes))
	}
	return out.History.Nodes[0].Notification
}

// waitStatus waits until the newest message's notification is final.
func (e *wxEnv) waitStatus(t *testing.T, openid string) *notification {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		n := e.notificationOf(t, openid)
		if n == nil {
			t.Fatal("the message has no notification")
		}
		if n.Status != "PENDING" {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("notification still PENDING after %v: %+v", waitTimeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sentTo(wx *wechattest.Server, openid string) int {
	n := 0
	for _, m := range wx.Sent() {
		if m.ToUser == openid {
			n++
		}
	}
	return n
}

func TestWeChatLoginTokenSubscribes(t *testing.T) {
	e := startWeChat(t, time.Second)
	tok := e.login(t, "oUserLogin1")
	// The token reads user:<openid> and the app's login channels...
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, _ := openSSE(t, ctx, e.url+"/events?channel=user:oUserLogin1&channel=room:oUserLogin1:chat&token="+url.QueryEscape(tok), nil)
	e.send(t, "user:oUserLogin1", map[string]any{"hello": 1})
	if ev := nextSSE(t, events); !strings.Contains(ev.data, `"hello":1`) {
		t.Fatalf("SSE event %+v", ev)
	}
	// ...and no one else's.
	res := e.do(t, tok, `{ history(channel: "user:someoneElse") { nodes { id } } }`, nil)
	if c := res.code(t); c != "FORBIDDEN" {
		t.Fatalf("another user's channel: %s", c)
	}
	// A code is single use: WeChat's 40163 is BAD_USER_INPUT naming it.
	res = e.do(t, "", `mutation { wechatLogin(input: {code: "code-oUserLogin1"}) { token } }`, nil)
	if c := res.code(t); c != "BAD_USER_INPUT" || !strings.Contains(res.Errors[0].Message, "40163") {
		t.Fatalf("used code: %s %q", c, res.Errors[0].Message)
	}
}

// jwtSubject returns the sub claim of a token (not verified: the server
// made it).
func jwtSubject(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct{ Sub string }
	if err != nil || json.Unmarshal(raw, &claims) != nil {
		t.Fatalf("JWT claims %q: %v", parts[1], err)
	}
	return claims.Sub
}

// TestWeChatLoginUnionID: an app with subject unionid gets tokens whose sub
// is the user's unionid (user:<unionid> readable, user:<openid> not), and
// a notification to user:<unionid> reaches the openid the login
// remembered. A user WeChat answers no unionid for gets no token:
// INTERNAL naming the missing unionid (the app is misconfigured).
func TestWeChatLoginUnionID(t *testing.T) {
	e := startWeChatOpts(t, time.Second, wxOptions{app: func(a *wechat.AppConfig) { a.Subject = wechat.SubjectUnionID }})
	e.wx.AddCode(wxApp, "code-u1", wechattest.User{OpenID: "oUnion1", UnionID: "uUnion1", SessionKey: "sk-u1"})
	var out struct{ WechatLogin struct{ Token string } }
	e.do(t, "", `mutation { wechatLogin(input: {code: "code-u1"}) { token } }`, nil).decode(t, &out)
	tok := out.WechatLogin.Token
	if sub := jwtSubject(t, tok); sub != "uUnion1" {
		t.Fatalf("token sub %q, want the unionid uUnion1", sub)
	}
	if res := e.do(t, tok, `{ history(channel: "user:uUnion1") { nodes { id } } }`, nil); len(res.Errors) > 0 {
		t.Fatalf("user:<unionid> with its token: %+v", res.Errors)
	}
	if c := e.do(t, tok, `{ history(channel: "user:oUnion1") { nodes { id } } }`, nil).code(t); c != "FORBIDDEN" {
		t.Fatalf("user:<openid> with the unionid's token: %s, want FORBIDDEN", c)
	}
	e.wx.Accept(wxApp, "oUnion1", wxTemplate, 1) // WeChat's quota, by openid
	if _, res := e.sendNotify(t, "uUnion1", "ALWAYS", goodData); len(res.Errors) > 0 {
		t.Fatalf("send: %+v", res.Errors)
	}
	if n := e.waitStatus(t, "uUnion1"); n.Status != "SENT" {
		t.Fatalf("notification %+v, want SENT", n)
	}
	if sentTo(e.wx, "oUnion1") != 1 || sentTo(e.wx, "uUnion1") != 0 {
		t.Fatalf("sent to the openid %d, to the unionid %d; want 1 and 0", sentTo(e.wx, "oUnion1"), sentTo(e.wx, "uUnion1"))
	}

	e.wx.AddCode(wxApp, "code-nounion", wechattest.User{OpenID: "oNoUnion", SessionKey: "sk-n"})
	res := e.do(t, "", `mutation { wechatLogin(input: {code: "code-nounion"}) { token } }`, nil)
	if c := res.code(t); c != "INTERNAL" || !strings.Contains(res.Errors[0].Message, "no unionid") {
		t.Fatalf("no unionid: %s %q, want INTERNAL naming the missing unionid", c, res.Errors[0].Message)
	}
	if string(res.Data) != "null" && len(res.Data) != 0 {
		t.Fatalf("no unionid: data %s, want none", res.Data)
	}
}

// TestWeChatKeyScope: an API key limited to some channels reads the quota
// ledger and sends with notify only for users its patterns cover; outside
// them both are FORBIDDEN, and the refused send appends and queues
// nothing.
func TestWeChatKeyScope(t *testing.T) {
	const scoped = "scoped-key-secret"
	e := startWeChatWith(t, time.Second, func(c *server.Config) {
		c.APIKeys = append(c.APIKeys, access.APIKey{Name: "scoped", Secret: scoped, Channels: []string{"user:oIn*"}})
	})
	ledger := `query($s: String!) { wechatSubscription(subject: $s, templateId: "` + wxTemplate + `") { known } }`
	if res := e.do(t, scoped, ledger, map[string]any{"s": "oIn1"}); len(res.Errors) > 0 {
		t.Fatalf("wechatSubscription inside the key's scope: %+v", res.Errors)
	}
	if c := e.do(t, scoped, ledger, map[string]any{"s": "oOut1"}).code(t); c != "FORBIDDEN" {
		t.Fatalf("wechatSubscription outside the key's scope: %s, want FORBIDDEN", c)
	}
	send := func(openid string) gqlResponse {
		return e.do(t, scoped, `mutation($in: SendInput!) { send(input: $in) { message { id } } }`, map[string]any{
			"in": map[string]any{"channel": "user:" + openid, "data": map[string]any{"text": "shipped"},
				"notify": map[string]any{"templateId": wxTemplate, "data": goodData, "when": "ALWAYS"}},
		})
	}
	e.login(t, "oIn1") // WeChat knows the user
	e.wx.Accept(wxApp, "oIn1", wxTemplate, 1)
	if res := send("oIn1"); len(res.Errors) > 0 {
		t.Fatalf("send with notify inside the key's scope: %+v", res.Errors)
	}
	if c := send("oOut1").code(t); c != "FORBIDDEN" {
		t.Fatalf("send with notify outside the key's scope: %s, want FORBIDDEN", c)
	}
	if n := e.waitStatus(t, "oIn1"); n.Status != "SENT" {
		t.Fatalf("notification inside the scope: %+v, want SENT", n)
	}
	var hist struct {
		History struct{ Nodes []struct{ ID string } }
	}
	e.do(t, testKey, `{ history(channel: "user:oOut1") { nodes { id } } }`, nil).decode(t, &hist)
	if len(hist.History.Nodes) != 0 || sentTo(e.wx, "oOut1") != 0 {
		t.Fatalf("the refused send appended %d messages and sent %d notifications", len(hist.History.Nodes), sentTo(e.wx, "oOut1"))
	}
}

func TestWeChatLoginErrcodes(t *testing.T) {
	e := startWeChat(t, time.Second)
	for _, tc := range []struct {
		errcode int
		status  int
		code    string
	}{
		{errcode: 40029, code: "BAD_USER_INPUT"},
		{errcode: 45011, code: "RATE_LIMITED"},
		{errcode: 40226, code: "FORBIDDEN"},
		{errcode: -1, code: "UNAVAILABLE"},
		{status: http.StatusBadGateway, code: "UNAVAILABLE"},
	} {
		if tc.status != 0 {
			e.wx.InjectHTTP(wechattest.APICode2Session, tc.status, 1)
		} else {
			e.wx.Inject(wechattest.APICode2Session, tc.errcode, 1)
		}
		res := e.do(t, "", `mutation { wechatLogin(input: {code: "any-code"}) { token } }`, nil)
		if c := res.code(t); c != tc.code {
			t.Errorf("errcode %d / HTTP %d: %s (%s), want %s", tc.errcode, tc.status, c, res.Errors[0].Message, tc.code)
		}
		if tc.errcode != 0 && !strings.Contains(res.Errors[0].Message, jsonInt(tc.errcode)) {
			t.Errorf("errcode %d: the message %q does not name it", tc.errcode, res.Errors[0].Message)
		}
	}
}

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestWeChatNotifyOfflineUserOnce(t *testing.T) {
	e := startWeChat(t, 200*time.Millisecond)
	e.login(t, "oOffline1")
	e.wx.Accept(wxApp, "oOffline1", wxTemplate, 1) // WeChat's quota for the user
	msg, res := e.sendNotify(t, "oOffline1", "OFFLINE", goodData)
	if len(res.Errors) > 0 {
		t.Fatalf("send: %+v", res.Errors)
	}
	if msg.ID != "1" {
		t.Fatalf("message id %q", msg.ID)
	}
	n := e.waitStatus(t, "oOffline1")
	if n.Status != "SENT" || n.Attempts != 1 {
		t.Fatalf("notification %+v, want SENT after 1 attempt", n)
	}
	if got := sentTo(e.wx, "oOffline1"); got != 1 {
		t.Fatalf("%d subscribe messages, want 1", got)
	}
	m := e.wx.Sent()[0]
	if m.TemplateID != wxTemplate || m.Page != "pages/order?id=1" || m.Data["thing1"] != "Your order shipped" {
		t.Fatalf("subscribe message %+v", m)
	}
	// The metrics count it, on the server's /metrics.
	body := getBody(t, e.url+"/metrics")
	for _, want := range []string{`pushgate_wechat_notifications_total{status="SENT"} 1`,
		`pushgate_wechat_api_requests_total{api="subscribe_send",result="ok"} 1`, `pushgate_wechat_token_refreshes_total 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestWeChatNotifyOnlineUserSkipped(t *testing.T) {
	e := startWeChat(t, 300*time.Millisecond)
	tok := e.login(t, "oOnline1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, _ := openSSE(t, ctx, e.url+"/events?channel=user:oOnline1&token="+url.QueryEscape(tok), nil)
	if _, res := e.sendNotify(t, "oOnline1", "OFFLINE", goodData); len(res.Errors) > 0 {
		t.Fatalf("send: %+v", res.Errors)
	}
	nextSSE(t, events)
	n := e.waitStatus(t, "oOnline1")
	if n.Status != "SKIPPED" || n.Reason == nil || *n.Reason != "ONLINE" {
		t.Fatalf("notification %+v, want SKIPPED ONLINE", n)
	}
	if got := sentTo(e.wx, "oOnline1"); got != 0 {
		t.Fatalf("%d subscribe messages to an online user", got)
	}
}

func TestWeChatNotifyUnseenAcked(t *testing.T) {
	e := startWeChat(t, 500*time.Millisecond)
	tok := e.login(t, "oUnseen1")
	msg, res := e.sendNotify(t, "oUnseen1", "UNSEEN", goodData)
	if len(res.Errors) > 0 {
		t.Fatalf("send: %+v", res.Errors)
	}
	// Only the owner's token may ack.
	other := e.login(t, "oUnseen2")
	if c := e.do(t, other, `mutation($c: String!) { ack(channel: "user:oUnseen1", cursor: $c) }`,
		map[string]any{"c": msg.Cursor}).code(t); c != "FORBIDDEN" {
		t.Fatalf("another user's ack: %s", c)
	}
	var out struct{ Ack bool }
	e.do(t, tok, `mutation($c: String!) { ack(channel: "user:oUnseen1", cursor: $c) }`,
		map[string]any{"c": msg.Cursor}).decode(t, &out)
	if !out.Ack {
		t.Fatal("ack answered false")
	}
	n := e.waitStatus(t, "oUnseen1")
	if n.Status != "SKIPPED" || n.Reason == nil || *n.Reason != "ACKED" {
		t.Fatalf("notification %+v, want SKIPPED ACKED", n)
	}
	if got := sentTo(e.wx, "oUnseen1"); got != 0 {
		t.Fatalf("%d subscribe messages for an acknowledged message", got)
	}
}

func TestWeChatNotifyBadDataAppendsNothing(t *testing.T) {
	e := startWeChat(t, time.Second)
	_, res := e.sendNotify(t, "oBad1", "ALWAYS", map[string]any{"thing1": map[string]any{"value": strings.Repeat("长", 21)}})
	if c := res.code(t); c != "BAD_USER_INPUT" || !strings.Contains(res.Errors[0].Message, "thing1") {
		t.Fatalf("bad data: %s %q", c, res.Errors[0].Message)
	}
	// notify only on user:<sub> channels, and in a broadcast too.
	res = e.do(t, testKey, `mutation { broadcast(input: {channels: ["user:oBad1", "orders:1"], data: 1,
		notify: {templateId: "`+wxTemplate+`", data: {thing1: {value: "x"}}}}) { messages { id } } }`, nil)
	if c := res.code(t); c != "BAD_USER_INPUT" {
		t.Fatalf("broadcast notify to orders:1: %s", c)
	}
	for _, ch := range []string{"user:oBad1", "orders:1"} {
		if ids := e.ids(t, ch); len(ids) != 0 {
			t.Fatalf("%s has messages %v after refused sends", ch, ids)
		}
	}
}

func TestWeChatMessagePushLedger(t *testing.T) {
	e := startWeChat(t, 100*time.Millisecond)
	p := &wechattest.Pusher{URL: e.url + "/wechat/events/" + wxApp, AppID: wxApp, Token: wxPush, AESKey: wxAESKey}
	ctx := context.Background()
	r, err := p.CheckURL(ctx, "echo123", wechattest.Tamper{})
	if err != nil || r.Status != http.StatusOK || r.Body != "echo123" {
		t.Fatalf("URL check: %+v %v", r, err)
	}
	// The user rejects the template: the ledger says no quota, and a
	// notification is skipped without a call to WeChat.
	r, err = p.Push(ctx, wechattest.Event{Name: "subscribe_msg_popup_event", OpenID: "oPush1",
		Items: []wechattest.Item{{TemplateID: wxTemplate, Status: "reject"}}}, wechattest.Tamper{})
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("push: %+v %v", r, err)
	}
	var q struct {
		WechatSubscription struct {
			Known, Accepted bool
			Count           int
		}
	}
	e.do(t, testKey, `query($s: String!, $t: String!) { wechatSubscription(subject: $s, templateId: $t) { known accepted count } }`,
		map[string]any{"s": "oPush1", "t": wxTemplate}).decode(t, &q)
	if !q.WechatSubscription.Known || q.WechatSubscription.Accepted || q.WechatSubscription.Count != 0 {
		t.Fatalf("ledger after a reject: %+v", q.WechatSubscription)
	}
	if _, res := e.sendNotify(t, "oPush1", "ALWAYS", goodData); len(res.Errors) > 0 {
		t.Fatalf("send: %+v", res.Errors)
	}
	n := e.waitStatus(t, "oPush1")
	if n.Status != "SKIPPED" || n.Reason == nil || *n.Reason != "NO_QUOTA" {
		t.Fatalf("notification %+v, want SKIPPED NO_QUOTA", n)
	}
	if calls := e.wx.Calls(wechattest.APISubscribeSend); calls != 0 {
		t.Fatalf("%d calls to subscribeMessage.send for a user without quota", calls)
	}
	// A bad signature changes nothing.
	r, _ = p.Push(ctx, wechattest.Event{Name: "subscribe_msg_popup_event", OpenID: "oPush1",
		Items: []wechattest.Item{{TemplateID: wxTemplate, Status: "accept"}}}, wechattest.Tamper{BadSignature: true})
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("bad signature: %d", r.Status)
	}
	e.do(t, testKey, `query($s: String!, $t: String!) { wechatSubscription(subject: $s, templateId: $t) { known accepted count } }`,
		map[string]any{"s": "oPush1", "t": wxTemplate}).decode(t, &q)
	if q.WechatSubscription.Accepted || q.WechatSubscription.Count != 0 {
		t.Fatalf("ledger changed by a refused push: %+v", q.WechatSubscription)
	}
	// A signed acceptance adds one.
	r, err = p.Push(ctx, wechattest.Event{Name: "subscribe_msg_popup_event", OpenID: "oPush1",
		Items: []wechattest.Item{{TemplateID: wxTemplate, Status: "accept"}}}, wechattest.Tamper{})
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("push: %+v %v", r, err)
	}
	e.do(t, testKey, `query($s: String!, $t: String!) { wechatSubscription(subject: $s, templateId: $t) { known accepted count } }`,
		map[string]any{"s": "oPush1", "t": wxTemplate}).decode(t, &q)
	if !q.WechatSubscription.Accepted || q.WechatSubscription.Count != 1 {
		t.Fatalf("ledger after an accept: %+v", q.WechatSubscription)
	}
	// wechatSubscription is for API keys covering user:<subject>.
	if c := e.do(t, "", `{ wechatSubscription(subject: "oPush1", templateId: "`+wxTemplate+`") { count } }`, nil).code(t); c != "UNAUTHENTICATED" {
		t.Fatalf("wechatSubscription without credentials: %s", c)
	}
}

func TestWeChatAdminFieldsAndSecrets(t *testing.T) {
	e := startWeChat(t, time.Second)
	tok := e.login(t, "oAdmin1")
	// The access token is for API keys allowed every channel only.
	if c := e.do(t, tok, `{ wechatAccessToken }`, nil).code(t); c != "FORBIDDEN" {
		t.Fatalf("wechatAccessToken with a user token: %s", c)
	}
	var out struct{ WechatAccessToken string }
	e.do(t, testKey, `{ wechatAccessToken }`, nil).decode(t, &out)
	if out.WechatAccessToken == "" || out.WechatAccessToken != e.wx.AccessToken(wxApp) {
		t.Fatalf("wechatAccessToken %q, WeChat's is %q", out.WechatAccessToken, e.wx.AccessToken(wxApp))
	}
	// A failing token fetch names no secret either.
	e.wx.Inject(wechattest.APICode2Session, 40013, 1)
	e.do(t, "", `mutation { wechatLogin(input: {code: "x"}) { token } }`, nil)
	logs := e.log.String()
	if logs == "" {
		t.Fatal("no log captured")
	}
	for name, secret := range map[string]string{"app secret": wxSecret, "push token": wxPush, "AES key": wxAESKey,
		"access token": out.WechatAccessToken, "session key": "session-key-oAdmin1"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the %s is in the log", name)
		}
	}
	if strings.Contains(getBody(t, e.url+"/metrics"), wxSecret) {
		t.Error("the app secret is in the metrics")
	}
}

func TestWeChatNotConfigured(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	for _, q := range []string{
		`mutation { wechatLogin(input: {code: "x"}) { token } }`,
		`{ wechatAccessToken }`,
		`{ wechatSubscription(subject: "o1", templateId: "t") { known } }`,
		`mutation { ack(channel: "user:o1", cursor: "x") }`,
	} {
		res := e.do(t, testKey, q, nil)
		if c := res.code(t); c != "UNAVAILABLE" || !strings.Contains(res.Errors[0].Message, "WeChat is not configured") {
			t.Errorf("%s: %s %q", q, c, res.Errors[0].Message)
		}
	}
	res := e.do(t, testKey, `mutation { send(input: {channel: "user:o1", data: 1, notify: {templateId: "t", data: {}}}) { message { id } } }`, nil)
	if c := res.code(t); c != "BAD_USER_INPUT" {
		t.Fatalf("notify without WeChat: %s", c)
	}
	if ids := e.ids(t, "user:o1"); len(ids) != 0 {
		t.Fatalf("a refused notify appended %v", ids)
	}
	// No message push route.
	res2, err := http.Get(e.url + "/wechat/events/" + wxApp)
	if err != nil {
		t.Fatal(err)
	}
	res2.Body.Close()
	if res2.StatusCode != http.StatusNotFound {
		t.Fatalf("/wechat/events without WeChat: %d", res2.StatusCode)
	}
	// Message.notification is null.
	e.send(t, "user:o1", 1)
	var out struct {
		History struct {
			Nodes []struct{ Notification *notification }
		}
	}
	e.do(t, testKey, `{ history(channel: "user:o1") { nodes { notification { status } } } }`, nil).decode(t, &out)
	if len(out.History.Nodes) != 1 || out.History.Nodes[0].Notification != nil {
		t.Fatalf("history %+v", out.History.Nodes)
	}
}

func getBody(t *testing.T, u string) string {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// gatedStore holds every notification's queueing (Queue.Put) until the
// test opens the gate: the message of a send with notify is appended and
// delivered, its notification not yet queued.
type gatedStore struct {
	wechat.Store
	entered chan struct{} // a Put is waiting at the gate
	open    chan struct{}
	once    sync.Once
}

// release opens the gate (once; a test's cleanup opens it too, so that a
// failed test does not leave a send waiting at it).
func (g *gatedStore) release() { g.once.Do(func() { close(g.open) }) }

func newGatedStore() *gatedStore {
	return &gatedStore{Store: wechat.NewMemoryStore(), entered: make(chan struct{}, 16), open: make(chan struct{})}
}

func (g *gatedStore) Queue(app string) wechat.Queue { return gatedQueue{g.Store.Queue(app), g} }

type gatedQueue struct {
	wechat.Queue
	g *gatedStore
}

func (q gatedQueue) Put(ctx context.Context, job *wechat.Job, reason string, due, now time.Time, ttl time.Duration) (bool, error) {
	q.g.entered <- struct{}{}
	<-q.g.open
	return q.Queue.Put(ctx, job, reason, due, now, ttl)
}

// A WebSocket feed that selects Message.notification is served by gqlgen's
// executor (the feed fast path renders only Message's scalars), and a user
// subscribed over WebSocket counts as online. A message sent with notify
// carries its notify mark from its append on: the live feed's first
// rendering of it, and history, read its notification PENDING while the
// notification is not queued yet (the store's queueing held at a gate),
// never null.
func TestWeChatWebSocketFeedNotification(t *testing.T) {
	store := newGatedStore()
	e := startWeChatOpts(t, 200*time.Millisecond, wxOptions{store: store})
	t.Cleanup(store.release) // before the server's cleanup, which waits for the send
	tok := e.login(t, "oWS1")
	c := e.dialWS(t, transportWS, "", nil)
	c.init(map[string]any{"token": tok})
	// Selecting notification runs the feed through gqlgen's executor.
	raw, _ := json.Marshal(map[string]any{"query": `subscription { feed(channels: ["user:oWS1"]) {
		... on Message { id cursor notification { status reason } } } }`})
	c.write(wsMsg{Type: "subscribe", ID: "f", Payload: raw})
	type event struct {
		Data struct {
			Feed struct {
				ID, Cursor   string
				Notification *struct{ Status, Reason string }
			}
		}
	}
	decode := func(m wsMsg) event {
		t.Helper()
		var ev event
		if m.Type != "next" || json.Unmarshal(m.Payload, &ev) != nil || ev.Data.Feed.ID == "" {
			t.Fatalf("feed %s: %s %s", m.ID, m.Type, m.Payload)
		}
		return ev
	}
	// The feed is live once a first message arrives.
	deadline := time.Now().Add(waitTimeout)
	var first wsMsg
	for first.Type == "" {
		e.send(t, "user:oWS1", "hello")
		select {
		case first = <-c.msgs:
		case <-time.After(100 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("the feed never delivered")
			}
		}
	}
	if ev := decode(first); ev.Data.Feed.Notification != nil {
		t.Fatalf("a message without notify: %s", first.Payload)
	}
	type answer struct {
		sent sentMessage
		res  gqlResponse
	}
	answered := make(chan answer, 1)
	go func() {
		sent, res := e.sendNotify(t, "oWS1", "OFFLINE", goodData)
		answered <- answer{sent, res}
	}()
	<-store.entered // appended, and its notification held before the queue
	// History: the newest message is the notify message, its notification
	// PENDING though not queued.
	var hist struct {
		History struct {
			Nodes []struct {
				ID           string
				Notification *notification
			}
		}
	}
	e.do(t, testKey, `{ history(channel: "user:oWS1", last: 1) { nodes { id notification { status reason } } } }`, nil).decode(t, &hist)
	if len(hist.History.Nodes) != 1 {
		t.Fatalf("history: %+v", hist)
	}
	id := hist.History.Nodes[0].ID
	if n := hist.History.Nodes[0].Notification; n == nil || n.Status != "PENDING" || *n.Reason != "WAITING" {
		t.Fatalf("history before the notification is queued: %+v, want PENDING WAITING", n)
	}
	// The live feed's first rendering of the notify message; the hellos
	// before it have none.
	for {
		ev := decode(c.next())
		n := ev.Data.Feed.Notification
		if ev.Data.Feed.ID != id {
			if n != nil {
				t.Fatalf("hello %s has a notification %+v", ev.Data.Feed.ID, *n)
			}
			continue
		}
		if n == nil || n.Status != "PENDING" || n.Reason != "WAITING" {
			t.Fatalf("the live feed's first rendering of the notify message: %+v, want its notification PENDING WAITING", ev.Data.Feed)
		}
		break
	}
	store.release()
	a := <-answered
	if len(a.res.Errors) > 0 || a.sent.ID != id {
		t.Fatalf("send: %+v %+v, want message %s", a.sent, a.res.Errors, id)
	}
	// The user is online past the 200 ms grace.
	n := e.waitStatus(t, "oWS1")
	if n.Status != "SKIPPED" || *n.Reason != "ONLINE" {
		t.Fatalf("notification %+v, want SKIPPED ONLINE", n)
	}
}

// TestWeChatLoginRateLimitedPerIP: wechatLogin is callable without
// credentials, so each client IP has a rate of its own: past its burst a
// call is refused with RATE_LIMITED before anything reaches WeChat (the
// code stays unused).
func TestWeChatLoginRateLimitedPerIP(t *testing.T) {
	e := startWeChatWith(t, time.Second, func(c *server.Config) {
		// A burst of 2 and no refill within the test.
		c.Limits.WechatLoginRatePerIP = limits.Rate{PerSecond: 0.001, Burst: 2}
	})
	e.login(t, "oRate1")
	e.login(t, "oRate2")
	calls := e.wx.Calls(wechattest.APICode2Session)
	e.wx.AddCode(wxApp, "code-oRate3", wechattest.User{OpenID: "oRate3", SessionKey: "k3"})
	res := e.do(t, "", `mutation($c: String!) { wechatLogin(input: {code: $c}) { token } }`, map[string]any{"c": "code-oRate3"})
	refused(t, res, "RATE_LIMITED")
	if got := e.wx.Calls(wechattest.APICode2Session); got != calls {
		t.Fatalf("code2Session called %d times after the refusal, want %d", got, calls)
	}
}
