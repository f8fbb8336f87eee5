package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushgate/pushgate/internal/redistest"
)

const (
	key     = "test-key"
	timeout = 15 * time.Second
)

// logSink collects run's JSON log and reports the listening address.
type logSink struct {
	mu    sync.Mutex
	lines []string
	addr  chan string
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.lines = append(s.lines, string(p))
	s.mu.Unlock()
	var line struct {
		Message string `json:"message"`
		Addr    string `json:"addr"`
	}
	if json.Unmarshal(p, &line) == nil && line.Message == "pushgate listening" {
		s.addr <- line.Addr
	}
	return len(p), nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "")
}

// instance is one pushgate started in-process by run.
type instance struct {
	url  string
	log  *logSink
	stop func() error
}

// start runs pushgate with args on a free port until stop (or the end of
// the test).
func start(t *testing.T, args ...string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sink := &logSink{addr: make(chan string, 1)}
	var stderr bytes.Buffer
	done := make(chan error, 1)
	args = append([]string{"--addr", "127.0.0.1:0", "--api-key", "test:" + key}, args...)
	go func() { done <- run(ctx, args, func(string) string { return "" }, sink, &stderr) }()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(timeout):
				t.Errorf("run did not return within %v of its context's end", timeout)
			}
		})
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	select {
	case addr := <-sink.addr:
		return &instance{url: "http://" + addr, log: sink, stop: stop}
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, sink)
	case <-time.After(timeout):
		t.Fatalf("pushgate did not start:\n%s", sink)
	}
	return nil
}

type gqlResult struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message    string `json:"message"`
		Extensions struct {
			Code string `json:"code"`
		} `json:"extensions"`
	} `json:"errors"`
}

func (p *instance) do(t *testing.T, query string, vars map[string]any, out any) {
	t.Helper()
	r, err := p.tryPost(query, vars)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Errors) > 0 {
		t.Fatalf("errors: %+v", r.Errors)
	}
	if err := json.Unmarshal(r.Data, out); err != nil {
		t.Fatal(err)
	}
}

type msg struct {
	ID     string          `json:"id"`
	Data   json.RawMessage `json:"data"`
	Cursor string          `json:"cursor"`
}

func (p *instance) send(t *testing.T, channel string, data any) msg {
	t.Helper()
	var out struct{ Send struct{ Message msg } }
	p.do(t, `mutation($ch: String!, $d: JSON!) { send(input: {channel: $ch, data: $d}) { message { id data cursor } } }`,
		map[string]any{"ch": channel, "d": data}, &out)
	return out.Send.Message
}

func (p *instance) history(t *testing.T, channel string) []msg {
	t.Helper()
	var out struct{ History struct{ Nodes []msg } }
	p.do(t, `query($ch: String!) { history(channel: $ch, first: 1000) { nodes { id data cursor } } }`,
		map[string]any{"ch": channel}, &out)
	return out.History.Nodes
}

func TestRunMemory(t *testing.T) {
	// A grace period longer than stop waits for run to return (15 s): run
	// returning at all means it ended the open stream itself.
	p := start(t, "--shutdown-timeout", "5m")
	res, err := http.Get(p.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("healthz: %d %q", res.StatusCode, body)
	}
	sent := p.send(t, "orders:1", map[string]any{"n": 1})
	h := p.history(t, "orders:1")
	if len(h) != 1 || h[0].ID != sent.ID || string(h[0].Data) != `{"n":1}` {
		t.Fatalf("history %+v, sent %+v", h, sent)
	}
	if !strings.Contains(p.log.String(), `"store":"memory"`) {
		t.Fatalf("the start-up log does not name the store:\n%s", p.log)
	}

	// Shutdown ends open subscriptions and returns promptly.
	c := dialFeed(t, p, []string{"orders:1"}, sent.Cursor)
	second := p.send(t, "orders:1", 2)
	if ev := c.next(t); ev.ID != second.ID {
		t.Fatalf("feed: %+v, want %+v", ev, second)
	}
	if err := p.stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	c.waitClosed(t)
}

// TestRunRedis: history and resume survive a restart of pushgate on the
// same Redis.
func TestRunRedis(t *testing.T) {
	r := redistest.Start(t)
	const ch = "orders:9"
	p := start(t, "--redis-url", r.URL())
	if !strings.Contains(p.log.String(), `"store":"redis `) {
		t.Fatalf("the start-up log does not name the store:\n%s", p.log)
	}
	var sent []msg
	for i := 1; i <= 20; i++ {
		sent = append(sent, p.send(t, ch, i))
	}
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}

	p2 := start(t, "--redis-url", r.URL())
	h := p2.history(t, ch)
	if len(h) != 20 {
		t.Fatalf("history after restart: %d messages", len(h))
	}
	for i, m := range h {
		if m.ID != sent[i].ID || string(m.Data) != fmt.Sprint(i+1) || m.Cursor != sent[i].Cursor {
			t.Fatalf("message %d after restart: %+v, sent %+v", i, m, sent[i])
		}
	}
	c := dialFeed(t, p2, []string{ch}, sent[9].Cursor)
	for i := 11; i <= 20; i++ {
		if ev := c.next(t); ev.ID != fmt.Sprint(i) {
			t.Fatalf("resumed feed: got id %s, want %d", ev.ID, i)
		}
	}
	live := p2.send(t, ch, 21)
	if ev := c.next(t); ev.ID != live.ID || live.ID != "21" {
		t.Fatalf("live after resume: %+v, sent %+v", ev, live)
	}
}

// feedClient is a minimal graphql-transport-ws client.
type feedClient struct {
	conn   *websocket.Conn
	events chan msg
	done   chan struct{}
}

func dialFeed(t *testing.T, p *instance, channels []string, cursor string) *feedClient {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: timeout}
	conn, res, err := d.Dial("ws"+strings.TrimPrefix(p.url, "http")+"/graphql", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	t.Cleanup(func() { conn.Close() })
	write := func(v any) {
		if err := conn.WriteJSON(v); err != nil {
			t.Fatal(err)
		}
	}
	write(map[string]any{"type": "connection_init", "payload": map[string]any{"token": key}})
	vars := map[string]any{"channels": channels}
	if cursor != "" {
		vars["cursor"] = cursor
	}
	write(map[string]any{"type": "subscribe", "id": "1", "payload": map[string]any{
		"query":     `subscription($channels: [String!]!, $cursor: String) { feed(channels: $channels, cursor: $cursor) { ... on Message { id data cursor } } }`,
		"variables": vars,
	}})
	c := &feedClient{conn: conn, events: make(chan msg, 100), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			var m struct {
				Type    string `json:"type"`
				Payload struct {
					Data struct{ Feed msg }
				} `json:"payload"`
			}
			if err := conn.ReadJSON(&m); err != nil {
				return
			}
			switch m.Type {
			case "next":
				c.events <- m.Payload.Data.Feed
			case "ping":
				_ = conn.WriteJSON(map[string]any{"type": "pong"})
			}
		}
	}()
	return c
}

func (c *feedClient) next(t *testing.T) msg {
	t.Helper()
	select {
	case m := <-c.events:
		return m
	case <-c.done:
		t.Fatal("feed connection closed")
	case <-time.After(timeout):
		t.Fatal("no feed event")
	}
	return msg{}
}

func (c *feedClient) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatal("the feed connection is still open after shutdown")
	}
}
