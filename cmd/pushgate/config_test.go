package main

import (
	"errors"
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/limits"
)

// withDefaults sets, on c, the defaults of the flags beyond the basic ones.
func withDefaults(c config) config {
	c.MaxBodyBytes = 1 << 20
	c.GCMinHeapMB = 64
	c.GoMaxProcs = -1
	c.Heartbeat = 15 * time.Second
	c.RedisWait = 30 * time.Second
	c.Limits = limits.Limits{
		MaxSubscriptionsPerConnection: 100, MaxConnectionsPerSubject: 100, MaxConnectionsPerIP: 1000,
		ConnectRatePerIP: limits.Rate{PerSecond: 50}, SendRatePerKey: limits.Rate{PerSecond: 1000},
		SendRatePerToken: limits.Rate{PerSecond: 10}, MaxQueryDepth: 10, MaxQueryComplexity: 10000,
		WechatLoginRatePerIP: limits.Rate{PerSecond: 10},
	}
	c.wechatFlags.OfflineGrace, c.wechatFlags.NotifyMaxAge = 10*time.Second, 24*time.Hour
	return c
}

func TestParseConfig(t *testing.T) {
	defaults := withDefaults(config{
		Addr:              ":8080",
		HistorySize:       1000,
		HistoryTTL:        24 * time.Hour,
		IdempotencyWindow: 5 * time.Minute,
		MaxMessageSize:    65536,
		WriteTimeout:      10 * time.Second,
		ShutdownTimeout:   10 * time.Second,
		RedisWaitTimeout:  100 * time.Millisecond,
		LogLevel:          zerolog.InfoLevel,
	})
	with := func(f func(c *config)) config {
		c := defaults
		f(&c)
		return c
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want config
	}{
		{name: "defaults", want: defaults},
		{
			name: "environment",
			env: map[string]string{
				"PUSHGATE_ADDR": "127.0.0.1:9000", "PUSHGATE_API_KEYS": "a:1, b:2", "PUSHGATE_JWT_SECRET": secret32,
				"PUSHGATE_ALLOW_ANONYMOUS": "true", "PUSHGATE_HISTORY_SIZE": "10", "PUSHGATE_HISTORY_TTL": "1h",
				"PUSHGATE_IDEMPOTENCY_WINDOW": "30s", "PUSHGATE_MAX_MESSAGE_SIZE": "1024", "PUSHGATE_LOG_LEVEL": "DEBUG",
				"PUSHGATE_WRITE_TIMEOUT": "2s", "PUSHGATE_SHUTDOWN_TIMEOUT": "3s",
			},
			want: with(func(c *config) {
				c.Addr, c.JWTSecret, c.JWT.Secret, c.AllowAnonymous = "127.0.0.1:9000", secret32, secret32, true
				c.APIKeys = []access.APIKey{{Name: "a", Secret: "1"}, {Name: "b", Secret: "2"}}
				c.HistorySize, c.HistoryTTL, c.IdempotencyWindow, c.MaxMessageSize = 10, time.Hour, 30*time.Second, 1024
				c.LogLevel, c.WriteTimeout, c.ShutdownTimeout = zerolog.DebugLevel, 2*time.Second, 3*time.Second
			}),
		},
		{
			name: "flags win over the environment",
			args: []string{"--addr", ":1", "--api-key", "f:x", "--api-key=g:y:z", "--history-size=7", "--allow-anonymous=false", "-log-level", "warn"},
			env:  map[string]string{"PUSHGATE_ADDR": ":2", "PUSHGATE_API_KEYS": "e:1", "PUSHGATE_HISTORY_SIZE": "9", "PUSHGATE_ALLOW_ANONYMOUS": "1"},
			want: with(func(c *config) {
				c.Addr, c.HistorySize, c.LogLevel = ":1", 7, zerolog.WarnLevel
				c.APIKeys = []access.APIKey{{Name: "f", Secret: "x"}, {Name: "g", Secret: "y:z"}}
			}),
		},
		{
			name: "a boolean flag without value",
			args: []string{"--allow-anonymous"},
			want: with(func(c *config) { c.AllowAnonymous = true }),
		},
		{
			name: "the last of a repeated flag wins",
			args: []string{"--addr", ":1", "--addr", ":3"},
			want: with(func(c *config) { c.Addr = ":3" }),
		},
		{
			name: "redis url",
			args: []string{"--redis-url", "redis://:pw@localhost:6380/2"},
			want: with(func(c *config) { c.RedisURL = "redis://:pw@localhost:6380/2" }),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want.RedisURL != "" {
				if got.Redis == nil || len(got.Redis.Addrs) != 1 || got.Redis.Addrs[0] != "localhost:6380" || got.Redis.DB != 2 || got.Redis.Password != "pw" {
					t.Fatalf("redis options %+v", got.Redis)
				}
			}
			got.Redis = nil
			if !equalConfig(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want []string // in the message
	}{
		{args: []string{"--history-size", "0"}, want: []string{"--history-size", `"0"`}},
		{args: []string{"--history-size", "many"}, want: []string{"--history-size"}},
		{env: map[string]string{"PUSHGATE_HISTORY_TTL": "forever"}, want: []string{"--history-ttl", "PUSHGATE_HISTORY_TTL", "duration"}},
		{args: []string{"--history-ttl", "-1h"}, want: []string{"--history-ttl"}},
		{args: []string{"--idempotency-window", "0s"}, want: []string{"--idempotency-window"}},
		{args: []string{"--max-message-size", "-5"}, want: []string{"--max-message-size"}},
		{args: []string{"--api-key", "nocolon"}, want: []string{"--api-key", "name:secret"}},
		{args: []string{"--api-key", ":secret"}, want: []string{"--api-key"}},
		{args: []string{"--api-key", "a:1", "--api-key", "a:2"}, want: []string{"--api-key", "twice"}},
		{env: map[string]string{"PUSHGATE_API_KEYS": "a:1,broken"}, want: []string{"--api-key", "PUSHGATE_API_KEYS"}},
		{args: []string{"--redis-url", "http://localhost"}, want: []string{"--redis-url"}},
		{args: []string{"--log-level", "loud"}, want: []string{"--log-level"}},
		{args: []string{"--addr", "nonsense"}, want: []string{"--addr"}},
		{env: map[string]string{"PUSHGATE_ALLOW_ANONYMOUS": "perhaps"}, want: []string{"--allow-anonymous", "PUSHGATE_ALLOW_ANONYMOUS"}},
		{args: []string{"--write-timeout", "1"}, want: []string{"--write-timeout"}},
		{args: []string{"--nope"}, want: []string{"nope"}},
		{args: []string{"serve"}, want: []string{"unexpected argument"}},
	}
	for _, tt := range tests {
		_, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
		if err == nil {
			t.Errorf("%v %v: no error", tt.args, tt.env)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v %v: error %q does not mention %q", tt.args, tt.env, err, w)
			}
		}
	}
	if _, err := parseConfig([]string{"-h"}, func(string) string { return "" }, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func equalConfig(a, b config) bool { return reflect.DeepEqual(a, b) }

func TestParseLimitAndTokenFlags(t *testing.T) {
	c, err := parseConfig([]string{
		"--max-connections-per-ip", "off", "--max-subscriptions-per-connection", "5",
		"--connect-rate-per-ip", "10/30", "--send-rate-per-token", "off",
		"--allowed-origin", "https://a.example", "--allowed-origin", "https://*.b.example",
		"--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "192.168.1.1",
		"--jwt-secret", secret32, "--jwt-issuer", "iss", "--jwt-audience", "aud", "--jwt-leeway", "0s",
		"--introspection=false", "--sse-heartbeat", "5s", "--max-body-bytes", "2048", "--gc-min-heap-mb", "0", "--gomaxprocs", "3",
	}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Limits
	if l.MaxConnectionsPerIP != -1 || l.MaxSubscriptionsPerConnection != 5 || l.ConnectRatePerIP != (limits.Rate{PerSecond: 10, Burst: 30}) ||
		l.SendRatePerToken.PerSecond != -1 || !l.DisableIntrospection {
		t.Fatalf("limits = %+v", l)
	}
	if len(c.AllowedOrigins) != 2 || len(c.TrustedProxies) != 2 || c.TrustedProxies[1].Bits() != 32 {
		t.Fatalf("origins %v proxies %v", c.AllowedOrigins, c.TrustedProxies)
	}
	if c.JWT.Secret != secret32 || c.JWT.Issuer != "iss" || c.JWT.Audience != "aud" || c.JWT.Leeway != -1 {
		t.Fatalf("jwt = %+v", c.JWT)
	}
	if c.Heartbeat != 5*time.Second || c.MaxBodyBytes != 2048 || c.GCMinHeapMB != 0 || c.GoMaxProcs != 3 {
		t.Fatalf("heartbeat %v body %d gc min heap %d gomaxprocs %d", c.Heartbeat, c.MaxBodyBytes, c.GCMinHeapMB, c.GoMaxProcs)
	}
	for _, bad := range [][]string{
		{"--max-connections-per-ip", "0"}, {"--connect-rate-per-ip", "fast"}, {"--connect-rate-per-ip", "5/0"},
		{"--trusted-proxy", "nope"}, {"--jwks-url", "ftp://x"}, {"--jwt-leeway", "1h"}, {"--introspection=maybe"},
		{"--gc-min-heap-mb", "-1"}, {"--gc-min-heap-mb", "64MB"}, {"--gc-min-heap-mb", "2000000"},
		{"--gomaxprocs", "-1"}, {"--gomaxprocs", "many"}, {"--gomaxprocs", "5000"},
	} {
		flagName, _, _ := strings.Cut(bad[0], "=")
		if _, err := parseConfig(bad, func(string) string { return "" }, io.Discard); err == nil || !strings.Contains(err.Error(), flagName) {
			t.Errorf("%v: err = %v, want one naming the flag", bad, err)
		}
	}
}
