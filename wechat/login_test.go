package wechat

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/wechattest"
)

func TestLogin(t *testing.T) {
	e := newEnv(t)
	s := e.service(NewMemoryStore(), offline, func(c *Config) {
		c.Apps[0].LoginChannels = []string{"room:{sub}:*", "news"}
		c.Apps[0].TokenLifetime = 2 * time.Hour
	})
	e.wx.AddCode(appID, "code-1", wechattest.User{OpenID: openID1, UnionID: unionID1, SessionKey: "sessionKEY123"})
	sess, err := s.Login(context.Background(), "", "code-1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"user:" + openID1, "room:" + openID1 + ":*", "news"}
	if sess.Subject != openID1 || sess.OpenID != openID1 || sess.UnionID != unionID1 || sess.AppID != appID ||
		!slices.Equal(sess.Channels, want) || sess.TokenLifetime != 2*time.Hour {
		t.Fatalf("session %+v", sess)
	}
	// The code is single-use: WeChat's 40163.
	_, err = s.Login(context.Background(), appID, "code-1")
	if we := wantError(t, err, CodeBadUserInput, "40163"); we.Errcode != 40163 {
		t.Fatalf("errcode %d", we.Errcode)
	}
	if strings.Contains(e.logs.String(), "sessionKEY123") {
		t.Fatal("session_key was logged")
	}
}

// TestLoginUnionID: with subject unionid the token's sub is the unionid,
// and the unionid→openid mapping is kept for notifications.
func TestLoginUnionID(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() Store) {
		e := newEnv(t)
		s := e.service(newStore(), offline, func(c *Config) { c.Apps[0].Subject = SubjectUnionID })
		e.wx.AddCode(appID, "code-1", wechattest.User{OpenID: openID1, UnionID: unionID1})
		sess, err := s.Login(context.Background(), "", "code-1")
		if err != nil {
			t.Fatal(err)
		}
		if sess.Subject != unionID1 || sess.Channels[0] != "user:"+unionID1 {
			t.Fatalf("session %+v", sess)
		}
		// A notification to user:<unionid> goes to the openid, and uses the
		// acceptance the ledger learnt of (events name openids).
		e.wx.Accept(appID, openID1, tplOnce, 1)
		res, err := e.pusher(s, true, false).Push(context.Background(), wechattest.Event{Name: wechattest.EventPopup,
			OpenID: openID1, Items: []wechattest.Item{{TemplateID: tplOnce, Status: "accept"}}}, wechattest.Tamper{})
		if err != nil || res.Body != "success" {
			t.Fatalf("push: %+v %v", res, err)
		}
		if q, err := s.Subscription(context.Background(), "", unionID1, tplOnce); err != nil || q.Count != 1 {
			t.Fatalf("ledger after the acceptance: %+v %v", q, err)
		}
		if err := s.Notify(context.Background(), Notify{Channel: "user:" + unionID1, MessageID: "1", TemplateID: tplOnce,
			Data: goodData(), When: WhenAlways}); err != nil {
			t.Fatal(err)
		}
		e.outcome(s, "user:"+unionID1, "1", StatusSent)
		if e.sentTo(openID1) != 1 {
			t.Fatalf("sent %v", e.wx.Sent())
		}
		// The ledger is read through the mapping.
		q, err := s.Subscription(context.Background(), "", unionID1, tplOnce)
		if err != nil || !q.Known || q.Count != 0 {
			t.Fatalf("ledger after the send: %+v %v", q, err)
		}
		// A unionid never seen at login has no openid.
		if err := s.Notify(context.Background(), Notify{Channel: "user:uNobody", MessageID: "2", TemplateID: tplOnce,
			Data: goodData(), When: WhenAlways}); err != nil {
			t.Fatal(err)
		}
		if o := e.outcome(s, "user:uNobody", "2", StatusFailed); o.Reason != ReasonNoOpenID {
			t.Fatalf("unknown unionid: %+v", o)
		}
		// A user whose app is not bound to an open platform has no unionid.
		e.wx.AddCode(appID, "code-2", wechattest.User{OpenID: openID2})
		_, err = s.Login(context.Background(), "", "code-2")
		wantError(t, err, CodeInternal, "no unionid")
	})
}

// TestLoginErrors: WeChat's errcodes and failures map to pushgate's codes,
// and each message names the errcode.
func TestLoginErrors(t *testing.T) {
	e := newEnv(t)
	s := e.service(NewMemoryStore(), offline)
	for i, c := range []struct {
		name   string
		setup  func()
		code   string
		want   string
		naming string
	}{
		{"40029 invalid code", nil, CodeBadUserInput, "40029", "40029"},
		{"45011 too frequent", func() { e.wx.Inject(wechattest.APICode2Session, 45011, 1) }, CodeRateLimited, "45011", "45011"},
		{"40226 blocked", func() { e.wx.Inject(wechattest.APICode2Session, 40226, 1) }, CodeForbidden, "40226", "40226"},
		{"-1 busy", func() { e.wx.Inject(wechattest.APICode2Session, -1, 1) }, CodeUnavailable, "-1", "errcode -1"},
		{"5xx", func() { e.wx.InjectHTTP(wechattest.APICode2Session, 502, 1) }, CodeUnavailable, "", "HTTP 502"},
		// net/http retries a GET once when a kept-alive connection fails:
		// the resets outnumber its retries.
		{"connection reset", func() { e.wx.InjectReset(wechattest.APICode2Session, 3) }, CodeUnavailable, "", "could not be reached"},
		{"timeout", func() {
			e.wx.Clear(wechattest.APICode2Session)
			e.wx.SetLatency(wechattest.APICode2Session, 1500*time.Millisecond)
		}, CodeUnavailable, "", "in time"},
		{"other errcode", func() {
			e.wx.SetLatency(wechattest.APICode2Session, 0)
			e.wx.Inject(wechattest.APICode2Session, 40125, 1)
		}, CodeUnavailable, "40125", "40125"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code := "code-x"
			if c.setup != nil {
				c.setup()
				code = "code-ok-" + string(rune('a'+i))
				e.wx.AddCode(appID, code, wechattest.User{OpenID: openID1})
			}
			_, err := s.Login(context.Background(), "", code)
			e.errs = append(e.errs, errString(err))
			we := wantError(t, err, c.code, c.naming)
			if c.want != "" && we.Errcode != atoi(c.want) {
				t.Fatalf("errcode %d, want %s", we.Errcode, c.want)
			}
		})
	}
	_, err := s.Login(context.Background(), "", "")
	wantError(t, err, CodeBadUserInput, "code")
	// Nothing listens at the API URL: connections are refused.
	refused := e.service(NewMemoryStore(), offline, func(c *Config) { c.Apps[0].APIURL = "http://127.0.0.1:1" })
	_, err = refused.Login(context.Background(), "", "code-y")
	wantError(t, err, CodeUnavailable, "could not be reached")
	_, err = s.Login(context.Background(), "wxother", "abc")
	wantError(t, err, CodeBadUserInput, "unknown WeChat app")
}

func atoi(s string) int {
	n, neg := 0, strings.HasPrefix(s, "-")
	for _, c := range strings.TrimPrefix(s, "-") {
		n = n*10 + int(c-'0')
	}
	if neg {
		return -n
	}
	return n
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		s += " | " + u.Error()
	}
	return s
}

// wantError checks err is an *Error with code whose message contains
// naming.
func wantError(t *testing.T, err error, code, naming string) *Error {
	t.Helper()
	var we *Error
	if !errors.As(err, &we) {
		t.Fatalf("error %v (%T), want *Error %s", err, err, code)
	}
	if we.Code != code || !strings.Contains(we.Message, naming) {
		t.Fatalf("error %s %q, want %s naming %q", we.Code, we.Message, code, naming)
	}
	return we
}
