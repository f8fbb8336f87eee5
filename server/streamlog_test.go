package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/internal/logbuf"
	"github.com/pushgate/pushgate/internal/pushclient"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
)

// TestStreamLogsCloseReasons: every streaming connection logs "stream
// open" and "stream closed" with who closed it and why: a client that
// leaves (SSE and WebSocket), a slow client the server drops, and a
// shutdown (WebSocket close code 1012), each with its transport.
func TestStreamLogsCloseReasons(t *testing.T) {
	var logs logbuf.Buffer
	cfg := testConfig()
	cfg.WriteTimeout = 300 * time.Millisecond
	broker := memoryBroker(t, pubsub.Options{HistorySize: 500})
	base, shutdown := context.WithCancelCause(context.Background())
	defer shutdown(nil)
	ts := httptest.NewUnstartedServer(server.New(cfg, broker, zerolog.New(&logs)))
	ts.Config.BaseContext = func(net.Listener) context.Context { return base }
	ts.Start()
	t.Cleanup(ts.Close)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	closed := func() []map[string]any {
		var out []map[string]any
		for line := range strings.Lines(logs.String()) {
			var l map[string]any
			if json.Unmarshal([]byte(line), &l) == nil && l["message"] == "stream closed" {
				out = append(out, l)
			}
		}
		return out
	}
	summary := func(l map[string]any) string {
		s := fmt.Sprintf("%v by %v: %v", l["transport"], l["closed_by"], l["reason"])
		if d, ok := l["drop"]; ok {
			s += fmt.Sprintf(" (drop %v)", d)
		}
		if c, ok := l["close_code"]; ok {
			s += fmt.Sprintf(" [%v]", c)
		}
		return s
	}
	waitClosed := func(n int) {
		t.Helper()
		eventually(t, fmt.Sprintf("%d stream closed lines", n), func() bool { return len(closed()) >= n })
	}

	// Clients that leave.
	sse, err := pushclient.OpenSSE(ctx, ts.URL, []string{"logs:1"}, "", testKey)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := pushclient.OpenWS(ctx, ts.URL, []string{"logs:1"}, "", testKey)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "two streams open", func() bool { return strings.Count(logs.String(), `"stream open"`) >= 2 })
	sse.Close()
	ws.Close()
	waitClosed(2)

	// A slow client: a raw SSE connection that never reads while a lot is
	// sent.
	u := strings.TrimPrefix(ts.URL, "http://")
	conn, err := net.Dial("tcp", u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	fmt.Fprintf(conn, "GET /events?channel=logs:slow&token=%s HTTP/1.1\r\nHost: %s\r\n\r\n", testKey, u)
	eventually(t, "the slow stream open", func() bool { return strings.Count(logs.String(), `"stream open"`) >= 3 })
	big := strings.Repeat("x", 8000)
	for i := 0; len(closed()) < 3; i++ {
		if i > 5000 {
			t.Fatal("the slow client was never dropped")
		}
		if _, err := broker.Publish(ctx, pubsub.PublishRequest{Channel: "logs:slow", Data: []byte(`"` + big + `"`)}); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			time.Sleep(50 * time.Millisecond)
		}
	}

	// A shutdown, of streams whose subscriptions have started: from a
	// cursor before a message, each has that message.
	top, err := pushclient.PollOnce(ctx, ts.URL, []string{"logs:2"}, "", testKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	sse2, err := pushclient.OpenSSE(ctx, ts.URL, []string{"logs:2"}, top.Cursor, testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer sse2.Close()
	ws2, err := pushclient.OpenWS(ctx, ts.URL, []string{"logs:2"}, top.Cursor, testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.Close()
	if _, err := broker.Publish(ctx, pubsub.PublishRequest{Channel: "logs:2", Data: []byte(`"started"`)}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []pushclient.Stream{sse2, ws2} {
		if ev, err := s.Next(ctx); err != nil || ev.Message == nil {
			t.Fatalf("stream before the shutdown: %+v %v", ev, err)
		}
	}
	eventually(t, "five streams open", func() bool { return strings.Count(logs.String(), `"stream open"`) >= 5 })
	shutdownServer(t, ts, shutdown)
	waitClosed(5)

	var got []string
	for _, l := range closed() {
		got = append(got, summary(l))
		if _, ok := l["duration"]; !ok {
			t.Errorf("stream closed without duration: %v", l)
		}
	}
	slices.Sort(got)
	want := []string{
		"sse by client: client gone",
		"sse by server: server shutting down (drop shutdown)",
		"sse by server: slow client: write timed out (drop slow_client)",
		"websocket by client: connection lost [1006]", // pushclient closes without a close frame
		"websocket by server: server restarting: reconnect (drop shutdown) [1012]",
	}
	if !slices.Equal(got, want) {
		t.Errorf("stream closed lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
