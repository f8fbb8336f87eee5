package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
)

// sseEvent is one parsed SSE event block.
type sseEvent struct {
	id, event, data string
}

// sseParser reassembles SSE events from arbitrary chunks, as a mini-program
// reading a chunked wx.request must.
type sseParser struct {
	pending string
	id      string
	event   string
	data    []string
	out     []sseEvent
}

func (p *sseParser) feed(chunk []byte) {
	p.pending += string(chunk)
	for {
		i := strings.IndexByte(p.pending, '\n')
		if i < 0 {
			return
		}
		line := strings.TrimSuffix(p.pending[:i], "\r")
		p.pending = p.pending[i+1:]
		switch {
		case line == "":
			if p.data != nil {
				p.out = append(p.out, sseEvent{id: p.id, event: p.event, data: strings.Join(p.data, "\n")})
			}
			p.event, p.data = "", nil
		case strings.HasPrefix(line, ":"):
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				p.id = value
			case "event":
				p.event = value
			case "data":
				p.data = append(p.data, value)
			}
		}
	}
}

// openSSE starts GET /events and returns a channel of its events.
func openSSE(t *testing.T, ctx context.Context, u string, header http.Header) (<-chan sseEvent, *http.Response) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		t.Fatalf("GET %s: %s %s", u, res.Status, body)
	}
	ch := make(chan sseEvent, 1024)
	go func() {
		defer close(ch)
		defer res.Body.Close()
		var p sseParser
		buf := make([]byte, 4096)
		for {
			n, err := res.Body.Read(buf)
			p.feed(buf[:n])
			for _, ev := range p.out {
				select {
				case ch <- ev:
				case <-ctx.Done():
					return
				}
			}
			p.out = p.out[:0]
			if err != nil {
				return
			}
		}
	}()
	return ch, res
}

func nextSSE(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("SSE stream ended")
		}
		return ev
	case <-time.After(waitTimeout):
		t.Fatal("no SSE event in time")
	}
	return sseEvent{}
}

func decodeStream(t *testing.T, data string) streamMessage {
	t.Helper()
	var m streamMessage
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		t.Fatalf("event data %q: %v", data, err)
	}
	return m
}

func anonConfig() server.Config {
	cfg := testConfig()
	cfg.AllowAnonymous = true
	return cfg
}

func TestSSEDeliversAndResumes(t *testing.T) {
	b := memoryBroker(t, pubsub.Options{HistorySize: 5})
	e := startEnv(t, anonConfig(), b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, res := openSSE(t, ctx, eventsURL(e.url, []string{"s:a", "s:b"}, nil), nil)
	for k, want := range map[string]string{
		"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
	} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	sent := []message{e.send(t, "s:a", map[string]any{"x": 1}), e.send(t, "s:b", "two"), e.send(t, "s:a", []int{3})}
	var last sseEvent
	for i, want := range sent {
		ev := nextSSE(t, events)
		m := decodeStream(t, ev.data)
		if ev.event != "" || m.Channel != want.Channel || m.ID != want.ID || string(m.Data) != string(want.Data) || m.CreatedAt.IsZero() {
			t.Fatalf("event %d = %+v (%+v), want %+v", i, ev, m, want)
		}
		last = ev
	}
	cancel()
	more := []message{e.send(t, "s:b", 4), e.send(t, "s:a", 5)}
	// Last-Event-ID wins over a cursor parameter.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	stale := e.cursor(t, "s:a", "s:b")
	resumed, _ := openSSE(t, ctx2, eventsURL(e.url, []string{"s:a", "s:b"}, url.Values{"cursor": {stale}}),
		http.Header{"Last-Event-ID": {last.id}})
	got := map[string]string{}
	for range more {
		m := decodeStream(t, nextSSE(t, resumed).data)
		got[m.Channel] += m.ID
	}
	if got["s:a"] != more[1].ID || got["s:b"] != more[0].ID {
		t.Fatalf("resumed with %v, want s:a %s and s:b %s", got, more[1].ID, more[0].ID)
	}
	// A cursor older than retention: event reset, then what is retained.
	for i := 0; i < 6; i++ {
		e.send(t, "s:old", i)
	}
	ctx3, cancel3 := context.WithCancel(context.Background())
	defer cancel3()
	old := pubsub.NewCursor(map[string]pubsub.Position{"s:old": {}})
	if _, err := b.Publish(ctx3, pubsub.PublishRequest{Channel: "s:old", Data: json.RawMessage(`7`)}); err != nil {
		t.Fatal(err)
	}
	reset, _ := openSSE(t, ctx3, eventsURL(e.url, []string{"s:old"}, url.Values{"cursor": {old.String()}}), nil)
	ev := nextSSE(t, reset)
	var r struct{ Channel, Reason, Cursor string }
	if err := json.Unmarshal([]byte(ev.data), &r); err != nil || ev.event != "reset" || r.Reason != "expired" || r.Cursor != ev.id || r.Channel != "s:old" {
		t.Fatalf("first event = %+v (%v), want a reset", ev, err)
	}
	if m := decodeStream(t, nextSSE(t, reset).data); m.ID != "3" {
		t.Fatalf("after the reset got id %s, want 3", m.ID)
	}
}

// TestSSEChunkedReader: a raw HTTP/1.1 client that reads the body in
// arbitrary small chunks, as onChunkReceived delivers them, reassembles
// every event exactly.
func TestSSEChunkedReader(t *testing.T) {
	b := memoryBroker(t, pubsub.Options{HistorySize: 1000})
	e := startEnv(t, anonConfig(), b)
	want := map[string]string{}
	for i := 0; i < 300; i++ {
		data := fmt.Sprintf(`{"i":%d,"text":"多字节 ✓ %s","nested":{"a":[1,2,"x\ny"]}}`, i, strings.Repeat("z", i%37))
		r, err := b.Publish(context.Background(), pubsub.PublishRequest{Channel: "chunk", Event: "e" + strconv.Itoa(i%3), Data: json.RawMessage(data)})
		if err != nil {
			t.Fatal(err)
		}
		want[strconv.FormatUint(r.Message.Offset, 10)] = data
	}
	u, _ := url.Parse(e.url)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := startCursorOf("chunk")
	fmt.Fprintf(conn, "GET /events?channel=chunk&cursor=%s HTTP/1.1\r\nHost: %s\r\n\r\n", start, u.Host)
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.TransferEncoding == nil || res.TransferEncoding[0] != "chunked" {
		t.Fatalf("transfer encoding %v, want chunked", res.TransferEncoding)
	}
	var p sseParser
	rng := rand.New(rand.NewPCG(3, 4))
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	for len(p.out) < len(want) {
		buf := make([]byte, 1+rng.IntN(20))
		n, err := res.Body.Read(buf)
		p.feed(buf[:n])
		if err != nil {
			t.Fatalf("after %d events: %v", len(p.out), err)
		}
	}
	for _, ev := range p.out {
		var m struct {
			ID    string          `json:"id"`
			Event string          `json:"event"`
			Data  json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
			t.Fatalf("event %q: %v", ev.data, err)
		}
		id, _ := strconv.Atoi(m.ID)
		if string(m.Data) != want[m.ID] || m.Event != "e"+strconv.Itoa((id-1)%3) || ev.id == "" {
			t.Fatalf("event %s = %s / %q, want %s", m.ID, m.Data, m.Event, want[m.ID])
		}
	}
}

// TestSSEStalledReader: a client that stops reading is dropped after the
// write timeout while a live subscriber beside it receives everything.
func TestSSEStalledReader(t *testing.T) {
	b := memoryBroker(t, pubsub.Options{HistorySize: 5000})
	cfg := anonConfig()
	cfg.WriteTimeout = 300 * time.Millisecond
	ts := httptest.NewUnstartedServer(server.New(cfg, b, zerolog.New(io.Discard)))
	ts.Start()
	defer ts.Close()
	u, _ := url.Parse(ts.URL)
	raw, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(raw, "GET /events?channel=stall HTTP/1.1\r\nHost: %s\r\n\r\n", u.Host)
	// Its stream is open once the start block arrives; then it reads no more.
	if _, err := bufio.NewReader(raw).ReadString('\n'); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live, _ := openSSE(t, ctx, eventsURL(ts.URL, []string{"stall"}, nil), nil)
	payload := json.RawMessage(`"` + strings.Repeat("p", 2000) + `"`)
	const total = 3000
	go func() {
		for i := 0; i < total; i++ {
			if _, err := b.Publish(context.Background(), pubsub.PublishRequest{Channel: "stall", Data: payload}); err != nil {
				return
			}
		}
	}()
	for i := 1; i <= total; i++ {
		if m := decodeStream(t, nextSSE(t, live).data); m.ID != strconv.Itoa(i) {
			t.Fatalf("live subscriber got id %s, want %d", m.ID, i)
		}
	}
	// The server aborted the stalled connection (6 MB could not fit in the
	// socket buffers): reading it again ends after what was buffered.
	if !connDropped(raw, waitTimeout) {
		t.Fatal("the stalled connection was not dropped")
	}
}

// connDropped reports whether the peer of conn closed or reset it within
// wait. The reset of an aborted connection can reach a client whose receive
// window is closed, and then its kernel discards it; so the client also
// pokes, and a byte sent to a connection the peer no longer has is answered
// with a reset that is always accepted.
func connDropped(conn net.Conn, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := io.Copy(io.Discard, conn); !isTimeout(err) {
			return true // EOF or reset
		}
		_ = conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := conn.Write([]byte{'\n'}); err != nil && !isTimeout(err) {
			return true
		}
	}
	return false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestSSELastEventIDAfterRestart: with Redis, a client resumes with
// Last-Event-ID from a server that was restarted meanwhile.
func TestSSELastEventIDAfterRestart(t *testing.T) {
	srv := redistest.Start(t)
	newBroker := func() pubsub.Broker {
		opts, _ := redis.ParseURL(srv.URL())
		client := redis.NewClient(opts)
		b, err := pubsub.NewRedis(context.Background(), client, pubsub.RedisOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close(); _ = client.Close() })
		return b
	}
	b1 := newBroker()
	e1 := startEnvCloser(t, anonConfig(), b1)
	ctx, cancel := context.WithCancel(context.Background())
	events, _ := openSSE(t, ctx, eventsURL(e1.url, []string{"restart"}, nil), nil)
	for i := 1; i <= 3; i++ {
		e1.send(t, "restart", i)
	}
	var last sseEvent
	for i := 0; i < 2; i++ {
		last = nextSSE(t, events)
	}
	cancel()
	e1.close()
	_ = b1.Close()

	b2 := newBroker()
	for i := 4; i <= 6; i++ {
		if _, err := b2.Publish(context.Background(), pubsub.PublishRequest{Channel: "restart", Data: json.RawMessage(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	e2 := startEnv(t, anonConfig(), b2)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	resumed, _ := openSSE(t, ctx2, eventsURL(e2.url, []string{"restart"}, nil), http.Header{"Last-Event-ID": {last.id}})
	for i := 3; i <= 6; i++ {
		if m := decodeStream(t, nextSSE(t, resumed).data); m.ID != strconv.Itoa(i) || string(m.Data) != strconv.Itoa(i) {
			t.Fatalf("after restart got %+v, want id %d", m, i)
		}
	}
	e2.send(t, "restart", 7)
	if m := decodeStream(t, nextSSE(t, resumed).data); m.ID != "7" {
		t.Fatalf("live after restart got id %s", m.ID)
	}
}

func TestSSECORS(t *testing.T) {
	cfg := anonConfig()
	cfg.AllowedOrigins = []string{"https://h5.example.com"}
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	// Other origins are refused with 403 (origin_test.go).
	for origin, want := range map[string]string{"https://h5.example.com": "https://h5.example.com"} {
		ctx, cancel := context.WithCancel(context.Background())
		_, res := openSSE(t, ctx, eventsURL(e.url, []string{"cors"}, nil), http.Header{"Origin": {origin}})
		if got := res.Header.Get("Access-Control-Allow-Origin"); got != want {
			t.Errorf("origin %s: Access-Control-Allow-Origin = %q, want %q", origin, got, want)
		}
		cancel()
	}
}

// TestStreamBadInput: the SSE and long-poll endpoints answer bad input with
// 4xx and {"error":{"code","message"}}.
func TestStreamBadInput(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	tok := token(t, "u1", []string{"ok:*"}, time.Hour)
	expired := token(t, "u1", []string{"ok:*"}, -time.Minute)
	var many []string
	for i := 0; i < 33; i++ {
		many = append(many, "ok:"+strconv.Itoa(i))
	}
	good := url.Values{"channel": {"ok:1"}, "token": {tok}}
	with := func(k, v string) url.Values {
		q := url.Values{}
		for k2, v2 := range good {
			q[k2] = v2
		}
		q.Set(k, v)
		return q
	}
	tests := []struct {
		name   string
		paths  []string
		query  url.Values
		status int
		code   string
	}{
		{"no channel", []string{"/events", "/poll"}, url.Values{"token": {tok}}, 400, "BAD_USER_INPUT"},
		{"33 channels", []string{"/events", "/poll"}, url.Values{"channel": many, "token": {tok}}, 400, "BAD_USER_INPUT"},
		{"bad channel name", []string{"/events", "/poll"}, with("channel", "ok 1"), 400, "BAD_USER_INPUT"},
		{"channel twice", []string{"/events", "/poll"}, url.Values{"channel": {"ok:1", "ok:1"}, "token": {tok}}, 400, "BAD_USER_INPUT"},
		{"malformed cursor", []string{"/events", "/poll"}, with("cursor", "%%%not-a-cursor"), 400, "BAD_USER_INPUT"},
		{"cursor of junk", []string{"/events", "/poll"}, with("cursor", "aGVsbG8gd29ybGQ"), 400, "BAD_USER_INPUT"},
		{"timeout too long", []string{"/poll"}, with("timeout", "51"), 400, "BAD_USER_INPUT"},
		{"timeout negative", []string{"/poll"}, with("timeout", "-1"), 400, "BAD_USER_INPUT"},
		{"timeout not a number", []string{"/poll"}, with("timeout", "soon"), 400, "BAD_USER_INPUT"},
		{"limit zero", []string{"/poll"}, with("limit", "0"), 400, "BAD_USER_INPUT"},
		{"limit too big", []string{"/poll"}, with("limit", "1001"), 400, "BAD_USER_INPUT"},
		{"no token", []string{"/events", "/poll"}, url.Values{"channel": {"ok:1"}}, 401, "UNAUTHENTICATED"},
		{"bad token", []string{"/events", "/poll"}, with("token", "not.a.jwt"), 401, "UNAUTHENTICATED"},
		{"expired token", []string{"/events", "/poll"}, with("token", expired), 401, "UNAUTHENTICATED"},
		{"channel not granted", []string{"/events", "/poll"}, with("channel", "other:1"), 403, "FORBIDDEN"},
		{"another user's channel", []string{"/events", "/poll"}, url.Values{"channel": {"user:bob"}, "token": {token(t, "alice", []string{"*"}, time.Hour)}}, 403, "FORBIDDEN"},
	}
	for _, tc := range tests {
		for _, path := range tc.paths {
			t.Run(tc.name+path, func(t *testing.T) {
				res, err := http.Get(e.url + path + "?" + tc.query.Encode())
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				var body struct {
					Error struct{ Code, Message string }
				}
				if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
					t.Fatalf("status %d, body not JSON: %v", res.StatusCode, err)
				}
				if res.StatusCode != tc.status || body.Error.Code != tc.code || body.Error.Message == "" {
					t.Fatalf("got %d %+v, want %d %s", res.StatusCode, body.Error, tc.status, tc.code)
				}
			})
		}
	}
	if ids := e.ids(t, "ok:1"); len(ids) != 0 {
		t.Fatalf("bad requests changed history: %v", ids)
	}
}

// closableEnv is an env the test stops itself, as a node going away.
type closableEnv struct {
	*env
	close func()
}

func startEnvCloser(t *testing.T, cfg server.Config, broker pubsub.Broker) closableEnv {
	t.Helper()
	base, cancel := context.WithCancel(context.Background())
	ts := httptest.NewUnstartedServer(server.New(cfg, broker, zerolog.New(io.Discard)))
	ts.Config.BaseContext = func(net.Listener) context.Context { return base }
	ts.Start()
	stop := func() { cancel(); ts.Close() }
	t.Cleanup(stop)
	return closableEnv{env: &env{url: ts.URL, broker: broker}, close: stop}
}

// TestSSEHeartbeat: an idle stream gets a comment line every heartbeat, so
// proxies keep it open; comments are not events.
func TestSSEHeartbeat(t *testing.T) {
	cfg := anonConfig()
	cfg.Heartbeat = 50 * time.Millisecond
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, eventsURL(e.url, []string{"hb"}, nil), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	r := bufio.NewReader(res.Body)
	beats := 0
	for beats < 3 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d heartbeats: %v", beats, err)
		}
		if line == ": heartbeat\n" {
			beats++
		}
	}
}
