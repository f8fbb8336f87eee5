package wechat

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

const (
	testSecret = "s3cr3t-app-secret-0123456789abcdef"
	testToken  = "pushTok3n"
	testAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
)

func validApp() AppConfig {
	return AppConfig{AppID: "wx0123456789abcdef", AppSecret: testSecret, PushToken: testToken, AESKey: testAESKey}
}

func TestConfigDefaults(t *testing.T) {
	cfg := Config{Apps: []AppConfig{validApp()}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a := cfg.Apps[0]
	if a.APIURL != DefaultAPIURL || a.NotifyMaxAge != 24*time.Hour || a.OfflineGrace != 10*time.Second ||
		a.Subject != SubjectOpenID || a.MiniprogramState != "formal" || a.Lang != "zh_CN" || a.TokenLifetime != time.Hour {
		t.Fatalf("defaults not filled: %+v", a)
	}
	if cfg.HTTPTimeout != DefaultHTTPTimeout || cfg.ClaimIdle != DefaultClaimIdle || cfg.Concurrency != DefaultConcurrency {
		t.Fatalf("service defaults not filled: %+v", cfg)
	}
}

// TestConfigErrors: each bad setting is refused with an error that names
// its field and never repeats a secret.
func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		field string
		edit  func(*AppConfig)
	}{
		{"wechat.apps[0].app_id", func(a *AppConfig) { a.AppID = "" }},
		{"wechat.apps[0].app_id", func(a *AppConfig) { a.AppID = "wx/../x" }},
		{"wechat.apps[0].app_secret", func(a *AppConfig) { a.AppSecret = "" }},
		{"wechat.apps[0].app_secret", func(a *AppConfig) { a.AppSecret = testSecret + " with space" }},
		{"wechat.apps[0].push_token", func(a *AppConfig) { a.PushToken = testToken + "!" }},
		{"wechat.apps[0].aes_key", func(a *AppConfig) { a.AESKey = testAESKey + "X" }},
		{"wechat.apps[0].aes_key", func(a *AppConfig) { a.AESKey = Secret(strings.Repeat("!", 43)) }},
		{"wechat.apps[0].aes_key", func(a *AppConfig) { a.PushToken = "" }},
		{"wechat.apps[0].subject", func(a *AppConfig) { a.Subject = "email" }},
		{"wechat.apps[0].login_channels[1]", func(a *AppConfig) { a.LoginChannels = []string{"room:{sub}", "bad channel"} }},
		{"wechat.apps[0].token_lifetime", func(a *AppConfig) { a.TokenLifetime = 48 * time.Hour }},
		{"wechat.apps[0].miniprogram_state", func(a *AppConfig) { a.MiniprogramState = "beta" }},
		{"wechat.apps[0].lang", func(a *AppConfig) { a.Lang = "fr_FR" }},
		{"wechat.apps[0].api_url", func(a *AppConfig) { a.APIURL = "ftp://api.weixin.qq.com" }},
		{"wechat.apps[0].api_url", func(a *AppConfig) { a.APIURL = "https://user:" + testSecret + "@example.com" }},
		{"wechat.apps[0].notify_max_age", func(a *AppConfig) { a.NotifyMaxAge = time.Millisecond }},
		{"wechat.apps[0].offline_grace", func(a *AppConfig) { a.OfflineGrace = 48 * time.Hour }},
		{"wechat.apps[0].long_term_templates[0]", func(a *AppConfig) { a.LongTermTemplates = []string{"a b"} }},
	} {
		a := validApp()
		c.edit(&a)
		cfg := Config{Apps: []AppConfig{a}}
		err := cfg.Validate()
		if err == nil {
			t.Errorf("%s: accepted", c.field)
			continue
		}
		if !strings.HasPrefix(err.Error(), c.field+":") {
			t.Errorf("%s: error %q does not name the field", c.field, err)
		}
		for _, s := range []string{testSecret, testToken, testAESKey} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q repeats a secret", c.field, err)
			}
		}
	}
	cfg := Config{Apps: []AppConfig{validApp(), validApp()}}
	if err := cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), "wechat.apps[1].app_id") {
		t.Errorf("a duplicate app: %v", err)
	}
	cfg = Config{Apps: []AppConfig{validApp()}, HTTPTimeout: time.Minute, ClaimIdle: 30 * time.Second}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "claim_idle") {
		t.Errorf("claim idle below the HTTP timeout: %v", err)
	}
}

// TestSecretRedacted: a Secret never prints or encodes its value.
func TestSecretRedacted(t *testing.T) {
	s := Secret(testSecret)
	a := validApp()
	b, _ := json.Marshal(a)
	txt, _ := s.MarshalText()
	for _, out := range []string{
		s.String(), fmt.Sprint(s), fmt.Sprintf("%s %v %q %x %X %+v %#v %10s", s, s, s, s, s, s, s, s),
		fmt.Sprintf("%+v %#v", a, a), string(b), string(txt),
	} {
		if strings.Contains(out, testSecret) || strings.Contains(out, testAESKey) || strings.Contains(out, testToken) {
			t.Errorf("a secret shows in %q", out)
		}
	}
	if s.Reveal() != testSecret {
		t.Fatal("Reveal does not return the value")
	}
	var back Secret
	if err := back.UnmarshalText([]byte(testSecret)); err != nil || back.Reveal() != testSecret {
		t.Fatal("UnmarshalText does not read the value")
	}
	if Secret("").String() != "" {
		t.Fatal("an empty secret shows something")
	}
}

// TestDefaultBackoff: exponential from 2 s to 5 minutes, each wait in the
// upper half of its step.
func TestDefaultBackoff(t *testing.T) {
	for attempt, step := range map[int]time.Duration{
		1: 2 * time.Second, 2: 4 * time.Second, 5: 32 * time.Second, 8: 256 * time.Second,
		9: 5 * time.Minute, 40: 5 * time.Minute, 1000: 5 * time.Minute,
	} {
		for range 100 {
			if d := DefaultBackoff(attempt); d < step/2 || d >= step {
				t.Fatalf("attempt %d: %v, want [%v, %v)", attempt, d, step/2, step)
			}
		}
	}
}
