package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/limits"
)

// Fuzz targets for the query parameters of GET /events and GET /poll
// (issue 12): channel (repeatable), cursor, Last-Event-ID, timeout,
// limit, token and whatever else a client puts there reach pushgate's
// whole handler (routing, origins, limits, parsing, access, the store).
// Whatever they hold, the answer is a 4xx with a JSON error whose code
// its status matches, or a valid stream or poll answer whose cursor names
// exactly the channels asked for; never a 5xx, never a panic.

// fuzzHandler is pushgate's whole handler over a memory broker holding a
// few messages on "a" (3 retained of 5): anonymous reading, a JWT secret,
// the connection limits off (the fuzzer opens streams far faster than
// they close). Its seeds add queries whose cursors carry a's epoch, which
// changes with every broker, so that mutations of their offsets reach the
// store's reads, as a client resuming would.
func fuzzHandler(f *testing.F) http.Handler {
	f.Helper()
	broker := pubsub.NewMemory(pubsub.Options{HistorySize: 3})
	f.Cleanup(func() { _ = broker.Close() })
	for i := range 5 {
		if _, err := broker.Publish(context.Background(), pubsub.PublishRequest{Channel: "a", Data: []byte{'0' + byte(i)}}); err != nil {
			f.Fatal(err)
		}
	}
	st, err := broker.State(context.Background(), "a")
	if err != nil {
		f.Fatal(err)
	}
	for _, off := range []uint64{0, 1, 3, 5, 6, 1 << 63, 1<<64 - 2, 1<<64 - 1} {
		c := pubsub.NewCursor(map[string]pubsub.Position{"a": {Epoch: st.Epoch, Offset: off}}).String()
		f.Add("channel=a&timeout=1&cursor="+c, "")
		f.Add("channel=a&channel=b", c)
	}
	cfg := Config{AllowAnonymous: true, JWTSecret: "fuzz-secret", Limits: limits.Limits{
		MaxConnectionsPerIP: -1, MaxConnectionsPerSubject: -1, ConnectRatePerIP: limits.Rate{PerSecond: -1}}}
	return New(cfg, broker, zerolog.New(io.Discard))
}

// fuzzRequest is GET path?query with Last-Event-ID, as a client can send
// it; ok is false for what no HTTP client sends (a URL or header value
// with control characters).
func fuzzRequest(path, query, lastEventID string) (*http.Request, bool) {
	if strings.ContainsAny(lastEventID, "\r\n\x00") {
		return nil, false
	}
	r, err := http.NewRequest(http.MethodGet, "http://pushgate.test"+path+"?"+query, nil)
	if err != nil {
		return nil, false
	}
	r.RemoteAddr = "192.0.2.1:4000"
	if lastEventID != "" {
		r.Header.Set("Last-Event-ID", lastEventID)
	}
	return r, true
}

// checkRefusal: a 4xx whose JSON error has a code its status matches.
func checkRefusal(t *testing.T, r *http.Request, status int, body []byte) {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("%s: %d with body %q", r.URL, status, body)
	}
	if status < 400 || status > 499 || status != HTTPStatus(e.Error.Code) {
		t.Fatalf("%s: %d for %s %q", r.URL, status, e.Error.Code, e.Error.Message)
	}
}

// checkCursor: text is a cursor naming exactly the channels of r.
func checkCursor(t *testing.T, r *http.Request, text string) {
	t.Helper()
	c, err := pubsub.ParseCursor(text)
	if err != nil {
		t.Fatalf("%s: the answer's cursor %q: %v", r.URL, text, err)
	}
	want := slices.Clone(r.URL.Query()["channel"])
	slices.Sort(want)
	var got []string
	for _, p := range c.Positions() {
		got = append(got, p.Channel)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s: the answer's cursor names %v, the request %v", r.URL, got, want)
	}
}

// FuzzPollQuery: GET /poll. The request's context ends after a few
// milliseconds, so that a poll that would hold answers soon, as at
// shutdown, while one that reads what is retained (a catch-up from a
// cursor) runs as it does for a client; the deadline bounds the run and
// decides nothing: every answer must be valid whenever it comes.
func FuzzPollQuery(f *testing.F) {
	for _, seed := range [][2]string{
		{"channel=a", ""},
		{"channel=a&channel=b&timeout=5&limit=2&cursor=AQEBYQ02YjE3MjczYjE4OGU4AQ", ""},
		{"channel=a&cursor=AQEBYQAA&timeout=0", ""},
		{"channel=user:&timeout=0", ""},
		{"channel=a&timeout=-1", ""},
		{"channel=a&timeout=99999999999999999999", ""},
		{"channel=a&limit=0", ""},
		{"channel=a&cursor=%ZZ", ""},
		{"channel=a;channel=b", ""},
		{"channel=a&channel=a", ""},
		{strings.Repeat("channel=c&", 33), ""},
		{"channel=a&token=e30.e30.e30", ""},
		{"cursor=AQEBYQAA", "AQEBYQAA"},
	} {
		f.Add(seed[0], seed[1])
	}
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, query, lastEventID string) {
		r, ok := fuzzRequest("/poll", query, lastEventID)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Millisecond)
		defer cancel()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r.WithContext(ctx))
		if w.Code != http.StatusOK {
			checkRefusal(t, r, w.Code, w.Body.Bytes())
			return
		}
		var answer struct {
			Messages []json.RawMessage `json:"messages"`
			Cursor   *string           `json:"cursor"`
			Reset    json.RawMessage   `json:"reset"`
		}
		if w.Header().Get("Content-Type") != "application/json" || json.Unmarshal(w.Body.Bytes(), &answer) != nil ||
			answer.Messages == nil || answer.Cursor == nil || answer.Reset == nil {
			t.Fatalf("%s: 200 %v %q", r.URL, w.Header(), w.Body.Bytes())
		}
		checkCursor(t, r, *answer.Cursor)
	})
}

// hijackRecorder records a response and hands the handler conn when it
// takes the connection over (as net/http would, but the status and
// headers stay in the recorder).
type hijackRecorder struct {
	*httptest.ResponseRecorder
	conn net.Conn
}

func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.conn, bufio.NewReadWriter(bufio.NewReader(h.conn), bufio.NewWriter(h.conn)), nil
}

// FuzzEventsQuery: GET /events, with Last-Event-ID. A stream the handler
// opens is read over a real loopback TCP connection up to its first block
// (retry, and the id naming where it starts), then closed.
func FuzzEventsQuery(f *testing.F) {
	for _, seed := range [][2]string{
		{"channel=a", ""},
		{"channel=a", "AQEBYQAA"},
		{"channel=a&channel=b&cursor=AQEBYQ02YjE3MjczYjE4OGU4AQ", ""},
		{"channel=a&cursor=AQEBYQAA", "AQEBYQ02YjE3MjczYjE4OGU4AQ"},
		{"channel=user:", ""},
		{"channel=a", "not a cursor"},
		{"channel=a&cursor=", " "},
		{"channel=%00", ""},
		{"channel=a&token=nope", ""},
		{strings.Repeat("channel=c&", 33), ""},
	} {
		f.Add(seed[0], seed[1])
	}
	h := fuzzHandler(f)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	f.Fuzz(func(t *testing.T, query, lastEventID string) {
		r, ok := fuzzRequest("/events", query, lastEventID)
		if !ok {
			return
		}
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		// Closed with a reset, so that no TIME_WAIT piles up over a long run.
		defer func() { _ = client.(*net.TCPConn).SetLinger(0); client.Close() }()
		conn, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		w := &hijackRecorder{ResponseRecorder: httptest.NewRecorder(), conn: conn}
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			conn.Close()
			checkRefusal(t, r, w.Code, w.Body.Bytes())
			return
		}
		if ct := w.Header().Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
			t.Fatalf("%s: 200 with Content-Type %q", r.URL, ct)
		}
		// The first chunk: "<size>\r\nretry: 2000\nid: <cursor>\n\n\r\n".
		_ = client.SetReadDeadline(time.Now().Add(10 * time.Second)) // bounds a failure, decides nothing
		br := bufio.NewReader(client)
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatalf("%s: no chunk: %v", r.URL, err)
		}
		var block []string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: the first block ends early: %q %v", r.URL, block, err)
			}
			if line == "\n" {
				break
			}
			block = append(block, strings.TrimSuffix(line, "\n"))
		}
		if len(block) != 2 || !strings.HasPrefix(block[0], "retry: ") || !strings.HasPrefix(block[1], "id: ") {
			t.Fatalf("%s: the first block %q", r.URL, block)
		}
		checkCursor(t, r, strings.TrimPrefix(block[1], "id: "))
		if bytes.ContainsAny([]byte(block[1]), "\r") {
			t.Fatalf("%s: a carriage return in the id line", r.URL)
		}
	})
}
