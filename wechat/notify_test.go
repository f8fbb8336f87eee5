package wechat

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestNotifyWhen: an offline user gets exactly one subscribe message per
// OFFLINE notification, after the grace period; an online user none; an
// UNSEEN message acknowledged in time none, one not acknowledged one; an
// ALWAYS one is sent at once, online or not.
func TestNotifyWhen(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() Store) {
		e := newEnv(t)
		var p presence
		s := e.service(newStore(), p.online)
		e.wx.Accept(appID, openID1, tplOnce, 100)
		e.wx.Accept(appID, openID2, tplOnce, 100)
		p.set(openID2, true)

		e.notify(s, openID1, "1", WhenOffline)
		e.notify(s, openID2, "1", WhenOffline)
		e.notify(s, openID1, "2", WhenUnseen)
		e.notify(s, openID1, "3", WhenUnseen)
		e.notify(s, openID2, "2", WhenAlways)
		if err := s.Ack(context.Background(), "user:"+openID1, "3"); err != nil {
			t.Fatal(err)
		}
		// ALWAYS goes at once; the others wait for the grace period.
		e.outcome(s, "user:"+openID2, "2", StatusSent)
		settle(t, s) // nothing else may go before the grace ends
		if n := len(e.wx.Sent()); n != 1 {
			t.Fatalf("%d messages before the grace period, want 1 (ALWAYS)", n)
		}
		if o, _ := s.Notification(context.Background(), "user:"+openID1, "1"); o.Status != StatusPending || o.Reason != ReasonWaiting {
			t.Fatalf("OFFLINE during the grace period: %+v", o)
		}
		e.clock.Add(DefaultOfflineGrace)
		if o := e.outcome(s, "user:"+openID1, "1", StatusSent); o.Attempts != 1 {
			t.Fatalf("OFFLINE, offline user: %+v", o)
		}
		if o := e.outcome(s, "user:"+openID2, "1", StatusSkipped); o.Reason != ReasonOnline || o.Attempts != 0 {
			t.Fatalf("OFFLINE, online user: %+v", o)
		}
		e.outcome(s, "user:"+openID1, "2", StatusSent)
		if o := e.outcome(s, "user:"+openID1, "3", StatusSkipped); o.Reason != ReasonAcked {
			t.Fatalf("UNSEEN, acknowledged: %+v", o)
		}
		if e.sentTo(openID1) != 2 || e.sentTo(openID2) != 1 {
			t.Fatalf("sent %d to the offline user, %d to the online one; want 2 and 1", e.sentTo(openID1), e.sentTo(openID2))
		}
		m := e.wx.Sent()[1]
		if m.TemplateID != tplOnce || m.Page != "pages/order/detail?id=42" || m.Data["thing1"] != "您的订单已发货" ||
			m.Data["amount2"] != "¥9.90" || m.MiniprogramState != "formal" || m.Lang != "zh_CN" {
			t.Fatalf("message as sent: %+v", m)
		}
		// Queueing a message again does nothing: at most once per message.
		e.notify(s, openID1, "1", WhenAlways)
		e.notify(s, openID2, "2", WhenAlways)
		settle(t, s)
		if n := len(e.wx.Sent()); n != 3 {
			t.Fatalf("%d messages after queueing sent ones again, want 3", n)
		}
		if got := e.counter("pushgate_wechat_notifications_total", map[string]string{"status": "PENDING"}); got != 5 {
			t.Fatalf("PENDING counted %v times, want 5", got)
		}
	})
}

// TestNotifyBadInput: a bad notification is refused before anything is
// queued, with an error naming the field.
func TestNotifyBadInput(t *testing.T) {
	e := newEnv(t)
	s := e.service(NewMemoryStore(), offline)
	for _, c := range []struct {
		n    Notify
		want string
	}{
		{Notify{Channel: "orders:1", MessageID: "1", TemplateID: tplOnce, Data: goodData()}, "user:<sub>"},
		{Notify{Channel: "user:" + openID1, MessageID: "1", TemplateID: "a b", Data: goodData()}, "notify.templateId"},
		{Notify{Channel: "user:" + openID1, MessageID: "1", TemplateID: tplOnce, Data: data("thing1", strings.Repeat("长", 21))}, "notify.data.thing1"},
		{Notify{Channel: "user:" + openID1, MessageID: "1", TemplateID: tplOnce, Data: goodData(), When: "SOMETIMES"}, "notify.when"},
		{Notify{Channel: "user:" + openID1, MessageID: "1", TemplateID: tplOnce, Data: goodData(), Page: "a\nb"}, "notify.page"},
		{Notify{AppID: "wxother", Channel: "user:" + openID1, MessageID: "1", TemplateID: tplOnce, Data: goodData()}, "unknown WeChat app"},
		{Notify{Channel: "user:" + openID1, TemplateID: tplOnce, Data: goodData()}, "message id"},
	} {
		err := s.Notify(context.Background(), c.n)
		var we *Error
		if !errors.As(err, &we) || we.Code != CodeBadUserInput || !strings.Contains(we.Message, c.want) {
			t.Errorf("%+v: %v, want BAD_USER_INPUT naming %s", c.n, err, c.want)
		}
	}
	if o, err := s.Notification(context.Background(), "user:"+openID1, "1"); o != nil || err != nil {
		t.Fatalf("a refused notification was queued: %+v %v", o, err)
	}
}

// TestNotifyErrcodes: each of WeChat's answers to subscribeMessage.send has
// its documented outcome: final errcodes end the notification, transient
// ones are retried with backoff until a send succeeds, and a send whose
// answer never came is UNKNOWN and not repeated.
func TestNotifyErrcodes(t *testing.T) {
	type setup func(e *env)
	inject := func(code, n int) setup { return func(e *env) { e.wx.Inject(wxSend, code, n) } }
	for _, c := range []struct {
		name    string
		setup   setup
		openid  string
		tpl     string
		data    string
		status  Status
		reason  string
		errcode int
		// sends: messages the fake accepted; calls: send requests it got.
		sends, calls int
		retries      int // clock advances needed (one per backoff)
		errmsg       string
	}{
		{name: "ok", status: StatusSent, sends: 1, calls: 1},
		{name: "43101 refused", setup: func(e *env) { e.wx.Reject(appID, openID1, tplOnce) },
			status: StatusRefused, reason: ReasonUserRefused, errcode: 43101, calls: 1, errmsg: "user refuse to accept the msg"},
		{name: "47003 bad data", data: "thing1", status: StatusFailed, reason: ReasonBadData, errcode: 47003, calls: 1,
			errmsg: "data.amount2.value"},
		{name: "40003 bad openid", openid: "oUnknownUser", status: StatusFailed, reason: ReasonBadOpenID, errcode: 40003, calls: 1},
		{name: "40037 bad template", tpl: "TPL-none", status: StatusFailed, reason: ReasonBadTemplate, errcode: 40037, calls: 1},
		{name: "41030 bad page", setup: func(e *env) { e.wx.SetPages(appID, "pages/index") },
			status: StatusFailed, reason: ReasonBadPage, errcode: 41030, calls: 1},
		{name: "other errcode", setup: inject(48001, 1), status: StatusFailed, reason: ReasonWeChatError, errcode: 48001, calls: 1},
		{name: "-1 busy", setup: inject(-1, 2), status: StatusSent, sends: 1, calls: 3, retries: 2},
		{name: "45009 quota", setup: inject(45009, 1), status: StatusSent, sends: 1, calls: 2, retries: 1},
		{name: "5xx", setup: func(e *env) { e.wx.InjectHTTP(wxSend, 503, 2) }, status: StatusSent, sends: 1, calls: 3, retries: 2},
		{name: "40001 token", setup: inject(40001, 1), status: StatusSent, sends: 1, calls: 2},
		{name: "42001 token", setup: inject(42001, 1), status: StatusSent, sends: 1, calls: 2},
		{name: "40014 token", setup: inject(40014, 1), status: StatusSent, sends: 1, calls: 2},
		{name: "reset after the request", setup: func(e *env) { e.wx.InjectReset(wxSend, 1) },
			status: StatusUnknown, reason: ReasonNoAnswer, calls: 1},
		{name: "no answer in time", setup: func(e *env) { e.wx.SetLatency(wxSend, 1500*time.Millisecond) },
			status: StatusUnknown, reason: ReasonNoAnswer, sends: 1, calls: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.service(NewMemoryStore(), offline)
			e.wx.Accept(appID, openID1, tplOnce, 1)
			if c.setup != nil {
				c.setup(e)
			}
			openid, tpl, d := openID1, tplOnce, goodData()
			if c.openid != "" {
				openid = c.openid
			}
			if c.tpl != "" {
				tpl = c.tpl
			}
			if c.data != "" {
				d = data(c.data, "x")
			}
			if err := s.Notify(context.Background(), Notify{Channel: "user:" + openid, MessageID: "7", TemplateID: tpl,
				Data: d, Page: "pages/order/detail?id=42", When: WhenAlways}); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= c.retries; i++ {
				// Each retry waits for its backoff on the clock.
				e.advanceUntil(time.Second, fmt.Sprintf("attempt %d", i+1), func() bool { return e.wx.Calls(wxSend) > i })
			}
			var o Outcome
			if c.status == StatusPending {
				t.Fatal("a final status is expected")
			}
			o = e.outcome(s, "user:"+openid, "7", c.status)
			if o.Reason != c.reason || o.Errcode != c.errcode || !strings.Contains(o.Errmsg, c.errmsg) {
				t.Fatalf("outcome %+v, want reason %q errcode %d errmsg containing %q", o, c.reason, c.errcode, c.errmsg)
			}
			if c.name == "no answer in time" {
				// The fake processes the request after its latency: the
				// message was delivered although pushgate never heard.
				waitFor(t, 5*time.Second, "the late message", func() bool { return len(e.wx.Sent()) == 1 })
			}
			settle(t, s) // nothing more may be sent, now or later
			e.clock.Add(time.Hour)
			settle(t, s)
			if len(e.wx.Sent()) != c.sends || e.wx.Calls(wxSend) != c.calls {
				t.Fatalf("%d messages in %d calls, want %d in %d", len(e.wx.Sent()), e.wx.Calls(wxSend), c.sends, c.calls)
			}
			if want := float64(1); e.counter("pushgate_wechat_notifications_total", map[string]string{"status": string(c.status)}) != want {
				t.Fatalf("status %s not counted once", c.status)
			}
		})
	}
}

// wxSend is the fake's name of subscribeMessage.send.
const wxSend = "subscribe_send"

// TestNotificationOfBeforeQueued: a message marked as sent with notify
// reads PENDING (WAITING) before its notification is queued (the server
// queues it right after the append, readers may see the message first);
// its record once queued; FAILED (NOT_QUEUED) when a minute passed
// without one; nothing past the outcome TTL, like an expired record.
func TestNotificationOfBeforeQueued(t *testing.T) {
	e := newEnv(t)
	s := e.service(NewMemoryStore(), offline)
	ctx := context.Background()
	ch := "user:" + openID1
	appended := e.clock.Now()
	read := func() *Outcome {
		t.Helper()
		o, err := s.NotificationOf(ctx, ch, "7", appended)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	if o := read(); o == nil || o.Status != StatusPending || o.Reason != ReasonWaiting || o.Attempts != 0 {
		t.Fatalf("before it is queued: %+v, want PENDING WAITING", o)
	}
	e.clock.Add(queueWindow)
	if o := read(); o == nil || o.Status != StatusFailed || o.Reason != ReasonNotQueued {
		t.Fatalf("a minute without a record: %+v, want FAILED NOT_QUEUED", o)
	}
	// A send again with the same idempotency key queues it: its record
	// stands from then on.
	e.notify(s, openID1, "7", WhenOffline)
	if o := read(); o == nil || o.Status != StatusPending || o.Reason != ReasonWaiting {
		t.Fatalf("queued late: %+v, want its record (PENDING WAITING)", o)
	}
	if o, _ := s.NotificationOf(ctx, ch, "8", appended.Add(-DefaultOutcomeTTL)); o != nil {
		t.Fatalf("a message older than the outcome TTL: %+v, want none", o)
	}
}
