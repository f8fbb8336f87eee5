package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/wechattest"
)

const (
	wxApp    = "wx0123456789abcdef"
	wxSecret = "wx-secret-never-shown-0123"
	wxAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
)

func parseArgs(t *testing.T, args []string, env map[string]string) (config, error) {
	t.Helper()
	return parseConfig(args, func(k string) string { return env[k] }, io.Discard)
}

func TestWeChatFlags(t *testing.T) {
	c, err := parseArgs(t, []string{"--wechat-app-id", wxApp, "--wechat-app-secret", wxSecret, "--wechat-api-url", "http://127.0.0.1:1",
		"--wechat-push-token", "tok123", "--wechat-aes-key", wxAESKey, "--wechat-miniprogram-state", "trial", "--wechat-lang", "en_US",
		"--wechat-offline-grace", "3s", "--wechat-notify-max-age", "1h"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.WeChat.Apps) != 1 {
		t.Fatalf("apps %d", len(c.WeChat.Apps))
	}
	a := c.WeChat.Apps[0]
	if a.AppID != wxApp || a.AppSecret.Reveal() != wxSecret || a.APIURL != "http://127.0.0.1:1" || a.PushToken.Reveal() != "tok123" ||
		a.AESKey.Reveal() != wxAESKey || a.MiniprogramState != "trial" || a.Lang != "en_US" || a.OfflineGrace != 3*time.Second ||
		a.NotifyMaxAge != time.Hour {
		t.Fatalf("app %+v", a)
	}
	// The variables, with the defaults.
	c, err = parseArgs(t, nil, map[string]string{"PUSHGATE_WECHAT_APP_ID": wxApp, "PUSHGATE_WECHAT_APP_SECRET": wxSecret})
	if err != nil {
		t.Fatal(err)
	}
	if a := c.WeChat.Apps[0]; a.OfflineGrace != 10*time.Second || a.NotifyMaxAge != 24*time.Hour || a.APIURL != "https://api.weixin.qq.com" {
		t.Fatalf("defaults %+v", a)
	}
	// Without WeChat settings, no app.
	if c, err = parseArgs(t, nil, nil); err != nil || len(c.WeChat.Apps) != 0 {
		t.Fatalf("no flags: %d apps, %v", len(c.WeChat.Apps), err)
	}
}

func TestWeChatFlagErrorsHideSecrets(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--wechat-app-secret", wxSecret}, "--wechat-app-id"},
		{[]string{"--wechat-app-id", wxApp}, "--wechat-app-secret"},
		{[]string{"--wechat-app-id", wxApp, "--wechat-app-secret", wxSecret, "--wechat-aes-key", wxSecret}, "aes_key"},
		{[]string{"--wechat-app-id", wxApp, "--wechat-app-secret", wxSecret, "--wechat-miniprogram-state", "beta"}, "miniprogram_state"},
		{[]string{"--wechat-app-id", wxApp, "--wechat-app-secret", wxSecret, "--wechat-offline-grace", "nope"}, "--wechat-offline-grace"},
	} {
		_, err := parseArgs(t, tc.args, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %s", tc.args, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), wxSecret) {
			t.Errorf("%v: the error repeats the secret: %v", tc.args, err)
		}
	}
}

func TestWeChatConfigFile(t *testing.T) {
	path := writeFile(t, `
wechat:
  apps:
    - app_id: `+wxApp+`
      app_secret: `+wxSecret+`
      login_channels: ["room:{sub}:*"]
      offline_grace: 2s
    - app_id: wx2222222222222222
      app_secret: other-secret-22222
      subject: unionid
`)
	c, err := parseArgs(t, []string{"--config", path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.WeChat.Apps) != 2 || c.WeChat.Apps[0].OfflineGrace != 2*time.Second || c.WeChat.Apps[1].Subject != "unionid" ||
		c.WeChat.Apps[0].LoginChannels[0] != "room:{sub}:*" {
		t.Fatalf("apps %+v", c.WeChat.Apps)
	}
	bad := writeFile(t, "wechat:\n  apps:\n    - app_id: "+wxApp+"\n      app_secret: "+wxSecret+"\n      aes_key: short\n")
	if _, err := parseArgs(t, []string{"--config", bad}, nil); err == nil || !strings.Contains(err.Error(), "wechat.apps[0].aes_key") ||
		strings.Contains(err.Error(), wxSecret) {
		t.Fatalf("bad aes_key: %v", err)
	}
	unknown := writeFile(t, "wechat:\n  apps:\n    - app_id: "+wxApp+"\n      secret: x\n")
	if _, err := parseArgs(t, []string{"--config", unknown}, nil); err == nil {
		t.Fatal("an unknown field of an app is accepted")
	}
}

// The binary with the WeChat flags: the message push route answers
// WeChat's URL check, wechatLogin works, and the secret is in no log line.
func TestRunWeChat(t *testing.T) {
	wx := wechattest.New(t)
	wx.AddApp(wxApp, wxSecret)
	wx.AddCode(wxApp, "code1", wechattest.User{OpenID: "oRun1", SessionKey: "sk-run-1"})
	p := start(t, "--jwt-secret", "jwt-secret-run-0123456789abcdef-0123456789", "--wechat-app-id", wxApp, "--wechat-app-secret", wxSecret,
		"--wechat-api-url", wx.URL, "--wechat-push-token", "pushtok1")
	var out struct{ WechatLogin struct{ Token string } }
	p.do(t, `mutation { wechatLogin(input: {code: "code1"}) { token } }`, nil, &out)
	if out.WechatLogin.Token == "" {
		t.Fatal("no token")
	}
	pusher := &wechattest.Pusher{URL: p.url + "/wechat/events/" + wxApp, AppID: wxApp, Token: "pushtok1"}
	r, err := pusher.CheckURL(t.Context(), "echo1", wechattest.Tamper{})
	if err != nil || r.Status != http.StatusOK || r.Body != "echo1" {
		t.Fatalf("URL check: %+v %v", r, err)
	}
	for _, secret := range []string{wxSecret, "pushtok1", "sk-run-1"} {
		if strings.Contains(p.log.String(), secret) {
			t.Errorf("%q is in the log", secret)
		}
	}
}
