package wechat

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/pushgate/pushgate/internal/wechattest"
)

// TestSecretsNeverLeak: the app secret, the push token, the AES key and
// every access token WeChat issued appear in no log line (debug level),
// no error string and no metric, after logins, token refreshes (forced
// too), sends through an outage whose network errors name the request URL,
// and refused pushes.
func TestSecretsNeverLeak(t *testing.T) {
	e := newEnv(t)
	s := e.service(NewMemoryStore(), offline)
	ctx := context.Background()
	e.wx.Accept(appID, openID1, tplOnce, 10)
	defer func() {
		if t.Failed() {
			t.Log(e.logs.String())
		}
	}()

	// Logins, good and bad.
	e.wx.AddCode(appID, "code-1", wechattest.User{OpenID: openID1})
	if _, err := s.Login(ctx, "", "code-1"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []func(){
		func() { e.wx.Inject(wechattest.APICode2Session, 40125, 1) },
		func() { e.wx.InjectHTTP(wechattest.APICode2Session, 500, 1) },
		func() { e.wx.InjectReset(wechattest.APICode2Session, 1) },
	} {
		f()
		_, err := s.Login(ctx, "", "code-x")
		e.errs = append(e.errs, errString(err))
	}
	// A token, a forced refresh, sends through refused connections and
	// resets (the errors of net/http name the URL, access_token and all).
	tok, err := s.AccessToken(ctx, appID)
	if err != nil {
		t.Fatal(err)
	}
	e.errs = append(e.errs, fmt.Sprintf("%v %+v %#v", tok, tok, tok))
	b, _ := json.Marshal(tok)
	e.errs = append(e.errs, string(b))
	e.wx.Inject(wxSend, 40001, 1)
	e.notify(s, openID1, "1", WhenAlways)
	e.outcome(s, "user:"+openID1, "1", StatusSent)
	e.wx.Down()
	e.notify(s, openID1, "2", WhenAlways)
	waitFor(t, 5*time.Second, "a refused send", func() bool {
		o, _ := s.Notification(ctx, "user:"+openID1, "2")
		return o.Reason == ReasonRetrying
	})
	e.wx.Up()
	e.wx.InjectReset(wxSend, 1)
	e.advanceUntil(time.Second, "the reset send", func() bool {
		o, _ := s.Notification(ctx, "user:"+openID1, "2")
		return o.Status == StatusUnknown
	})
	// Token fetches that fail.
	e.clock.Add(3 * time.Hour)
	e.wx.Inject(wechattest.APIStableToken, 40125, 1)
	_, err = s.AccessToken(ctx, appID)
	e.errs = append(e.errs, errString(err))
	e.wx.Down()
	_, err = s.AccessToken(ctx, appID)
	e.errs = append(e.errs, errString(err))
	e.wx.Up()
	if _, err := s.AccessToken(ctx, appID); err != nil {
		t.Fatal(err)
	}
	// Refused pushes.
	p := e.pusher(s, true, false)
	for _, tm := range []wechattest.Tamper{{BadSignature: true}, {AppID: "wxother000000000"}, {Ciphertext: true}} {
		res, err := p.Push(ctx, popup(openID1, wechattest.Item{TemplateID: tplOnce, Status: "accept"}), tm)
		if err != nil {
			t.Fatal(err)
		}
		e.errs = append(e.errs, res.Body)
	}
	// The configuration, printed or encoded.
	cfg := e.config()
	cb, _ := json.Marshal(cfg)
	e.errs = append(e.errs, string(cb), fmt.Sprintf("%v %+v", cfg, cfg))

	var metrics strings.Builder
	mfs, _ := e.reg.Gather()
	for _, mf := range mfs {
		_, _ = expfmt.MetricFamilyToText(&metrics, mf)
	}
	secrets := map[string]string{"app secret": testSecret, "push token": testToken, "AES key": testAESKey}
	tokens := e.wx.Tokens()
	if len(tokens) < 3 {
		t.Fatalf("only %d access tokens were issued: the test did not refresh", len(tokens))
	}
	for i, tk := range tokens {
		secrets[fmt.Sprint("access token ", i)] = tk
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "force-refreshed") || !strings.Contains(logs, "no answer after the request was sent") {
		t.Fatalf("the logs miss the events under test:\n%s", logs)
	}
	for what, v := range secrets {
		for where, text := range map[string]string{"logs": logs, "errors": strings.Join(e.errs, "\n"), "metrics": metrics.String()} {
			if strings.Contains(text, v) {
				t.Errorf("the %s appears in the %s", what, where)
			}
		}
	}
}
