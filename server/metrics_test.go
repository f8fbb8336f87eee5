package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/internal/logbuf"
	"github.com/pushgate/pushgate/internal/pushclient"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/server/limits"
)

// scrape reads /metrics with token ("" for none) and returns every series
// as "name{label="value",...}" (labels sorted; histograms and summaries as
// name_count and name_sum) with its value, and every label value seen.
func scrape(t *testing.T, base, token string) (series map[string]float64, labelValues []string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	req.Header.Set("Accept", "text/plain")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(res.Body)
		t.Fatalf("GET /metrics: %s %s", res.Status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	series = map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				labelValues = append(labelValues, l.GetValue())
			}
			sort.Strings(labels)
			key := func(n string) string {
				if len(labels) == 0 {
					return n
				}
				return n + "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				series[key(name)] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				series[key(name)] = m.GetGauge().GetValue()
			case m.Untyped != nil:
				series[key(name)] = m.GetUntyped().GetValue()
			case m.Histogram != nil:
				series[key(name+"_count")] = float64(m.GetHistogram().GetSampleCount())
				series[key(name+"_sum")] = m.GetHistogram().GetSampleSum()
			case m.Summary != nil:
				series[key(name+"_count")] = float64(m.GetSummary().GetSampleCount())
			}
		}
	}
	return series, labelValues
}

// mismatches returns the series of want whose value differs in got.
func mismatches(got, want map[string]float64) []string {
	var out []string
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			out = append(out, fmt.Sprintf("%s = %v (present %v), want %v", k, g, ok, v))
		}
	}
	sort.Strings(out)
	return out
}

// waitMetrics scrapes until every series of want has its value.
func waitMetrics(t *testing.T, base string, want map[string]float64) map[string]float64 {
	t.Helper()
	var got map[string]float64
	deadline := time.Now().Add(waitTimeout)
	for {
		got, _ = scrape(t, base, "")
		bad := mismatches(got, want)
		if len(bad) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics after %v:\n%s", waitTimeout, strings.Join(bad, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetricsScenario runs a bit of everything and checks the counters
// exactly: three sends and an idempotent repeat, an SSE client and a
// WebSocket client receiving them, a poll, a resume past retention
// (reset), a limit refusal and a refused send. No label value may name a
// channel.
func TestMetricsScenario(t *testing.T) {
	const ch = "metricsns:zq7secret"
	m := server.NewMetrics()
	cfg := testConfig()
	cfg.Metrics = m
	cfg.Limits.MaxSubscriptionChannels = 2
	// Two messages retained: the third send trims the first.
	broker := memoryBroker(t, pubsub.Options{HistorySize: 2, Observer: m.Observer()})
	var logs logbuf.Buffer
	e := startEnvLog(t, cfg, broker, &logs)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	// Before anything is sent: the channel's start, and two live clients.
	start := e.cursor(t, ch)
	sse, err := pushclient.OpenSSE(ctx, e.url, []string{ch}, "", testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer sse.Close()
	// The WebSocket starts from the cursor, so that it gets every message
	// however late its subscription registers; once it has caught up (a
	// resume without reset), it is live.
	ws, err := pushclient.OpenWS(ctx, e.url, []string{ch}, start, testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	waitMetrics(t, e.url, map[string]float64{`pushgate_resumes_total{outcome="resumed"}`: 1})

	sender := pushclient.Sender{Key: testKey}
	for i := range 3 {
		key := ""
		if i == 2 {
			key = "idem-1"
		}
		if _, err := sender.Send(ctx, e.url, ch, i, key); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sender.Send(ctx, e.url, ch, 2, "idem-1"); err != nil { // the repeat
		t.Fatal(err)
	}
	var afterFirst string
	for i, s := range []pushclient.Stream{sse, ws} {
		for n := range 3 {
			ev, err := s.Next(ctx)
			if err != nil || ev.Message == nil {
				t.Fatalf("client %d, message %d: %+v %v", i, n, ev, err)
			}
			if n == 0 {
				afterFirst = ev.Cursor
			}
		}
	}

	// A poll after the first message: the two retained, no reset.
	poll, err := pushclient.PollOnce(ctx, e.url, []string{ch}, afterFirst, testKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(poll.Messages) != 2 || poll.Reset != nil {
		t.Fatalf("poll: %+v", poll)
	}
	// A resume from the start, whose first message is gone: a reset, then
	// the two retained.
	resumed, err := pushclient.OpenSSE(ctx, e.url, []string{ch}, start, testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	if ev, err := resumed.Next(ctx); err != nil || ev.Reset == nil || ev.Reset.Reason != "expired" {
		t.Fatalf("resume: want an expired reset, got %+v %v", ev, err)
	}
	for range 2 {
		if ev, err := resumed.Next(ctx); err != nil || ev.Message == nil {
			t.Fatalf("resume: %+v %v", ev, err)
		}
	}

	// A limit refusal: three channels, over the limit of two.
	res, err := http.Get(eventsURL(e.url, []string{ch, ch + "b", ch + "c"}, url.Values{"token": {testKey}}))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("three channels: %s", res.Status)
	}
	// A refused send.
	if code := e.do(t, "", sendMutation, map[string]any{"in": map[string]any{"channel": ch, "data": 1}}).code(t); code != "UNAUTHENTICATED" {
		t.Fatalf("send without credentials: %s", code)
	}

	// While the streams are open.
	waitMetrics(t, e.url, map[string]float64{
		`pushgate_connections{transport="sse"}`:           2,
		`pushgate_connections{transport="websocket"}`:     1,
		`pushgate_connections{transport="poll"}`:          0,
		`pushgate_subscriptions{transport="sse"}`:         2,
		`pushgate_subscriptions{transport="websocket"}`:   1,
		`pushgate_subscriptions{transport="poll"}`:        0,
		`pushgate_connections{transport="graphql_sse"}`:   0,
		`pushgate_subscriptions{transport="graphql_sse"}`: 0,
	})
	_ = sse.Close()
	_ = ws.Close()
	_ = resumed.Close()

	got := waitMetrics(t, e.url, map[string]float64{
		`pushgate_connections{transport="sse"}`:                          0,
		`pushgate_connections{transport="websocket"}`:                    0,
		`pushgate_subscriptions{transport="sse"}`:                        0,
		`pushgate_subscriptions{transport="websocket"}`:                  0,
		`pushgate_connections_total{transport="sse"}`:                    2,
		`pushgate_connections_total{transport="websocket"}`:              1,
		`pushgate_connections_total{transport="poll"}`:                   1,
		`pushgate_connections_total{transport="graphql_sse"}`:            0,
		`pushgate_messages_sent_total`:                                   3,
		`pushgate_messages_duplicate_total`:                              1,
		`pushgate_send_errors_total{code="UNAUTHENTICATED"}`:             1,
		`pushgate_send_errors_total{code="BAD_USER_INPUT"}`:              0,
		`pushgate_messages_delivered_total{transport="sse"}`:             5,
		`pushgate_messages_delivered_total{transport="websocket"}`:       3,
		`pushgate_messages_delivered_total{transport="poll"}`:            2,
		`pushgate_delivery_latency_seconds_count{transport="sse"}`:       5,
		`pushgate_delivery_latency_seconds_count{transport="websocket"}`: 3,
		`pushgate_delivery_latency_seconds_count{transport="poll"}`:      2,
		`pushgate_dropped_total{reason="limit"}`:                         1,
		`pushgate_dropped_total{reason="slow_client"}`:                   0,
		`pushgate_dropped_total{reason="expired"}`:                       0,
		`pushgate_dropped_total{reason="shutdown"}`:                      0,
		`pushgate_resumes_total{outcome="resumed"}`:                      2, // the WebSocket and the poll
		`pushgate_resumes_total{outcome="reset"}`:                        1,
		`pushgate_resets_total{reason="expired"}`:                        1,
		`pushgate_resets_total{reason="epoch_changed"}`:                  0,
		`pushgate_resets_total{reason="unknown_position"}`:               0,
		`pushgate_store_errors_total{op="publish"}`:                      0,
		`pushgate_redis_reconnects_total`:                                0,
		`pushgate_http_requests_total{route="GET /events",status="2xx"}`: 2,
		`pushgate_http_requests_total{route="GET /events",status="4xx"}`: 1,
		`pushgate_http_requests_total{route="GET /poll",status="2xx"}`:   1,
		`pushgate_http_requests_total{route="/graphql",status="1xx"}`:    1,
	})
	if got[`pushgate_http_request_duration_seconds_count{route="/graphql"}`] < 5 {
		t.Errorf("GraphQL requests timed: %v", got[`pushgate_http_request_duration_seconds_count{route="/graphql"}`])
	}
	if _, ok := got[`pushgate_http_request_duration_seconds_count{route="GET /events"}`]; ok {
		t.Errorf("SSE streams are timed")
	}
	if got["go_goroutines"] == 0 || got["process_open_fds"] == 0 {
		t.Errorf("no Go or process collector")
	}

	_, values := scrape(t, e.url, "")
	for _, v := range values {
		if strings.Contains(v, "zq7secret") || strings.Contains(v, "metricsns") || strings.Contains(v, testKey) {
			t.Errorf("label value %q names a channel or a credential", v)
		}
	}

	// The streams' logs: opened and closed, with what they delivered,
	// never the token they were opened with.
	eventually(t, "stream logs", func() bool { return strings.Count(logs.String(), `"stream closed"`) == 3 })
	var closed []map[string]any
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, testKey) {
			t.Errorf("log line with the credential: %s", line)
		}
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if l["message"] == "stream closed" {
			closed = append(closed, l)
		}
	}
	var summary []string
	for _, l := range closed {
		summary = append(summary, fmt.Sprintf("%v %v %v", l["transport"], l["delivered"], l["closed_by"]))
	}
	slices.Sort(summary)
	if want := []string{"sse 2 client", "sse 3 client", "websocket 3 client"}; !slices.Equal(summary, want) {
		t.Errorf("closed streams %q, want %q", summary, want)
	}
}

// TestMetricsDrops: a client that stops reading is dropped as slow, on
// WebSocket and graphql-sse; a stream whose token expires as expired; a
// subscription over the WebSocket's limit as limit.
func TestMetricsDrops(t *testing.T) {
	t.Run("slow", func(t *testing.T) {
		for _, transport := range []string{"websocket", "graphql-sse", "sse"} {
			t.Run(transport, func(t *testing.T) {
				cfg := testConfig()
				cfg.WriteTimeout = 300 * time.Millisecond
				e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{HistorySize: 50}))
				const ch = "slow"
				cursor := e.cursor(t, ch)
				var drain func() (int, error)
				switch transport {
				case "websocket":
					drain = slowWebSocket(t, e, ch, cursor)
				case "graphql-sse":
					drain = slowSSE(t, e, ch, cursor)
				default:
					drain = slowEvents(t, e, ch, cursor)
				}
				// The slow helpers return once the subscription is
				// confirmed live (slowMarker), so the publishes reach
				// it: whatever its queue (64) takes live, then, once
				// it overflows, a Reset and the 50 retained: 114
				// messages, ~5.5 MB at least, more than the socket
				// buffers hold (see TestSlowClient).
				payload := strings.Repeat("x", 48<<10)
				for i := range 150 {
					if _, err := e.broker.Publish(context.Background(), pubsub.PublishRequest{
						Channel: ch, Data: []byte(`"` + strconv.Itoa(i) + payload + `"`),
					}); err != nil {
						t.Fatal(err)
					}
				}
				transportLabel := strings.ReplaceAll(transport, "-", "_")
				waitMetrics(t, e.url, map[string]float64{
					`pushgate_dropped_total{reason="slow_client"}`:             1,
					`pushgate_connections{transport="` + transportLabel + `"}`: 0,
				})
				_, _ = drain()
			})
		}
	})

	t.Run("expired", func(t *testing.T) {
		e := startEnv(t, expiryConfig(), memoryBroker(t, pubsub.Options{}))
		tok, _ := shortToken(t, []string{"exp:*"})
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		s, err := pushclient.OpenSSE(ctx, e.url, []string{"exp:1"}, "", tok)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		w, err := pushclient.OpenWS(ctx, e.url, []string{"exp:1"}, "", tok)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		waitMetrics(t, e.url, map[string]float64{
			`pushgate_dropped_total{reason="expired"}`:    2,
			`pushgate_connections{transport="sse"}`:       0,
			`pushgate_connections{transport="websocket"}`: 0,
		})
	})

	t.Run("limit", func(t *testing.T) {
		cfg := testConfig()
		cfg.Limits.MaxSubscriptionsPerConnection = 1
		e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
		c := e.dialWS(t, transportWS, "", nil)
		c.init(map[string]any{"token": testKey})
		c.subscribe("1", []string{"lim"}, "")
		c.subscribe("2", []string{"lim"}, "")
		if code := c.errorCode("2"); code != "RATE_LIMITED" {
			t.Fatalf("second subscription: %s", code)
		}
		waitMetrics(t, e.url, map[string]float64{
			`pushgate_dropped_total{reason="limit"}`:            1,
			`pushgate_subscriptions{transport="websocket"}`:     1,
			`pushgate_connections_total{transport="websocket"}`: 1,
		})
	})
}

// slowEvents is slowSSE over GET /events, on a raw connection whose
// chunked body is decoded here.
func slowEvents(t *testing.T, e *env, ch, cursor string) func() (int, error) {
	t.Helper()
	u, _ := url.Parse(e.url)
	raw, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	q := url.Values{"channel": {ch}, "cursor": {cursor}, "token": {testKey}}
	fmt.Fprintf(raw, "GET /events?%s HTTP/1.1\r\nHost: %s\r\n\r\n", q.Encode(), u.Host)
	_ = raw.SetReadDeadline(time.Now().Add(waitTimeout))
	br := bufio.NewReader(raw)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /events: %v %v", res, err)
	}
	_ = raw.SetReadDeadline(time.Time{})
	// res.Body undoes the chunked framing and reads only from br, which
	// reads no further than asked.
	return slowStream(t, e, ch, struct {
		io.Reader
		io.Closer
	}{res.Body, raw})
}

// TestMetricsGraphQLSSE: a graphql-sse feed is a stream and a
// subscription; its messages are counted.
func TestMetricsGraphQLSSE(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	const ch = "gsse"
	cursor := e.cursor(t, ch)
	body, _ := json.Marshal(map[string]any{"query": feedQuery, "variables": map[string]any{"channels": []string{ch}, "cursor": cursor}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+testKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	e.send(t, ch, 1)
	e.send(t, ch, 2)
	waitMetrics(t, e.url, map[string]float64{
		`pushgate_connections{transport="graphql_sse"}`:              1,
		`pushgate_subscriptions{transport="graphql_sse"}`:            1,
		`pushgate_messages_delivered_total{transport="graphql_sse"}`: 2,
		`pushgate_messages_sent_total`:                               2,
	})
	cancel()
	waitMetrics(t, e.url, map[string]float64{
		`pushgate_connections{transport="graphql_sse"}`:       0,
		`pushgate_subscriptions{transport="graphql_sse"}`:     0,
		`pushgate_connections_total{transport="graphql_sse"}`: 1,
	})
}

// TestMetricsShutdown: streams ended by a shutdown count as such.
func TestMetricsShutdown(t *testing.T) {
	m := server.NewMetrics()
	cfg := testConfig()
	cfg.Metrics = m
	base, shutdown := context.WithCancelCause(context.Background())
	ts := httptest.NewUnstartedServer(server.New(cfg, memoryBroker(t, pubsub.Options{}), zerolog.New(io.Discard)))
	ts.Config.BaseContext = func(net.Listener) context.Context { return base }
	ts.Start()
	t.Cleanup(ts.Close)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	s, err := pushclient.OpenSSE(ctx, ts.URL, []string{"down"}, "", testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w, err := pushclient.OpenWS(ctx, ts.URL, []string{"down"}, "", testKey)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	waitMetrics(t, ts.URL, map[string]float64{`pushgate_subscriptions{transport="websocket"}`: 1})
	shutdownServer(t, ts, shutdown)
	if _, err := s.Next(ctx); err == nil {
		t.Fatal("SSE stream still open after shutdown")
	}
	if _, err := w.Next(ctx); err == nil {
		t.Fatal("WebSocket still open after shutdown")
	}
	// New requests to ts would start cancelled: read m through a server
	// of its own.
	deadline := time.Now().Add(waitTimeout)
	for {
		bad := mismatches(gatherMetrics(t, m), map[string]float64{
			`pushgate_dropped_total{reason="shutdown"}`:   2,
			`pushgate_connections{transport="sse"}`:       0,
			`pushgate_connections{transport="websocket"}`: 0,
		})
		if len(bad) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(strings.Join(bad, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gatherMetrics scrapes m through a server of its own.
func gatherMetrics(t *testing.T, m *server.Metrics) map[string]float64 {
	t.Helper()
	cfg := testConfig()
	cfg.Metrics = m
	ts := httptest.NewServer(server.New(cfg, memoryBroker(t, pubsub.Options{}), zerolog.New(io.Discard)))
	defer ts.Close()
	got, _ := scrape(t, ts.URL, "")
	return got
}

// TestMetricsToken: with a token, /metrics answers only requests bearing it.
func TestMetricsToken(t *testing.T) {
	cfg := testConfig()
	cfg.MetricsToken = "scrape-secret"
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"Bearer " + testKey, http.StatusUnauthorized}, // an API key is not the metrics token
		{"Bearer scrape-secret", http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, e.url+"/metrics", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("Authorization %q: %s, want %d", tc.auth, res.Status, tc.want)
		}
		if tc.want == http.StatusOK && !bytes.Contains(body, []byte("pushgate_connections_total")) {
			t.Errorf("metrics body: %.200s", body)
		}
	}
	// The query parameter that carries credentials elsewhere is not enough.
	res, err := http.Get(e.url + "/metrics?token=scrape-secret")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("?token=: %s", res.Status)
	}
}

// TestPprof: /debug/pprof/ exists only when configured, and then only for
// API keys.
func TestPprof(t *testing.T) {
	get := func(t *testing.T, u, auth string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	off := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	if got := get(t, off.url+"/debug/pprof/", testKey); got != http.StatusNotFound {
		t.Errorf("pprof off, with a key: %d", got)
	}

	cfg := testConfig()
	cfg.Pprof = true
	on := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	subscriber := token(t, "u1", []string{"*"}, time.Hour)
	// cmdline is never served (it shows the keys): hostile_pprof_test.go.
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1"} {
		for _, tc := range []struct {
			name, auth string
			want       int
		}{
			{"no credential", "", http.StatusNotFound},
			{"wrong key", "nope", http.StatusNotFound},
			{"subscriber token", subscriber, http.StatusNotFound},
			{"API key", testKey, http.StatusOK},
		} {
			if got := get(t, on.url+path, tc.auth); got != tc.want {
				t.Errorf("%s, %s: %d, want %d", path, tc.name, got, tc.want)
			}
		}
	}
	// A key in the query string, as other endpoints take tokens, is not
	// enough.
	if got := get(t, on.url+"/debug/pprof/?token="+testKey, ""); got != http.StatusNotFound {
		t.Errorf("key in the query: %d", got)
	}
}

// TestRedisHook: the hook counts failed commands by name (not nil
// replies, nor cancelled ones) and dials after the first as reconnects.
func TestRedisHook(t *testing.T) {
	m := server.NewMetrics()
	h := m.RedisHook()
	ctx := context.Background()
	fail := func(err error) redis.ProcessHook {
		return func(ctx context.Context, cmd redis.Cmder) error { cmd.SetErr(err); return err }
	}
	process := func(err error, args ...any) {
		_ = h.ProcessHook(fail(err))(ctx, redis.NewCmd(ctx, args...))
	}
	process(nil, "GET", "k")
	process(redis.Nil, "GET", "k")
	process(errors.New("connection reset"), "GET", "k")
	process(replyError("READONLY You can't write against a read only replica."), "EVALSHA", "sha", 0)
	process(context.Canceled, "XRANGE", "k", "-", "+")
	process(replyError("NOSCRIPT No matching script. Please use EVAL."), "EVALSHA", "sha", 0)
	pipeErr := errors.New("i/o timeout")
	_ = h.ProcessPipelineHook(func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			c.SetErr(pipeErr)
		}
		return pipeErr
	})(ctx, []redis.Cmder{redis.NewCmd(ctx, "XADD", "k", "*", "f", "v"), redis.NewCmd(ctx, "EXPIRE", "k", 10)})

	dial := h.DialHook(func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == "down:6379" {
			return nil, errors.New("connection refused")
		}
		a, b := net.Pipe()
		_ = b.Close()
		return a, nil
	})
	for _, addr := range []string{"down:6379", "up:6379", "up:6379", "up:6379"} {
		if c, err := dial(ctx, "tcp", addr); err == nil {
			_ = c.Close()
		}
	}

	got := gatherMetrics(t, m)
	want := map[string]float64{
		`pushgate_redis_errors_total{op="get"}`:     1,
		`pushgate_redis_errors_total{op="evalsha"}`: 1,
		`pushgate_redis_errors_total{op="xadd"}`:    1,
		`pushgate_redis_errors_total{op="expire"}`:  1,
		`pushgate_redis_errors_total{op="dial"}`:    1,
		`pushgate_redis_reconnects_total`:           2,
	}
	if bad := mismatches(got, want); len(bad) > 0 {
		t.Fatal(strings.Join(bad, "\n"))
	}
	if _, ok := got[`pushgate_redis_errors_total{op="xrange"}`]; ok {
		t.Error("a cancelled command counted as an error")
	}
}

// replyError is an error reply of the Redis server, as go-redis returns
// them.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

// TestMetricsSendErrors: errors of sends are counted by code, whether the
// operation was refused before it ran or its field failed; errors of other
// mutations are not.
func TestMetricsSendErrors(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.SendRatePerKey = limits.Rate{PerSecond: 0.001, Burst: 1}
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	e.send(t, "errs:1", 1)
	if code := e.do(t, testKey, sendMutation, map[string]any{"in": map[string]any{"channel": "errs:1", "data": 2}}).code(t); code != "RATE_LIMITED" {
		t.Fatalf("second send: %s", code)
	}
	// Refused before it runs, with @skip on a missing variable.
	res := e.do(t, testKey, `mutation($skip: Boolean!) { s: send(input: {channel: "errs:1", data: 3}) @skip(if: $skip) { duplicate } }`, nil)
	if len(res.Errors) != 1 {
		t.Fatalf("missing variable: %+v", res)
	}
	validation := res.Errors[0].Extensions.Code
	// Not a send.
	if code := e.do(t, testKey, `mutation { issueToken(input: {subject: "", channels: ["a"]}) { token } }`, nil).code(t); code == "" {
		t.Fatal("issueToken without subject succeeded")
	}
	got := waitMetrics(t, e.url, map[string]float64{
		`pushgate_send_errors_total{code="RATE_LIMITED"}`:       1,
		`pushgate_send_errors_total{code="` + validation + `"}`: 1,
		`pushgate_messages_sent_total`:                          1,
	})
	var total float64
	for k, v := range got {
		if strings.HasPrefix(k, "pushgate_send_errors_total{") {
			total += v
		}
	}
	if total != 2 {
		t.Errorf("%v send errors, want 2", total)
	}
}
