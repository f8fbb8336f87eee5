package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
)

// TestStalledReaderIsolatedAndBounded: a client that stops reading its
// stream (SSE, WebSocket), side by side with a live one on the same
// channel. The write timeout is a minute, longer than the test: the
// stalled client is never dropped, so whatever keeps the live client on
// time and the memory bounded is the bounded per-connection queue, not the
// disconnect. Over two rounds of 2.4 MB each, the live client receives
// every message in order without waiting on the stalled one, and the
// process heap does not grow with what the stalled client did not read.
func TestStalledReaderIsolatedAndBounded(t *testing.T) {
	for _, transport := range []string{"sse", "websocket"} {
		t.Run(transport, func(t *testing.T) {
			cfg := anonConfig()
			cfg.WriteTimeout = time.Minute
			b := memoryBroker(t, pubsub.Options{HistorySize: 64})
			e := startSmallBufferEnv(t, cfg, b)
			const ch = "stall:iso"
			cursor := e.cursor(t, ch)

			stalled := openStalled(t, e, transport, ch, cursor)
			var next func() streamMessage // the live client's next message
			if transport == "sse" {
				ctx, cancel := context.WithCancel(context.Background())
				t.Cleanup(cancel)
				events, _ := openSSE(t, ctx, eventsURL(e.url, []string{ch}, url.Values{"cursor": {cursor}}), nil)
				next = func() streamMessage { return decodeStream(t, nextSSE(t, events).data) }
			} else {
				live := e.dialWS(t, transportWS, "", nil)
				live.init(map[string]any{"token": testKey})
				live.subscribe("live", []string{ch}, cursor)
				next = func() streamMessage {
					ev := live.event("live")
					return streamMessage{Channel: ev.Channel, ID: ev.ID, Data: ev.Data}
				}
			}

			const perRound, size = 1200, 2 << 10
			payload := strings.Repeat("s", size)
			heap := make([]uint64, 0, 2)
			sent := 0
			for round := range 2 {
				deadline := time.Now().Add(20 * time.Second)
				// In windows of 32, so that the live client (slow on
				// WebSocket under -race) never falls behind retention.
				for i := sent + 1; i <= sent+perRound; i += 32 {
					n := min(32, sent+perRound-i+1)
					for j := i; j < i+n; j++ {
						data := json.RawMessage(`"` + strconv.Itoa(j) + ":" + payload + `"`)
						if _, err := b.Publish(context.Background(), pubsub.PublishRequest{Channel: ch, Data: data}); err != nil {
							t.Fatalf("publish: %v", err)
						}
					}
					for j := i; j < i+n; j++ {
						m := next()
						if m.ID != strconv.Itoa(j) || !strings.HasPrefix(string(m.Data), `"`+strconv.Itoa(j)+":") {
							t.Fatalf("live client: got id %q (%.12s), want %d", m.ID, m.Data, j)
						}
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("round %d: the live client needed more than 20 s (waiting on the stalled one?)", round)
				}
				sent += perRound
				heap = append(heap, heapInUse())
			}
			grown := int64(heap[1]) - int64(heap[0])
			t.Logf("heap after round 1: %d KB, after round 2: %d KB (%+d KB for %d KB more unread by the stalled client)",
				heap[0]>>10, heap[1]>>10, grown>>10, perRound*size>>10)
			if grown > perRound*size/2 {
				t.Fatalf("heap grew by %d KB in a round of %d KB the stalled client did not read: not bounded", grown>>10, perRound*size>>10)
			}

			// The stalled client is still connected (it was isolated, not
			// dropped) and nothing was dropped as slow.
			metrics, _ := scrape(t, e.url, "")
			tk := map[string]string{"sse": "sse", "websocket": "websocket"}[transport]
			if n := metrics[`pushgate_connections{transport="`+tk+`"}`]; n != 2 {
				t.Fatalf("%v %s connections open, want 2 (the stalled one and the live one)", n, tk)
			}
			if n := metrics[`pushgate_dropped_total{reason="slow_client"}`]; n != 0 {
				t.Fatalf("%v connections dropped as slow, want 0 within the write timeout", n)
			}
			stalled.Close()
		})
	}
}

// startSmallBufferEnv is startEnv with a 16 KB kernel send buffer on
// every accepted connection, so that a stalled client's backlog is held by
// the server process (where the test can measure it), not by the kernel.
func startSmallBufferEnv(t *testing.T, cfg server.Config, broker pubsub.Broker) *env {
	t.Helper()
	base, cancel := context.WithCancel(context.Background())
	ts := httptest.NewUnstartedServer(server.New(cfg, broker, zerolog.New(io.Discard)))
	ts.Config.BaseContext = func(net.Listener) context.Context { return base }
	ts.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if tc, ok := c.(*net.TCPConn); ok && s == http.StateNew {
			_ = tc.SetWriteBuffer(16 << 10)
		}
	}
	ts.Start()
	t.Cleanup(func() {
		cancel()
		ts.Close()
	})
	return &env{url: ts.URL, broker: broker}
}

// openStalled subscribes to ch from cursor over transport, waits until the
// stream is open, and then never reads again. Its receive buffer is small,
// so the server's writes block soon.
func openStalled(t *testing.T, e *env, transport, ch, cursor string) net.Conn {
	t.Helper()
	u, _ := url.Parse(e.url)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		t.Cleanup(func() { c.Close() })
		return c
	}
	if transport == "sse" {
		c := dial()
		fmt.Fprintf(c, "GET /events?%s HTTP/1.1\r\nHost: %s\r\n\r\n",
			url.Values{"channel": {ch}, "cursor": {cursor}}.Encode(), u.Host)
		_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		return c
	}
	var raw net.Conn
	d := websocket.Dialer{
		Subprotocols:     []string{transportWS},
		HandshakeTimeout: waitTimeout,
		NetDialContext: func(context.Context, string, string) (net.Conn, error) {
			raw = dial()
			return raw, nil
		},
	}
	conn, res, err := d.Dial("ws://"+u.Host+"/graphql", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	if err := conn.WriteJSON(wsMsg{Type: "connection_init", Payload: json.RawMessage(`{"token":"` + testKey + `"}`)}); err != nil {
		t.Fatal(err)
	}
	var ack wsMsg
	if err := conn.ReadJSON(&ack); err != nil || ack.Type != "connection_ack" {
		t.Fatalf("stalled client: %+v %v", ack, err)
	}
	vars, _ := json.Marshal(map[string]any{"query": feedQuery, "variables": map[string]any{"channels": []string{ch}, "cursor": cursor}})
	if err := conn.WriteJSON(wsMsg{Type: "subscribe", ID: "stalled", Payload: vars}); err != nil {
		t.Fatal(err)
	}
	return raw
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
