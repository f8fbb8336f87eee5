package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/redistest"
)

func TestParseObservabilityFlags(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, err := parseConfig(nil, env(nil), io.Discard)
	if err != nil || c.Pprof || c.MetricsToken != "" {
		t.Fatalf("defaults: pprof %v, metrics token %q, %v", c.Pprof, c.MetricsToken, err)
	}
	c, err = parseConfig([]string{"--pprof", "--metrics-token", "m1"}, env(nil), io.Discard)
	if err != nil || !c.Pprof || c.MetricsToken != "m1" {
		t.Fatalf("flags: pprof %v, metrics token %q, %v", c.Pprof, c.MetricsToken, err)
	}
	c, err = parseConfig(nil, env(map[string]string{"PUSHGATE_PPROF": "true", "PUSHGATE_METRICS_TOKEN": "m2"}), io.Discard)
	if err != nil || !c.Pprof || c.MetricsToken != "m2" {
		t.Fatalf("environment: pprof %v, metrics token %q, %v", c.Pprof, c.MetricsToken, err)
	}
	c, err = parseConfig([]string{"--pprof=false"}, env(map[string]string{"PUSHGATE_PPROF": "true"}), io.Discard)
	if err != nil || c.Pprof {
		t.Fatalf("--pprof=false over the variable: pprof %v, %v", c.Pprof, err)
	}
	if _, err := parseConfig(nil, env(map[string]string{"PUSHGATE_PPROF": "perhaps"}), io.Discard); err == nil ||
		!strings.Contains(err.Error(), "--pprof") || !strings.Contains(err.Error(), "PUSHGATE_PPROF") {
		t.Fatalf("PUSHGATE_PPROF=perhaps: %v", err)
	}
}

// get fetches path with auth as bearer ("" for none).
func (p *instance) get(t *testing.T, path, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.url+path, nil)
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// metric returns the value of series (name{labels} as exposed), or -1.
func metric(body, series string) float64 {
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// sumOf returns the sum of the series of name, whatever their labels.
func sumOf(body, name string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			if f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
				sum += f
			}
		}
	}
	return sum
}

// TestRunObservability: --metrics-token guards /metrics, --pprof opens the
// profiler to API keys, and the broker's observer feeds the metrics.
func TestRunObservability(t *testing.T) {
	p := start(t, "--metrics-token", "scrape", "--pprof")
	if code, _ := p.get(t, "/metrics", ""); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without the token: %d", code)
	}
	if code, _ := p.get(t, "/debug/pprof/", ""); code != http.StatusNotFound {
		t.Fatalf("pprof without a key: %d", code)
	}
	if code, _ := p.get(t, "/debug/pprof/", key); code != http.StatusOK {
		t.Fatalf("pprof with a key: %d", code)
	}
	sent := p.send(t, "obs:1", 1)
	p.send(t, "obs:1", 2)
	p.send(t, "obs:1", 3)
	// A resume: the feed starts from the first message's cursor.
	c := dialFeed(t, p, []string{"obs:1"}, sent.Cursor)
	for range 2 {
		c.next(t)
	}
	deadline := time.Now().Add(timeout)
	for {
		code, body := p.get(t, "/metrics", "scrape")
		if code != http.StatusOK {
			t.Fatalf("/metrics with the token: %d", code)
		}
		if metric(body, "pushgate_messages_sent_total") == 3 && metric(body, `pushgate_resumes_total{outcome="resumed"}`) == 1 &&
			metric(body, `pushgate_messages_delivered_total{transport="websocket"}`) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics:\n%s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}

	off := start(t)
	if code, _ := off.get(t, "/debug/pprof/", key); code != http.StatusNotFound {
		t.Fatalf("pprof off, with a key: %d", code)
	}
	if code, _ := off.get(t, "/metrics", ""); code != http.StatusOK {
		t.Fatalf("/metrics without a token configured: %d", code)
	}
}

// TestRunRedisMetrics: the Redis client's failures and reconnects are
// counted.
func TestRunRedisMetrics(t *testing.T) {
	r := redistest.Start(t)
	p := start(t, "--redis-url", r.URL())
	p.send(t, "obs:r", 1)
	_, body := p.get(t, "/metrics", "")
	errorsBefore, reconnectsBefore := sumOf(body, "pushgate_redis_errors_total"), metric(body, "pushgate_redis_reconnects_total")
	if reconnectsBefore < 0 {
		t.Fatalf("no pushgate_redis_reconnects_total:\n%s", body)
	}

	r.Stop(t)
	if code := sendStatus(t, p, "obs:r"); code != "UNAVAILABLE" {
		t.Fatalf("send with Redis down: %q", code)
	}
	r.Start(t)
	deadline := time.Now().Add(timeout)
	for sendStatus(t, p, "obs:r") != "" {
		if time.Now().After(deadline) {
			t.Fatal("sends still fail after Redis came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, body = p.get(t, "/metrics", "")
	if got := sumOf(body, "pushgate_redis_errors_total"); got <= errorsBefore {
		t.Errorf("Redis errors %v, %v before the outage", got, errorsBefore)
	}
	if got := metric(body, "pushgate_redis_reconnects_total"); got <= reconnectsBefore {
		t.Errorf("Redis reconnects %v, %v before the outage", got, reconnectsBefore)
	}
	if got := metric(body, `pushgate_send_errors_total{code="UNAVAILABLE"}`); got < 1 {
		t.Errorf("UNAVAILABLE sends: %v", got)
	}
	if got := metric(body, `pushgate_store_errors_total{op="publish"}`); got < 1 {
		t.Errorf("store publish errors: %v", got)
	}
}

// sendStatus sends to channel and returns the error code ("" when sent).
func sendStatus(t *testing.T, p *instance, channel string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"query":     `mutation($ch: String!) { send(input: {channel: $ch, data: 1}) { message { id } } }`,
		"variables": map[string]any{"ch": channel},
	})
	r := postRaw(t, p, string(body))
	if len(r.Errors) == 0 {
		return ""
	}
	return r.Errors[0].Extensions.Code
}
