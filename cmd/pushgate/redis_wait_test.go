package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/redistest"
)

// msgSink collects run's JSON log and hands over the addr of the first
// line with each message it was asked about.
type msgSink struct {
	mu    sync.Mutex
	lines []string
	want  map[string]chan string // message -> addr
}

func newMsgSink(messages ...string) *msgSink {
	s := &msgSink{want: map[string]chan string{}}
	for _, m := range messages {
		s.want[m] = make(chan string, 1)
	}
	return s
}

func (s *msgSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.lines = append(s.lines, string(p))
	s.mu.Unlock()
	var line struct{ Message, Addr string }
	if json.Unmarshal(p, &line) == nil {
		for m, ch := range s.want {
			if strings.HasPrefix(line.Message, m) {
				select {
				case ch <- line.Addr:
				default:
				}
			}
		}
	}
	return len(p), nil
}

func (s *msgSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "")
}

// await returns the addr of the first line with message.
func (s *msgSink) await(t *testing.T, message string, done <-chan error) string {
	t.Helper()
	select {
	case addr := <-s.want[message]:
		return addr
	case err := <-done:
		t.Fatalf("run returned %v before logging %q:\n%s", err, message, s)
	case <-time.After(timeout):
		t.Fatalf("no %q within %v:\n%s", message, timeout, s)
	}
	return ""
}

// TestRedisWaitBecomesReady: pushgate started before its Redis listens at
// once, answers /healthz 200 and /readyz (and GraphQL) 503 UNAVAILABLE
// naming --redis-url while it waits, and serves once a redis-server comes
// up on the URL's port: sends and history work.
func TestRedisWaitBecomesReady(t *testing.T) {
	rs := redistest.Start(t)
	rs.Stop(t) // its port is free now: Redis is "not started yet"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink := newMsgSink("waiting for Redis", "pushgate listening")
	done := make(chan error, 1)
	args := []string{"--addr", "127.0.0.1:0", "--api-key", "test:" + key, "--redis-url", rs.URL(), "--redis-wait", "1m"}
	go func() { done <- run(ctx, args, func(string) string { return "" }, sink, io.Discard) }()
	url := "http://" + sink.await(t, "waiting for Redis", done)

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := get("/healthz"); status != http.StatusOK {
		t.Errorf("/healthz while waiting: %d %s", status, body)
	}
	for _, path := range []string{"/readyz", "/graphql?query=%7B__typename%7D"} {
		status, body := get(path)
		var e struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal([]byte(body), &e)
		if status != http.StatusServiceUnavailable || e.Error.Code != "UNAVAILABLE" || !strings.Contains(e.Error.Message, "--redis-url") {
			t.Errorf("%s while waiting: %d %s; want 503 UNAVAILABLE naming --redis-url", path, status, body)
		}
	}

	rs.Start(t)
	if addr := sink.await(t, "pushgate listening", done); "http://"+addr != url {
		t.Fatalf("ready on %s, waited on %s", addr, url)
	}
	if status, body := get("/readyz"); status != http.StatusOK {
		t.Fatalf("/readyz once Redis is up: %d %s", status, body)
	}
	p := &instance{url: url}
	sent := p.send(t, "news", "after the wait")
	if h := p.history(t, "news"); len(h) != 1 || h[0].ID != sent.ID {
		t.Fatalf("history %+v, want message %s", h, sent.ID)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// TestRedisWaitGivesUp: the pushgate binary with no Redis on its URL exits
// non-zero once --redis-wait has passed, saying which setting to look at
// and why; --redis-wait 0s tries once. Stopped while waiting, run returns
// without an error.
func TestRedisWaitGivesUp(t *testing.T) {
	rs := redistest.Start(t)
	rs.Stop(t)
	bin := filepath.Join(t.TempDir(), "pushgate")
	if b, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	for _, tt := range []struct {
		wait string
		want []string
	}{
		{"1s", []string{"pushgate: gave up after --redis-wait 1s: open --redis-url", rs.Addr(), "connection refused"}},
		{"0s", []string{"open --redis-url", "--redis-wait 0s: tried once"}},
	} {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(bin, "--addr", "127.0.0.1:0", "--redis-url", rs.URL(), "--redis-wait", tt.wait)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("--redis-wait %s: %v, want a non-zero exit\n%s%s", tt.wait, err, stdout.String(), stderr.String())
		}
		for _, w := range tt.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("--redis-wait %s: stderr %q does not say %q", tt.wait, stderr.String(), w)
			}
		}
		if strings.Contains(stdout.String(), "pushgate listening") {
			t.Errorf("--redis-wait %s: the log says it was ready:\n%s", tt.wait, stdout.String())
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	sink := newMsgSink("waiting for Redis")
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--redis-url", rs.URL()}, func(string) string { return "" }, sink, io.Discard)
	}()
	sink.await(t, "waiting for Redis", done)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("stopped while waiting: run returned %v", err)
	}
}

// TestRedisWaitZeroWithRedisUp: --redis-wait 0s still makes its one try
// in full: with Redis up, pushgate serves.
func TestRedisWaitZeroWithRedisUp(t *testing.T) {
	p := start(t, "--redis-url", redistest.Start(t).URL(), "--redis-wait", "0s")
	sent := p.send(t, "news", "no wait needed")
	if h := p.history(t, "news"); len(h) != 1 || h[0].ID != sent.ID {
		t.Fatalf("history %+v, want message %s", h, sent.ID)
	}
}
