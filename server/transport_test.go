package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/logbuf"
	"github.com/pushgate/pushgate/pubsub"
)

func TestGraphQLOverGET(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	e.send(t, "g", 1)
	get := func(query string) (*http.Response, gqlResponse) {
		req, _ := http.NewRequest(http.MethodGet, e.url+"/graphql?query="+url.QueryEscape(query), nil)
		req.Header.Set("Authorization", "Bearer "+testKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out gqlResponse
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return res, out
	}
	_, out := get(`{ history(channel: "g") { nodes { id } } }`)
	if len(out.Errors) > 0 || !strings.Contains(string(out.Data), `"id":"1"`) {
		t.Fatalf("GET query: %+v %s", out.Errors, out.Data)
	}
	res, out := get(`mutation { send(input: {channel: "g", data: 2}) { duplicate } }`)
	if res.StatusCode < 400 || len(out.Errors) == 0 {
		t.Fatalf("GET mutation: status %d, %s", res.StatusCode, out.Data)
	}
	if got := e.ids(t, "g"); len(got) != 1 {
		t.Fatalf("a GET mutation appended: %v", got)
	}
}

// TestGraphQLSSE: the graphql-sse transport (POST with Accept:
// text/event-stream) carries the feed too.
func TestGraphQLSSE(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	body, _ := json.Marshal(map[string]any{"query": feedQuery, "variables": map[string]any{
		"channels": []string{"sse"}, "cursor": e.cursor(t, "sse"),
	}})
	req, _ := http.NewRequest(http.MethodPost, e.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token(t, "u", []string{"sse"}, time.Hour))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content type %q", ct)
	}
	sent := e.send(t, "sse", map[string]any{"via": "sse"})
	events := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- data
				return
			}
		}
		close(events)
	}()
	select {
	case data := <-events:
		var out struct {
			Feed feedEvent `json:"feed"`
		}
		var r gqlResponse
		if err := json.Unmarshal([]byte(data), &r); err != nil {
			t.Fatal(err)
		}
		r.decode(t, &out)
		if out.Feed.ID != sent.ID || string(out.Feed.Data) != `{"via":"sse"}` {
			t.Fatalf("got %+v, want %+v", out.Feed, sent)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no event")
	}
}

func TestHealthAndReadiness(t *testing.T) {
	b := pubsub.NewMemory(pubsub.Options{})
	e := startEnv(t, testConfig(), b)
	get := func(path string) (int, string, http.Header) {
		res, err := http.Get(e.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body), res.Header
	}
	if status, body, h := get("/healthz"); status != 200 || body != "ok" || h.Get("X-Request-Id") == "" {
		t.Fatalf("healthz: %d %q, request id %q", status, body, h.Get("X-Request-Id"))
	}
	if status, _, _ := get("/readyz"); status != 200 {
		t.Fatalf("readyz: %d", status)
	}
	_ = b.Close()
	status, body, h := get("/readyz")
	if status != 503 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("readyz of a closed broker: %d %q", status, body)
	}
	var out struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil || out.Error.Code != "UNAVAILABLE" || out.Error.Message == "" {
		t.Fatalf("readyz body %q", body)
	}
	if status, body, _ := get("/nowhere"); status != 404 || !strings.Contains(body, `"code":"NOT_FOUND"`) {
		t.Fatalf("404: %d %q", status, body)
	}
}

func TestBodyLimit(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	big := strings.Repeat("x", 2<<20)
	body, _ := json.Marshal(map[string]any{"query": sendMutation, "variables": map[string]any{"in": map[string]any{"channel": "big", "data": big}}})
	req, _ := http.NewRequest(http.MethodPost, e.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(raw), `"code":"PAYLOAD_TOO_LARGE"`) {
		t.Fatalf("status %d: %s", res.StatusCode, raw)
	}
	if got := e.ids(t, "big"); len(got) != 0 {
		t.Fatalf("appended %v", got)
	}
}

func TestWebSocketOrigin(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	host := strings.TrimPrefix(e.url, "http://")
	for _, tt := range []struct {
		origin string
		ok     bool
	}{
		{"", true}, // mini-programs and native apps send none
		{"http://" + host, true},
		{"https://evil.example", false},
	} {
		h := http.Header{}
		if tt.origin != "" {
			h.Set("Origin", tt.origin)
		}
		c, err := e.tryDialWS(transportWS, "", h)
		if (err == nil) != tt.ok {
			t.Errorf("origin %q: err %v, want ok %v", tt.origin, err, tt.ok)
		}
		if c != nil {
			c.conn.Close()
		}
	}
}

// TestAccessLog: one JSON line per request with its request id, and no
// credential.
func TestAccessLog(t *testing.T) {
	var logs logbuf.Buffer
	e := startEnvLog(t, testConfig(), memoryBroker(t, pubsub.Options{}), &logs)
	secret := token(t, "u", []string{"*"}, time.Hour)
	e.doURL(t, e.url+"/graphql?token="+secret, "", `{ channel(name: "x") { name } }`, nil)
	e.send(t, "x", 1)
	var line struct {
		ReqID    string  `json:"req_id"`
		Method   string  `json:"method"`
		Path     string  `json:"path"`
		Status   int     `json:"status"`
		Duration float64 `json:"duration"`
		Message  string  `json:"message"`
	}
	eventually(t, "two access log lines", func() bool { return strings.Count(logs.String(), `"message":"request"`) >= 2 })
	first, _, _ := strings.Cut(logs.String(), "\n")
	if err := json.Unmarshal([]byte(first), &line); err != nil {
		t.Fatal(err)
	}
	if line.ReqID == "" || line.Method != "POST" || line.Path != "/graphql" || line.Status != 200 || line.Message != "request" {
		t.Fatalf("access log line %s", first)
	}
	if strings.Contains(logs.String(), secret) || strings.Contains(logs.String(), testKey) {
		t.Fatalf("a credential was logged:\n%s", logs.String())
	}
}
