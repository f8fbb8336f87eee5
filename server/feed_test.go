package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
)

// backends are the brokers the feed tests run on: memory, and Redis (a real
// redis-server) where resume semantics depend on the store.
var backends = []struct {
	name string
	new  func(t *testing.T, opts pubsub.Options) pubsub.Broker
}{
	{"memory", memoryBroker},
	{"redis", redisBroker},
}

func redisBroker(t *testing.T, opts pubsub.Options) pubsub.Broker {
	t.Helper()
	srv := redistest.Start(t)
	ropts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(ropts)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	b, err := pubsub.NewRedis(ctx, client, pubsub.RedisOptions{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.Close()
		_ = client.Close()
	})
	return b
}

// TestFeed: live delivery, resume without gap or duplicate, and reset past
// retention, on both subprotocols and both backends.
func TestFeed(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			e := startEnv(t, testConfig(), be.new(t, pubsub.Options{HistorySize: 5}))
			for _, proto := range protocols {
				t.Run(proto, func(t *testing.T) {
					ch := "feed:" + proto
					t.Run("live", func(t *testing.T) {
						c := e.dialWS(t, proto, "", nil)
						c.init(map[string]any{"token": testKey})
						c.subscribe("1", []string{ch, "feed:other"}, "")
						waitSubscribed(t, e, c, "1", ch)
						sent := e.send(t, "feed:other", map[string]any{"n": 1})
						ev := c.event("1")
						if ev.Typename != "Message" || ev.Channel != "feed:other" || ev.ID != sent.ID || string(ev.Data) != `{"n":1}` {
							t.Fatalf("got %+v, want message %+v", ev, sent)
						}
						if ev.Cursor == "" || ev.Cursor == sent.Cursor {
							t.Fatalf("a feed cursor names every channel of the feed: %q", ev.Cursor)
						}
					})
					t.Run("resume", func(t *testing.T) {
						c := e.dialWS(t, proto, "", nil)
						c.init(map[string]any{"token": testKey})
						c.subscribe("a", []string{ch}, e.cursor(t, ch))
						e.send(t, ch, "before 1")
						e.send(t, ch, "before 2")
						seen := c.messages("a", 2)
						cursor := seen[1].Cursor
						_ = c.conn.Close()

						// Sent while away.
						var want []string
						for i := range 3 {
							want = append(want, e.send(t, ch, fmt.Sprintf("away %d", i)).ID)
						}
						c2 := e.dialWS(t, proto, "", nil)
						c2.init(map[string]any{"token": testKey})
						c2.subscribe("b", []string{ch}, cursor)
						got := c2.messages("b", 3)
						want = append(want, e.send(t, ch, "live").ID)
						got = append(got, c2.messages("b", 1)...)
						var gotIDs []string
						for _, ev := range got {
							gotIDs = append(gotIDs, ev.ID)
						}
						if strings.Join(gotIDs, ",") != strings.Join(want, ",") {
							t.Fatalf("resumed with %v, want %v", gotIDs, want)
						}
						c2.quiet(100 * time.Millisecond)
					})
					t.Run("reset", func(t *testing.T) {
						rch := ch + ":reset"
						first := e.send(t, rch, 1)
						for i := 2; i <= 10; i++ {
							e.send(t, rch, i)
						}
						c := e.dialWS(t, proto, "", nil)
						c.init(map[string]any{"token": testKey})
						c.subscribe("r", []string{rch}, first.Cursor)
						ev := c.event("r")
						if ev.Typename != "Reset" || ev.Channel != rch || ev.Reason != string(pubsub.ResetExpired) || ev.Cursor == "" {
							t.Fatalf("first event %+v, want a Reset (expired)", ev)
						}
						// Then every retained message: history-size 5 keeps 6..10.
						if got := ids(c.messages("r", 5)); got != rch+"/6 "+rch+"/7 "+rch+"/8 "+rch+"/9 "+rch+"/10" {
							t.Fatalf("after the reset: %s", got)
						}
					})
				})
			}
		})
	}
}

// waitSubscribed makes sure the subscription id of c is live on channel: it
// sends probes until one arrives, and consumes them.
func waitSubscribed(t *testing.T, e *env, c *wsClient, id, channel string) {
	t.Helper()
	// Subscribe answers nothing, so probe with a message on the channel:
	// the feed delivers it whether it was sent before or after the
	// subscription registered (it starts at the top at registration), so
	// retry until one arrives.
	probe := "probe-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	deadline := time.Now().Add(waitTimeout)
	for {
		e.send(t, channel, probe)
		select {
		case m := <-c.msgs:
			if (m.Type == "next" || m.Type == "data") && m.ID == id && strings.Contains(string(m.Payload), probe) {
				drainProbes(c, probe)
				return
			}
			t.Fatalf("unexpected message while subscribing: %+v", m)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscription %s to %s never became live", id, channel)
		}
	}
}

// drainProbes drops probes that were delivered after the first one.
func drainProbes(c *wsClient, probe string) {
	for {
		select {
		case m := <-c.msgs:
			if !strings.Contains(string(m.Payload), probe) {
				c.t.Fatalf("unexpected message while subscribing: %+v", m)
			}
		case <-time.After(50 * time.Millisecond):
			return
		}
	}
}

// TestWebSocketInitTimeout: a client that never sends connection_init is
// closed.
func TestWebSocketInitTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.InitTimeout = 200 * time.Millisecond
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			c := e.dialWS(t, proto, "", nil)
			start := time.Now()
			err := c.waitClosed()
			if err == nil {
				t.Fatal("closed without an error")
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("closed after %v", d)
			}
			t.Logf("closed after %v: %v", time.Since(start).Round(time.Millisecond), err)
		})
	}
}

// TestSlowClient: a client that stops reading its socket is disconnected by
// the write timeout, on WebSocket and on graphql-sse, and another subscriber
// of the channel keeps receiving everything meanwhile.
func TestSlowClient(t *testing.T) {
	for _, transport := range []string{"websocket", "graphql-sse"} {
		t.Run(transport, func(t *testing.T) {
			cfg := testConfig()
			cfg.WriteTimeout = 300 * time.Millisecond
			e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{HistorySize: 50}))
			const ch = "slow"
			cursor := e.cursor(t, ch)

			// The slow client subscribes, is confirmed live, then reads
			// nothing. (A tiny SO_RCVBUF would make the kernel trickle
			// data through zero-window probes, hiding the server's close
			// for minutes, so it keeps the default.)
			var drain func() (int, error) // reads what is left: how many messages, and how it ended
			if transport == "websocket" {
				drain = slowWebSocket(t, e, ch, cursor)
			} else {
				drain = slowSSE(t, e, ch, cursor)
			}

			// The fast client starts from the same cursor, so its first
			// event is the slow client's marker (from the store if it
			// registered later): once it has it, its feed is registered.
			fast := e.dialWS(t, transportWS, "", nil)
			fast.init(map[string]any{"token": testKey})
			fast.subscribe("f", []string{ch}, cursor)
			if ev := fast.event("f"); ev.Typename != "Message" || string(ev.Data) != `"`+slowMarker+`"` {
				t.Fatalf("fast client: first event %+v, want the marker", ev)
			}

			// ~7 MB: more than the socket buffers hold on loopback (a
			// 4 MB send buffer at most, ~128 KB of receive buffer while
			// the client does not read). Each message is published once
			// the fast client has the one before: it is never more than
			// one message behind, so the history (50) always covers it,
			// and any Reset or gap is the server's fault, not the
			// publisher's pace.
			const n, size = 150, 48 << 10
			payload := strings.Repeat("x", size)
			for i := range n {
				if _, err := e.broker.Publish(context.Background(), pubsub.PublishRequest{
					Channel: ch, Data: []byte(`"` + strconv.Itoa(i) + payload + `"`),
				}); err != nil {
					t.Fatalf("publish: %v", err)
				}
				ev := fast.event("f")
				if ev.Typename != "Message" || !strings.HasPrefix(string(ev.Data), `"`+strconv.Itoa(i)+"x") {
					t.Fatalf("fast client: event %d is %s %.20s", i, ev.Typename, ev.Data)
				}
			}

			// The slow client still reads nothing until the server gives
			// up on it (its write timeout; the fast client may have had
			// everything sooner). Reading now drains what the socket
			// buffers hold, then finds the connection closed, short of
			// the n messages.
			waitMetrics(t, e.url, map[string]float64{`pushgate_dropped_total{reason="slow_client"}`: 1})
			got, err := drain()
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("slow client still connected after %d messages", got)
			}
			if got >= n {
				t.Fatalf("slow client got all %d messages", n)
			}
			t.Logf("slow client cut off after %d of %d messages: %v", got, n, err)
		})
	}
}

// slowMarker is the data of the message a slow client helper sends to
// confirm its subscription live before the test floods the channel.
const slowMarker = "slow client subscribed"

// sendMarker sends slowMarker to ch. A feed started from a cursor taken
// before the send receives it however late the feed registers (from the
// store, or live), and a feed that received it is registered, so reading up
// to the marker confirms the subscription without guessing at timing.
func sendMarker(t *testing.T, e *env, ch string) {
	t.Helper()
	e.send(t, ch, slowMarker)
}

// slowWebSocket subscribes a WebSocket client to ch from cursor, reads up to
// the marker (sendMarker), then reads nothing more; the function returned
// reads the rest: how many messages after the marker, and how it ended.
func slowWebSocket(t *testing.T, e *env, ch, cursor string) func() (int, error) {
	t.Helper()
	slow, err := e.tryDialWS(transportWS, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	slow.t = t
	t.Cleanup(func() { slow.conn.Close() })
	_ = slow.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	slow.write(wsMsg{Type: "connection_init", Payload: []byte(`{"token":"` + testKey + `"}`)})
	var ack wsMsg
	if err := slow.conn.ReadJSON(&ack); err != nil || ack.Type != "connection_ack" {
		t.Fatalf("slow client: %+v %v", ack, err)
	}
	slow.subscribe("s", []string{ch}, cursor)
	sendMarker(t, e, ch)
	for {
		var m wsMsg
		if err := slow.conn.ReadJSON(&m); err != nil {
			t.Fatalf("slow client, waiting for the marker: %v", err)
		}
		if m.Type == "ping" || m.Type == "pong" {
			continue
		}
		if m.Type != "next" || m.ID != "s" || !strings.Contains(string(m.Payload), slowMarker) {
			t.Fatalf("slow client: %+v before the marker", m)
		}
		break
	}
	return func() (int, error) {
		_ = slow.conn.SetReadDeadline(time.Now().Add(waitTimeout))
		for got := 0; ; got++ {
			if _, _, err := slow.conn.NextReader(); err != nil {
				return max(got-1, 0), err // the last one may be cut short
			}
		}
	}
}

// slowSSE is slowWebSocket over graphql-sse (distinct connections mode).
func slowSSE(t *testing.T, e *env, ch, cursor string) func() (int, error) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": feedQuery, "variables": map[string]any{"channels": []string{ch}, "cursor": cursor}})
	req, _ := http.NewRequest(http.MethodPost, e.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+testKey)
	// A transport of its own, so that its connection is not reused.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return slowStream(t, e, ch, res.Body)
}

// slowStream sends the marker (sendMarker) and reads the SSE body up to
// it, then reads nothing more; the function returned reads the rest: how
// many data lines after the marker, and how it ended (a timeoutError if
// the stream was still open after waitTimeout).
func slowStream(t *testing.T, e *env, ch string, body io.ReadCloser) func() (int, error) {
	t.Helper()
	sc := bufio.NewScanner(body)
	sc.Buffer(nil, 1<<20)
	sendMarker(t, e, ch)
	timer := time.AfterFunc(waitTimeout, func() { body.Close() })
	marked := false
	for !marked && sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data: ") {
			if !strings.Contains(line, slowMarker) {
				t.Fatalf("slow client: %.200s before the marker", line)
			}
			marked = true
		}
	}
	if !timer.Stop() || !marked {
		t.Fatalf("slow client: no marker: %v", sc.Err())
	}
	return func() (int, error) {
		timer := time.AfterFunc(waitTimeout, func() { body.Close() })
		defer timer.Stop()
		got := 0
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				got++
			}
		}
		err := sc.Err()
		if !timer.Stop() {
			return got, timeoutError{}
		}
		if err == nil {
			err = io.EOF
		}
		return got, err
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// TestWebSocketChurn: connections that come and go leave no goroutine
// behind.
func TestWebSocketChurn(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	// Warm up: the HTTP client's keep-alive connection, used by the probes,
	// and one WebSocket.
	warm := e.dialWS(t, transportWS, "", nil)
	warm.init(map[string]any{"token": testKey})
	warm.subscribe("1", []string{"churn"}, "")
	waitSubscribed(t, e, warm, "1", "churn")
	_ = warm.conn.Close()
	<-warm.done
	// The warm-up's server side has wound down before counting.
	waitMetrics(t, e.url, map[string]float64{
		`pushgate_connections{transport="websocket"}`:   0,
		`pushgate_subscriptions{transport="websocket"}`: 0,
	})
	before := runtime.NumGoroutine()
	for i := range 20 {
		proto := protocols[i%2]
		c := e.dialWS(t, proto, "", nil)
		c.init(map[string]any{"token": testKey})
		c.subscribe("1", []string{"churn", "churn:" + strconv.Itoa(i)}, "")
		waitSubscribed(t, e, c, "1", "churn")
		_ = c.conn.Close()
		<-c.done
	}
	deadline := time.Now().Add(waitTimeout)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before the churn:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cursor returns a cursor at the current top of channels: a feed started
// with it receives everything sent afterwards, however late it registers.
func (e *env) cursor(t *testing.T, channels ...string) string {
	t.Helper()
	var c pubsub.Cursor
	for _, ch := range channels {
		var out struct {
			Channel struct {
				Cursor string `json:"cursor"`
			} `json:"channel"`
		}
		e.do(t, testKey, `query($ch: String!) { channel(name: $ch) { cursor } }`, map[string]any{"ch": ch}).decode(t, &out)
		one, err := pubsub.ParseCursor(out.Channel.Cursor)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := one.Position(ch)
		c = c.With(ch, p)
	}
	return c.String()
}

// TestEpochChange: when the store lost a channel's history (Redis flushed),
// an old cursor gets a Reset in the feed and a clear error in history.
func TestEpochChange(t *testing.T) {
	srv := redistest.Start(t)
	ropts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(ropts)
	t.Cleanup(func() { _ = client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	b, err := pubsub.NewRedis(ctx, client, pubsub.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	e := startEnv(t, testConfig(), b)

	var old message
	for i := range 3 {
		old = e.send(t, "ep", i)
	}
	srv.FlushAll(t)
	fresh := e.send(t, "ep", "new epoch")
	if fresh.ID != "1" {
		t.Fatalf("first message of the new epoch has id %s", fresh.ID)
	}

	res := e.do(t, testKey, `query($c: String) { history(channel: "ep", after: $c) { nodes { id } } }`, map[string]any{"c": old.Cursor})
	if res.code(t) != "BAD_USER_INPUT" || !strings.Contains(res.Errors[0].Message, "reset") {
		t.Fatalf("history after an old-epoch cursor: %+v", res.Errors)
	}

	for _, proto := range protocols {
		c := e.dialWS(t, proto, "", nil)
		c.init(map[string]any{"token": testKey})
		c.subscribe("1", []string{"ep"}, old.Cursor)
		if ev := c.event("1"); ev.Typename != "Reset" || ev.Reason != string(pubsub.ResetEpochChanged) {
			t.Fatalf("%s: first event %+v, want a Reset (epoch_changed)", proto, ev)
		}
		if ev := c.event("1"); ev.ID != "1" || string(ev.Data) != `"new epoch"` {
			t.Fatalf("%s: after the reset: %+v", proto, ev)
		}
	}
}
