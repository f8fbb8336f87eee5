package wechat

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Defaults of the settings.
const (
	DefaultAPIURL        = "https://api.weixin.qq.com"
	DefaultNotifyMaxAge  = 24 * time.Hour
	DefaultOfflineGrace  = 10 * time.Second
	DefaultTokenLifetime = time.Hour
	DefaultHTTPTimeout   = 10 * time.Second
	DefaultConcurrency   = 8
	DefaultClaimIdle     = time.Minute
	DefaultPollInterval  = time.Second
	DefaultOutcomeTTL    = 7 * 24 * time.Hour
	DefaultKeyPrefix     = "pushgate:"

	// MaxTokenLifetime bounds a login token's lifetime (graph.MaxTokenTTL).
	MaxTokenLifetime = 24 * time.Hour
	// maxLoginChannels: a minted token holds at most 32 patterns, and
	// user:<sub> is always one of them.
	maxLoginChannels = 31
)

// Subject kinds: what a login token's sub is, and what user:<sub> names.
const (
	SubjectOpenID  = "openid"
	SubjectUnionID = "unionid"
)

// Config is the WeChat side of a deployment: its apps (mini-programs) and
// the settings of the notification queue. The zero value of each field is
// its default; Validate checks and fills them.
type Config struct {
	Apps []AppConfig `yaml:"apps"`

	// KeyPrefix starts every store key (the prefix of the pubsub store,
	// "pushgate:", by default).
	KeyPrefix string `yaml:"-"`
	// HTTPTimeout bounds one call to WeChat, answer included.
	HTTPTimeout time.Duration `yaml:"-"`
	// Concurrency is how many notifications of one app a node sends at once.
	Concurrency int `yaml:"-"`
	// ClaimIdle is how long a notification taken by a node may stay without
	// an outcome before another node claims it (the first node is taken to
	// be dead). It must exceed HTTPTimeout with room to spare, so that a
	// slow but live node is not overtaken.
	ClaimIdle time.Duration `yaml:"-"`
	// PollInterval is how often a node moves notifications that became due
	// to the queue and claims abandoned ones.
	PollInterval time.Duration `yaml:"-"`
	// OutcomeTTL is how long a notification's outcome is kept after its
	// last change.
	OutcomeTTL time.Duration `yaml:"-"`
}

// AppConfig is one mini-program.
type AppConfig struct {
	// AppID is the mini-program's AppID (wx...).
	AppID string `yaml:"app_id"`
	// AppSecret is its AppSecret: code2Session and the access token.
	AppSecret Secret `yaml:"app_secret"`
	// PushToken and AESKey are the message push settings (消息推送: Token
	// and EncodingAESKey). Without PushToken the app has no message push
	// endpoint; with AESKey it accepts only safe mode (encrypted) pushes.
	PushToken Secret `yaml:"push_token"`
	AESKey    Secret `yaml:"aes_key"`
	// Subject is what a login token's sub is: "openid" (default) or
	// "unionid" (the app must be bound to an open platform account).
	Subject string `yaml:"subject"`
	// LoginChannels are channel patterns a login token grants besides
	// user:<sub>; "{sub}" in a pattern is replaced by the subject.
	LoginChannels []string `yaml:"login_channels"`
	// TokenLifetime is a login token's lifetime (default 1h, at most 24h).
	TokenLifetime time.Duration `yaml:"token_lifetime"`
	// MiniprogramState is the version a subscribe message opens: "formal"
	// (default), "trial" or "developer".
	MiniprogramState string `yaml:"miniprogram_state"`
	// Lang is the language of the message's "进入小程序查看" link: zh_CN
	// (default), en_US, zh_HK or zh_TW.
	Lang string `yaml:"lang"`
	// APIURL is WeChat's API root (tests and egress proxies point it
	// elsewhere).
	APIURL string `yaml:"api_url"`
	// NotifyMaxAge bounds how long a notification is retried.
	NotifyMaxAge time.Duration `yaml:"notify_max_age"`
	// OfflineGrace is how long after a send an OFFLINE or UNSEEN
	// notification waits before it looks at presence and acknowledgements.
	// WeChat cuts a backgrounded mini-program's network about 5 s after it
	// leaves the foreground: the grace must be longer than that.
	OfflineGrace time.Duration `yaml:"offline_grace"`
	// LongTermTemplates are the app's long-term subscription templates
	// (长期订阅): one acceptance allows any number of messages.
	LongTermTemplates []string `yaml:"long_term_templates"`
	// AtLeastOnce resends a notification whose previous attempt got no
	// answer (a node died mid-call, a timeout), at the risk of a
	// duplicate; by default such a notification ends UNKNOWN instead.
	AtLeastOnce bool `yaml:"at_least_once"`
}

// Validate checks cfg and fills in the defaults. An error names the field
// ("wechat.apps[0].app_secret: ...") and never repeats a secret.
func (cfg *Config) Validate() error {
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = DefaultKeyPrefix
	}
	setDuration(&cfg.HTTPTimeout, DefaultHTTPTimeout)
	setDuration(&cfg.ClaimIdle, DefaultClaimIdle)
	setDuration(&cfg.PollInterval, DefaultPollInterval)
	setDuration(&cfg.OutcomeTTL, DefaultOutcomeTTL)
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	switch {
	case cfg.HTTPTimeout < 0:
		return fmt.Errorf("wechat: http_timeout: must be positive, got %v", cfg.HTTPTimeout)
	case cfg.Concurrency < 0 || cfg.Concurrency > 1024:
		return fmt.Errorf("wechat: concurrency: must be 1..1024, got %d", cfg.Concurrency)
	case cfg.ClaimIdle <= cfg.HTTPTimeout:
		return fmt.Errorf("wechat: claim_idle: must exceed the HTTP timeout (%v), got %v", cfg.HTTPTimeout, cfg.ClaimIdle)
	case cfg.PollInterval < 0:
		return fmt.Errorf("wechat: poll_interval: must be positive, got %v", cfg.PollInterval)
	case cfg.OutcomeTTL < 0:
		return fmt.Errorf("wechat: outcome_ttl: must be positive, got %v", cfg.OutcomeTTL)
	}
	seen := map[string]bool{}
	for i := range cfg.Apps {
		a := &cfg.Apps[i]
		if err := a.validate(); err != nil {
			return fmt.Errorf("wechat.apps[%d].%w", i, err)
		}
		if seen[a.AppID] {
			return fmt.Errorf("wechat.apps[%d].app_id: %q is configured twice", i, a.AppID)
		}
		seen[a.AppID] = true
		if a.NotifyMaxAge > cfg.OutcomeTTL {
			return fmt.Errorf("wechat.apps[%d].notify_max_age: must not exceed the outcome TTL (%v), got %v",
				i, cfg.OutcomeTTL, a.NotifyMaxAge)
		}
	}
	return nil
}

func setDuration(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// fieldErr is "<field>: <problem>"; Config.Validate prefixes the app.
func fieldErr(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
}

func (a *AppConfig) validate() error {
	if !validAppID(a.AppID) {
		return fieldErr("app_id", "must be 1..64 letters, digits, '_' or '-', got %q", a.AppID)
	}
	if a.AppSecret.IsZero() {
		return fieldErr("app_secret", "required")
	}
	if !printable(a.AppSecret.Reveal(), 128) {
		return fieldErr("app_secret", "must be 1..128 printable ASCII characters")
	}
	if !a.PushToken.IsZero() {
		// WeChat's console accepts 3 to 32 letters and digits.
		if !alnum(a.PushToken.Reveal(), 3, 32) {
			return fieldErr("push_token", "must be 3..32 letters or digits")
		}
	}
	if !a.AESKey.IsZero() {
		if a.PushToken.IsZero() {
			return fieldErr("aes_key", "requires push_token (safe mode signs with the token)")
		}
		if _, err := aesKeyBytes(a.AESKey); err != nil {
			return fieldErr("aes_key", "%v", err)
		}
	}
	switch a.Subject {
	case "":
		a.Subject = SubjectOpenID
	case SubjectOpenID, SubjectUnionID:
	default:
		return fieldErr("subject", "must be %q or %q, got %q", SubjectOpenID, SubjectUnionID, a.Subject)
	}
	if len(a.LoginChannels) > maxLoginChannels {
		return fieldErr("login_channels", "at most %d patterns, got %d", maxLoginChannels, len(a.LoginChannels))
	}
	for j, p := range a.LoginChannels {
		if !validLoginPattern(p) {
			return fieldErr(fmt.Sprintf("login_channels[%d]", j),
				"must be a channel pattern ([A-Za-z0-9_:.@*-], \"{sub}\" for the subject), got %q", p)
		}
	}
	setDuration(&a.TokenLifetime, DefaultTokenLifetime)
	if a.TokenLifetime < time.Second || a.TokenLifetime > MaxTokenLifetime {
		return fieldErr("token_lifetime", "must be 1s..%v, got %v", MaxTokenLifetime, a.TokenLifetime)
	}
	switch a.MiniprogramState {
	case "":
		a.MiniprogramState = "formal"
	case "formal", "trial", "developer":
	default:
		return fieldErr("miniprogram_state", `must be "formal", "trial" or "developer", got %q`, a.MiniprogramState)
	}
	switch a.Lang {
	case "":
		a.Lang = "zh_CN"
	case "zh_CN", "en_US", "zh_HK", "zh_TW":
	default:
		return fieldErr("lang", `must be "zh_CN", "en_US", "zh_HK" or "zh_TW", got %q`, a.Lang)
	}
	if a.APIURL == "" {
		a.APIURL = DefaultAPIURL
	}
	u, err := url.Parse(a.APIURL)
	if err != nil {
		// The URL is not repeated: it may hold credentials.
		return fieldErr("api_url", "must be an http(s) URL")
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.User != nil {
		return fieldErr("api_url", "must be an http(s) URL without credentials or query, got %q", u.Redacted())
	}
	a.APIURL = strings.TrimSuffix(a.APIURL, "/")
	setDuration(&a.NotifyMaxAge, DefaultNotifyMaxAge)
	if a.NotifyMaxAge < time.Second {
		return fieldErr("notify_max_age", "must be at least 1s, got %v", a.NotifyMaxAge)
	}
	setDuration(&a.OfflineGrace, DefaultOfflineGrace)
	if a.OfflineGrace < 0 || a.OfflineGrace >= a.NotifyMaxAge {
		return fieldErr("offline_grace", "must be 0..notify_max_age (%v), got %v", a.NotifyMaxAge, a.OfflineGrace)
	}
	for j, t := range a.LongTermTemplates {
		if !validTemplateID(t) {
			return fieldErr(fmt.Sprintf("long_term_templates[%d]", j), "must be a template id (1..128 letters, digits, '_' or '-'), got %q", t)
		}
	}
	return nil
}

func (a *AppConfig) longTerm(template string) bool {
	return slices.Contains(a.LongTermTemplates, template)
}

// aesKeyBytes decodes an EncodingAESKey: 43 base64 characters, the
// base64 of the 32-byte AES key without its trailing "=".
func aesKeyBytes(k Secret) ([]byte, error) {
	s := k.Reveal()
	if len(s) != 43 {
		return nil, fmt.Errorf("must be 43 characters (WeChat's EncodingAESKey), got %d", len(s))
	}
	key, err := base64.StdEncoding.DecodeString(s + "=")
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("must be the base64 of a 32-byte key (WeChat's EncodingAESKey)")
	}
	return key, nil
}

func validAppID(s string) bool { return token(s, 64) }

func validTemplateID(s string) bool { return token(s, 128) }

// token: 1..max of [A-Za-z0-9_-], the alphabet of app ids, template ids,
// openids and unionids.
func token(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func alnum(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func printable(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// validLoginPattern: a channel pattern (pubsub's channel alphabet and the
// '*' glob), where "{sub}" stands for the subject.
func validLoginPattern(p string) bool {
	s := strings.ReplaceAll(p, "{sub}", "x")
	if len(s) == 0 || len(p) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == ':', c == '.', c == '@', c == '-', c == '*':
		default:
			return false
		}
	}
	return true
}
