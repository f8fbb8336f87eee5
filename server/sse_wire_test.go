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
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
)

// rawSSE is GET /events over a raw HTTP/1.1 connection, read line by line
// exactly as sent (no SSE library in between).
type rawSSE struct {
	t    *testing.T
	conn net.Conn
	body *bufio.Reader
	res  *http.Response
}

func openRawSSE(t *testing.T, base, query string, header http.Header) *rawSSE {
	t.Helper()
	u, _ := url.Parse(base)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var h strings.Builder
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&h, "%s: %s\r\n", k, v)
		}
	}
	fmt.Fprintf(conn, "GET /events?%s HTTP/1.1\r\nHost: %s\r\n%s\r\n", query, u.Host, h.String())
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /events?%s: %s", query, res.Status)
	}
	return &rawSSE{t: t, conn: conn, body: bufio.NewReader(res.Body), res: res}
}

// block reads one block (the lines up to a blank line), skipping
// heartbeat comments, within d.
func (s *rawSSE) block(d time.Duration) []string {
	s.t.Helper()
	_ = s.conn.SetReadDeadline(time.Now().Add(d))
	var lines []string
	for {
		line, err := s.body.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading the stream after %q: %v", lines, err)
		}
		line = strings.TrimSuffix(line, "\n")
		if strings.HasSuffix(line, "\r") {
			s.t.Fatalf("line %q ends with CR", line)
		}
		switch {
		case line == "" && len(lines) > 0:
			return lines
		case line == "", strings.HasPrefix(line, ":"):
		default:
			lines = append(lines, line)
		}
	}
}

// TestSSEWireFormat checks the bytes of GET /events: the retry hint and the
// id-only start block, then one block per message with exactly an id line
// and one data line (no event field, so EventSource.onmessage fires) whose
// JSON has exactly channel, id, event (when set), data and createdAt; a reset
// is id, "event: reset" and {channel,reason,cursor}. A live message is
// flushed as a whole block at once, with no later write needed to push it
// out. Up to 32 channels are accepted.
func TestSSEWireFormat(t *testing.T) {
	cfg := anonConfig()
	cfg.SSERetry = 1500 * time.Millisecond
	cfg.Heartbeat = time.Minute // nothing else is written while idle
	b := memoryBroker(t, pubsub.Options{HistorySize: 3})
	e := startEnv(t, cfg, b)

	var chans []string
	q := url.Values{}
	for i := range pubsub.MaxChannelsPerSubscription {
		ch := fmt.Sprintf("w:%d", i)
		chans = append(chans, ch)
		q.Add("channel", ch)
	}
	s := openRawSSE(t, e.url, q.Encode(), nil)
	for k, want := range map[string]string{"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := s.res.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	start := s.block(waitTimeout)
	if len(start) != 2 || start[0] != "retry: 1500" || !strings.HasPrefix(start[1], "id: ") {
		t.Fatalf("start block %q, want retry: 1500 and an id", start)
	}
	if c, err := pubsub.ParseCursor(strings.TrimPrefix(start[1], "id: ")); err != nil || len(c.Positions()) != len(chans) {
		t.Fatalf("start id %q: %v", start[1], err)
	}

	checkMessage := func(lines []string, sent message, wantKeys string) {
		t.Helper()
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "id: ") || !strings.HasPrefix(lines[1], "data: ") {
			t.Fatalf("message block %q, want exactly one id and one data line", lines)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[1], "data: ")), &fields); err != nil {
			t.Fatalf("data %q: %v", lines[1], err)
		}
		var keys []string
		for _, k := range []string{"channel", "id", "event", "data", "createdAt"} {
			if _, ok := fields[k]; ok {
				keys = append(keys, k)
			}
		}
		if strings.Join(keys, ",") != wantKeys || len(fields) != len(keys) {
			t.Fatalf("data %s has keys %v, want exactly %s", lines[1], fields, wantKeys)
		}
		var m streamMessage
		_ = json.Unmarshal([]byte(strings.TrimPrefix(lines[1], "data: ")), &m)
		if m.Channel != sent.Channel || m.ID != sent.ID || string(m.Data) != string(sent.Data) ||
			m.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z") != sent.CreatedAt {
			t.Fatalf("data %s, sent %+v", lines[1], sent)
		}
		if _, err := pubsub.ParseCursor(strings.TrimPrefix(lines[0], "id: ")); err != nil {
			t.Fatalf("id %q is not a cursor: %v", lines[0], err)
		}
	}

	// Data with newlines, quotes and non-ASCII text stays on one line.
	var plain message
	var out struct {
		Send struct {
			Message message `json:"message"`
		} `json:"send"`
	}
	e.do(t, testKey, sendMutation, map[string]any{"in": map[string]any{
		"channel": "w:31", "data": map[string]any{"text": "line 1\nline 2\r\n\"quoted\" 多字节"},
	}}).decode(t, &out)
	plain = out.Send.Message
	checkMessage(s.block(2*time.Second), plain, "channel,id,data,createdAt")

	e.do(t, testKey, sendMutation, map[string]any{"in": map[string]any{
		"channel": "w:0", "event": "shipped", "data": []any{1, "two", nil},
	}}).decode(t, &out)
	named := out.Send.Message
	lines := s.block(2 * time.Second)
	checkMessage(lines, named, "channel,id,event,data,createdAt")
	if !strings.Contains(lines[1], `"event":"shipped"`) {
		t.Fatalf("data %q lacks the event", lines[1])
	}

	// A reset block: a cursor older than retention (3).
	for i := range 5 {
		e.send(t, "w:old", i)
	}
	old := pubsub.NewCursor(map[string]pubsub.Position{"w:old": {}})
	r := openRawSSE(t, e.url, url.Values{"channel": {"w:old"}, "cursor": {old.String()}}.Encode(), nil)
	r.block(waitTimeout) // start
	reset := r.block(2 * time.Second)
	if len(reset) != 3 || !strings.HasPrefix(reset[0], "id: ") || reset[1] != "event: reset" || !strings.HasPrefix(reset[2], "data: ") {
		t.Fatalf("reset block %q, want id, event: reset, data", reset)
	}
	var rv map[string]string
	if err := json.Unmarshal([]byte(strings.TrimPrefix(reset[2], "data: ")), &rv); err != nil || len(rv) != 3 ||
		rv["channel"] != "w:old" || rv["reason"] != "expired" || rv["cursor"] != strings.TrimPrefix(reset[0], "id: ") {
		t.Fatalf("reset data %q: %v", reset[2], err)
	}
	if first := r.block(2 * time.Second); len(first) != 2 || !strings.Contains(first[1], `"id":"3"`) {
		t.Fatalf("after the reset %q, want message 3", first)
	}
}

// TestSSEAuthorizationHeader: /events takes the token from Authorization
// as well as from ?token=, and refuses a token for another channel.
func TestSSEAuthorizationHeader(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	tok := token(t, "u1", []string{"hdr:*"}, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, _ := openSSE(t, ctx, eventsURL(e.url, []string{"hdr:1"}, nil), http.Header{"Authorization": {"Bearer " + tok}})
	sent := e.send(t, "hdr:1", "x")
	if m := decodeStream(t, nextSSE(t, events).data); m.ID != sent.ID || m.Channel != "hdr:1" {
		t.Fatalf("got %+v, want %+v", m, sent)
	}
	req, _ := http.NewRequest(http.MethodGet, eventsURL(e.url, []string{"other:1"}, nil), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("token for another channel: %s, want 403", res.Status)
	}
}

// TestSSEOverHTTP2: the stream is written on the HTTP/1.1 connection
// itself, so over HTTP/2 GET /events answers 505 with the error JSON.
func TestSSEOverHTTP2(t *testing.T) {
	ts := httptest.NewUnstartedServer(server.New(anonConfig(), memoryBroker(t, pubsub.Options{}), zerolog.New(io.Discard)))
	ts.EnableHTTP2 = true
	ts.StartTLS()
	defer ts.Close()
	res, err := ts.Client().Get(ts.URL + "/events?channel=h2")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Error struct{ Code, Message string }
	}
	if res.ProtoMajor != 2 || res.StatusCode != http.StatusHTTPVersionNotSupported ||
		json.NewDecoder(res.Body).Decode(&body) != nil || body.Error.Code != "HTTP_VERSION_NOT_SUPPORTED" {
		t.Fatalf("HTTP/%d %d %+v", res.ProtoMajor, res.StatusCode, body)
	}
}
