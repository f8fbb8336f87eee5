package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/server/access"
)

// fullFile uses every field of the config file.
const fullFile = `
addr: 127.0.0.1:9100
log_level: warn
write_timeout: 3s
allowed_origins: [https://app.example.com, "*"]
jwt:
  secret: file-secret-0123456789abcdef-0123456789
  jwks_url: https://auth.example.com/.well-known/jwks.json
  issuer: https://auth.example.com/
  audience: pushgate
  leeway: 0s
api_keys:
  - name: orders-service
    secret: "s3cret:with:colons"
    channels: ["orders:*"]
  - name: admin
    secret: 0x10
    channels: ["*"]
namespaces:
  default:
    history_size: 500
    history_ttl: 2h
    anonymous_read: false
    token_publish: false
    presence: true
    max_message_size: 4096
  chat:
    history_size: 100
    history_ttl: 1h
    token_publish: true
    max_message_size: 1024
  news:
    anonymous_read: true
  private:
    anonymous_read: false
`

// writeFile writes content to a config file of the test and returns its
// path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pushgate.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigFile(t *testing.T) {
	path := writeFile(t, fullFile)
	fileKeys := []access.APIKey{
		{Name: "orders-service", Secret: "s3cret:with:colons", Channels: []string{"orders:*"}},
		{Name: "admin", Secret: "0x10", Channels: []string{"*"}},
	}
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c config)
	}{
		{
			name: "the file",
			args: []string{"--config", path},
			check: func(t *testing.T, c config) {
				want := withDefaults(config{
					Addr: "127.0.0.1:9100", LogLevel: c.LogLevel, WriteTimeout: 3 * time.Second,
					ShutdownTimeout: 10 * time.Second, IdempotencyWindow: 5 * time.Minute, RedisWaitTimeout: 100 * time.Millisecond,
					APIKeys: fileKeys, JWTSecret: "file-secret-0123456789abcdef-0123456789",
					HistorySize: 500, HistoryTTL: 2 * time.Hour, MaxMessageSize: 4096, Presence: true,
					ConfigFile: path, AllowedOrigins: []string{"https://app.example.com", "*"},
					JWT: access.TokenConfig{Secret: "file-secret-0123456789abcdef-0123456789", JWKSURL: "https://auth.example.com/.well-known/jwks.json",
						Issuer: "https://auth.example.com/", Audience: "pushgate", Leeway: -1},
					Namespaces: map[string]access.Namespace{
						"chat":    {HistorySize: 100, HistoryTTL: time.Hour, TokenPublish: true, Presence: true, MaxMessageSize: 1024},
						"news":    {HistorySize: 500, HistoryTTL: 2 * time.Hour, AnonymousRead: true, Presence: true, MaxMessageSize: 4096},
						"private": {HistorySize: 500, HistoryTTL: 2 * time.Hour, Presence: true, MaxMessageSize: 4096},
					},
				})
				if c.LogLevel.String() != "warn" {
					t.Errorf("log level %v", c.LogLevel)
				}
				if !reflect.DeepEqual(c, want) {
					t.Fatalf("got  %+v\nwant %+v", c, want)
				}
				ns := c.namespaces()
				if got := ns.Of("orders:1"); got != (access.Namespace{HistorySize: 500, HistoryTTL: 2 * time.Hour, Presence: true, MaxMessageSize: 4096}) {
					t.Errorf("default namespace %+v", got)
				}
				if size, ttl := ns.Retention("chat:1"); size != 100 || ttl != time.Hour {
					t.Errorf("chat retention %d %v", size, ttl)
				}
			},
		},
		{
			name: "flags and variables win over the file",
			args: []string{"--config", path, "--history-size", "7", "--allow-anonymous", "--api-key", "cli:k", "--jwt-secret", "flag-secret-0123456789abcdef-0123456789"},
			env:  map[string]string{"PUSHGATE_ADDR": ":9200", "PUSHGATE_MAX_MESSAGE_SIZE": "2048"},
			check: func(t *testing.T, c config) {
				if c.Addr != ":9200" || c.HistorySize != 7 || !c.AllowAnonymous || c.MaxMessageSize != 2048 || c.JWTSecret != "flag-secret-0123456789abcdef-0123456789" {
					t.Fatalf("flags did not win: %+v", c)
				}
				if !reflect.DeepEqual(c.APIKeys, []access.APIKey{{Name: "cli", Secret: "k"}}) {
					t.Fatalf("--api-key replaces the file's keys: %+v", c.APIKeys)
				}
				// A namespace inherits the default namespace's rules as
				// the flags set them, and keeps its own.
				if got := c.Namespaces["news"]; got.HistorySize != 7 || !got.AnonymousRead || got.MaxMessageSize != 2048 {
					t.Fatalf("news %+v", got)
				}
				if got := c.Namespaces["chat"]; got.HistorySize != 100 || !got.AnonymousRead || got.MaxMessageSize != 1024 {
					t.Fatalf("chat %+v", got)
				}
				if got := c.Namespaces["private"]; got.AnonymousRead {
					t.Fatalf("private %+v: its own anonymous_read: false must win over --allow-anonymous", got)
				}
				if !c.namespaces().Default.AnonymousRead {
					t.Fatal("--allow-anonymous is the default namespace's anonymous_read")
				}
			},
		},
		{
			name: "a flag set to its default still wins",
			args: []string{"--config", path, "--history-size", "1000", "--allow-anonymous=false"},
			check: func(t *testing.T, c config) {
				if c.HistorySize != 1000 || c.AllowAnonymous || c.Namespaces["news"].HistorySize != 1000 {
					t.Fatalf("%+v", c)
				}
			},
		},
		{
			name: "PUSHGATE_CONFIG",
			env:  map[string]string{"PUSHGATE_CONFIG": path},
			check: func(t *testing.T, c config) {
				if c.ConfigFile != path || c.HistorySize != 500 || len(c.APIKeys) != 2 {
					t.Fatalf("%+v", c)
				}
			},
		},
		{
			name: "an empty file",
			args: []string{"--config", writeFile(t, "# nothing yet\n")},
			check: func(t *testing.T, c config) {
				if c.Addr != ":8080" || c.HistorySize != 1000 || c.Namespaces != nil || c.APIKeys != nil {
					t.Fatalf("%+v", c)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestConfigFileErrors(t *testing.T) {
	key := func(fields string) string {
		return "api_keys:\n  - {" + fields + "}\n"
	}
	tests := []struct {
		name string
		file string
		want []string // in the message
	}{
		{"history_size", "namespaces:\n  chat:\n    history_size: -1\n",
			[]string{"config: namespaces.chat.history_size: must be 1..100000, got -1"}},
		{"history_size too big", "namespaces: {chat: {history_size: 100001}}", []string{"namespaces.chat.history_size", "got 100001"}},
		{"history_size of the default namespace", "namespaces: {default: {history_size: 0}}",
			[]string{"config: namespaces.default.history_size: must be 1..100000, got 0"}},
		{"history_ttl", "namespaces: {news: {history_ttl: forever}}", []string{"namespaces.news.history_ttl", "positive duration", `got "forever"`}},
		{"negative history_ttl", "namespaces: {news: {history_ttl: -1h}}", []string{"namespaces.news.history_ttl"}},
		{"anonymous_read", "namespaces: {news: {anonymous_read: yes}}", []string{"namespaces.news.anonymous_read: must be true or false", `got "yes"`}},
		{"token_publish", "namespaces: {chat: {token_publish: 1.5}}", []string{"namespaces.chat.token_publish"}},
		{"presence", "namespaces: {chat: {presence: on}}", []string{"namespaces.chat.presence"}},
		{"max_message_size", "namespaces: {chat: {max_message_size: 0}}", []string{"namespaces.chat.max_message_size: must be 1..16777216"}},
		{"not a single value", "namespaces: {chat: {history_size: [1, 2]}}", []string{"namespaces.chat.history_size: must be a single value, got a sequence"}},
		{"namespace name with a colon", `namespaces: {"a:b": {}}`, []string{"namespaces.a:b", "namespace name"}},
		{"namespace name with a space", `namespaces: {"a b": {}}`, []string{"namespaces.a b"}},
		{"anonymous user channels", "namespaces: {user: {anonymous_read: true}}", []string{"namespaces.user.anonymous_read", "must be false"}},
		{"unknown field", "addr: :1\nnope: 1\n", []string{"config:", "pushgate.yaml:2:1", `unknown field "nope"`}},
		{"unknown namespace field", "namespaces:\n  chat:\n    histroy_size: 3\n", []string{"pushgate.yaml:3:5", `unknown field "histroy_size"`}},
		{"unknown key field", key("name: a, secret: b, channels: ['*'], scope: x"), []string{`unknown field "scope"`}},
		{"a field twice", "addr: :1\naddr: :2\n", []string{"pushgate.yaml:2:1", `"addr" already defined`}},
		{"not YAML", "namespaces: {chat: [}", []string{"config:", "pushgate.yaml"}},
		{"a list for a map", "namespaces: [chat]", []string{"pushgate.yaml:1:13"}},
		{"key without name", key("secret: b, channels: ['*']"), []string{"config: api_keys[0].name: is required"}},
		{"key without secret", key("name: a, channels: ['*']"), []string{"config: api_keys[0].secret: is required"}},
		{"key without channels", key("name: a, secret: b"), []string{"config: api_keys[0].channels: must list", `"*"`}},
		{"key with a bad pattern", key("name: a, secret: b, channels: ['orders:*', 'bad pattern']"),
			[]string{"config: api_keys[0].channels[1]:", `got "bad pattern"`}},
		{"key with a bad name", key("name: 'a:b', secret: b, channels: ['*']"), []string{"api_keys[0].name"}},
		{"two keys with one name", key("name: a, secret: b, channels: ['*']") + "  - {name: a, secret: c, channels: ['*']}\n",
			[]string{"api_keys[1]", "twice"}},
		{"two keys with one secret", key("name: a, secret: b, channels: ['*']") + "  - {name: c, secret: b, channels: ['*']}\n",
			[]string{"api_keys[1]", "same secret"}},
		{"addr", "addr: nonsense", []string{"config: addr: must be host:port or :port", `got "nonsense"`}},
		{"log_level", "log_level: loud", []string{"config: log_level:"}},
		{"redis_url", "redis_url: http://localhost", []string{"config: redis_url:"}},
		{"write_timeout", "write_timeout: 1", []string{"config: write_timeout:"}},
		{"jwks_url", "jwt: {jwks_url: 'ftp://example.com/keys'}", []string{"config: jwt.jwks_url: must be an http(s) URL"}},
		{"leeway", "jwt: {leeway: -1s}", []string{"config: jwt.leeway"}},
		{"jwt field", "jwt: {secrets: x}", []string{`unknown field "secrets"`}},
		{"empty origin", "allowed_origins: ['']", []string{"config: allowed_origins[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig([]string{"--config", writeFile(t, tt.file)}, func(string) string { return "" }, io.Discard)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := parseConfig(nil, func(k string) string {
			return map[string]string{"PUSHGATE_CONFIG": "/nonexistent/pushgate.yaml"}[k]
		}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "config:") || !strings.Contains(err.Error(), "/nonexistent/pushgate.yaml") {
			t.Fatalf("error %v", err)
		}
	})
}

func TestAPIKeyFlag(t *testing.T) {
	for _, tt := range []struct {
		args []string
		env  string
		want []access.APIKey
	}{
		{args: []string{"--api-key", "a:s"}, want: []access.APIKey{{Name: "a", Secret: "s"}}},
		{args: []string{"--api-key", "orders[orders:*,billing:*]:s3c:ret"},
			want: []access.APIKey{{Name: "orders", Secret: "s3c:ret", Channels: []string{"orders:*", "billing:*"}}}},
		{args: []string{"--api-key", "one[news:1]:x", "--api-key", "all:y"},
			want: []access.APIKey{{Name: "one", Secret: "x", Channels: []string{"news:1"}}, {Name: "all", Secret: "y"}}},
		{env: "orders[orders:*, billing:*]:s1, admin:s2",
			want: []access.APIKey{{Name: "orders", Secret: "s1", Channels: []string{"orders:*", "billing:*"}}, {Name: "admin", Secret: "s2"}}},
	} {
		c, err := parseConfig(tt.args, func(k string) string {
			return map[string]string{"PUSHGATE_API_KEYS": tt.env}[k]
		}, io.Discard)
		if err != nil {
			t.Errorf("%v %q: %v", tt.args, tt.env, err)
			continue
		}
		if !reflect.DeepEqual(c.APIKeys, tt.want) {
			t.Errorf("%v %q: keys %+v, want %+v", tt.args, tt.env, c.APIKeys, tt.want)
		}
	}
	for _, tt := range []struct {
		arg  string
		want string
	}{
		{"a[orders:*:s", "name[pattern,...]:secret"},
		{"a[orders:*]s", "name[pattern,...]:secret"},
		{"a[]:s", "channel pattern"},
		{"a[bad pattern]:s", `"bad pattern"`},
		{"a[orders:*]:", "name[pattern,...]:secret"},
		{"[orders:*]:s", "name[pattern,...]:secret"},
		{"a b:s", "the name"},
	} {
		_, err := parseConfig([]string{"--api-key", tt.arg}, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--api-key") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("--api-key %q: error %v, want one mentioning %q", tt.arg, err, tt.want)
		}
	}
	_, err := parseConfig([]string{"--api-key", "a:same", "--api-key", "b:same"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "same secret") {
		t.Errorf("two keys with one secret: %v", err)
	}
}

// TestRunConfigFile: pushgate started with a config file applies each
// namespace's retention, on either store.
func TestRunConfigFile(t *testing.T) {
	path := writeFile(t, `
namespaces:
  default:
    history_size: 5
  chat:
    history_size: 3
`)
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			args := []string{"--config", path}
			if store == "redis" {
				args = append(args, "--redis-url", redistest.Start(t).URL())
			}
			p := start(t, args...)
			for i := range 6 {
				p.send(t, "chat:1", i)
				p.send(t, "news:1", i)
			}
			ids := func(ch string) string {
				var s []string
				for _, m := range p.history(t, ch) {
					s = append(s, m.ID)
				}
				return strings.Join(s, " ")
			}
			if got := ids("chat:1"); got != "4 5 6" {
				t.Errorf("chat:1 retains %q, want the newest 3", got)
			}
			if got := ids("news:1"); got != "2 3 4 5 6" {
				t.Errorf("news:1 retains %q, want the newest 5 (the default namespace's)", got)
			}
		})
	}
}

// TestREADMEConfigFile: the config file shown in docs/access.md (the
// README's Access section moved there) is valid.
func TestREADMEConfigFile(t *testing.T) {
	readme, err := os.ReadFile("../../docs/access.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "```yaml\n# pushgate.yaml\n")
	if !ok {
		t.Fatal("README: no ```yaml block starting with # pushgate.yaml")
	}
	block, _, _ = strings.Cut(block, "```")
	c, err := parseConfig([]string{"--config", writeFile(t, block)}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("the README's config file: %v", err)
	}
	if len(c.APIKeys) != 2 || c.Namespaces["chat"].HistorySize != 200 || !c.Namespaces["news"].AnonymousRead {
		t.Fatalf("the README's config file: %+v", c)
	}
}
