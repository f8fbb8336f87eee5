package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/redistest"
)

// TestInvalidConfigStopsStartup: run, given an invalid config file (by
// --config or PUSHGATE_CONFIG) or flag, returns an error naming the field
// before it listens or opens a store.
func TestInvalidConfigStopsStartup(t *testing.T) {
	for _, tt := range []struct {
		name string
		file string // "" for none
		env  bool   // the file by PUSHGATE_CONFIG rather than --config
		args []string
		want string
	}{
		{"history_size", "namespaces:\n  chat:\n    history_size: -1\n", false, nil,
			"config: namespaces.chat.history_size: must be 1..100000, got -1"},
		{"by PUSHGATE_CONFIG", "namespaces: {news: {anonymous_read: yes}}", true, nil,
			"namespaces.news.anonymous_read: must be true or false"},
		{"unknown field", "namespaces:\n  chat:\n    histroy_size: 3\n", false, nil, `unknown field "histroy_size"`},
		{"api key pattern", "api_keys:\n  - {name: a, secret: b, channels: ['bad pattern']}\n", false, nil,
			"config: api_keys[0].channels[0]:"},
		{"jwks_url", "jwt: {jwks_url: 'ftp://example.com/keys'}", false, nil, "config: jwt.jwks_url"},
		{"flag", "", false, []string{"--api-key", "a[bad pattern]:s"}, "--api-key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			args := append([]string{"--addr", "127.0.0.1:0"}, tt.args...)
			if tt.file != "" {
				path := writeFile(t, tt.file)
				if tt.env {
					env["PUSHGATE_CONFIG"] = path
				} else {
					args = append(args, "--config", path)
				}
			}
			sink := &logSink{addr: make(chan string, 1)}
			var stderr strings.Builder
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- run(ctx, args, func(k string) string { return env[k] }, sink, &stderr) }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("run returned %v, want an error naming %q", err, tt.want)
				}
			case addr := <-sink.addr:
				t.Fatalf("pushgate started on %s with an invalid config", addr)
			case <-time.After(timeout):
				t.Fatal("run neither failed nor started")
			}
			if log := sink.String(); strings.Contains(log, "pushgate listening") {
				t.Fatalf("the log says it listened:\n%s", log)
			}
		})
	}
}

// TestRunNamespaceHistoryTTL: a namespace's history_ttl from the config
// file bounds the age of its channels' history, on either store, while the
// default namespace keeps its messages.
func TestRunNamespaceHistoryTTL(t *testing.T) {
	path := writeFile(t, `
namespaces:
  default:
    history_ttl: 1h
  live:
    history_ttl: 1s
`)
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			args := []string{"--config", path}
			if store == "redis" {
				args = append(args, "--redis-url", redistest.Start(t).URL())
			}
			p := start(t, args...)
			sent := p.send(t, "live:1", "short-lived")
			p.send(t, "news:1", "kept")
			// Retained at first (the TTL has a second's margin)...
			if h := p.history(t, "live:1"); len(h) != 1 || h[0].ID != sent.ID {
				t.Fatalf("live:1 right after the send: %+v", h)
			}
			// ...and dropped once older than the namespace's TTL.
			deadline := time.Now().Add(timeout)
			for len(p.history(t, "live:1")) != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("live:1 still holds %s after %v", sent.ID, timeout)
				}
				time.Sleep(50 * time.Millisecond) // polling, bounded by deadline
			}
			if h := p.history(t, "news:1"); len(h) != 1 {
				t.Fatalf("news:1 (the default namespace's 1h) holds %+v", h)
			}
		})
	}
}
