package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/limits"
)

// limitError is a GraphQL error with the fields a limit sets.
type limitError struct {
	Message    string `json:"message"`
	Extensions struct {
		Code       string `json:"code"`
		RetryAfter int    `json:"retryAfter"`
	} `json:"extensions"`
}

// post sends a GraphQL operation and returns the response with its raw
// body (accept "" is application/json).
func (e *env) post(t *testing.T, cred, accept, query string, vars map[string]any) (*http.Response, []byte) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, e.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res, raw
}

// onlyError decodes a response that must be one error and no data.
func onlyError(t *testing.T, raw []byte) limitError {
	t.Helper()
	var out struct {
		Data   json.RawMessage `json:"data"`
		Errors []limitError    `json:"errors"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("body %s: %v", raw, err)
	}
	if len(out.Errors) != 1 || (len(out.Data) > 0 && string(out.Data) != "null") {
		t.Fatalf("want one error and no data, got %s", raw)
	}
	return out.Errors[0]
}

// wantLimit checks a GraphQL limit error: its code and the limit named in
// its message.
func wantLimit(t *testing.T, got limitError, code, message string) {
	t.Helper()
	if got.Extensions.Code != code || !strings.Contains(got.Message, message) {
		t.Fatalf("got %s %q, want %s with %q", got.Extensions.Code, got.Message, code, message)
	}
}

// open GETs path and returns the response with its body open (closed when
// ctx ends, or by the caller).
func (e *env) open(t *testing.T, ctx context.Context, path string, header http.Header) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url+path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// openStream opens an SSE stream that must be accepted; it is closed when
// the returned function is called or the test ends.
func (e *env) openStream(t *testing.T, path string, header http.Header) (closeStream func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	res := e.open(t, ctx, path, header)
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(res.Body)
		cancel()
		t.Fatalf("GET %s: %s %s", path, res.Status, body)
	}
	closeStream = func() { cancel(); res.Body.Close() }
	t.Cleanup(closeStream)
	return closeStream
}

// status GETs path and returns its status, closing the response.
func (e *env) status(t *testing.T, path string, header http.Header) int {
	t.Helper()
	res := e.open(t, context.Background(), path, header)
	res.Body.Close()
	return res.StatusCode
}

// wantRefused checks a plain HTTP refusal: status, {"error":{code,
// message}} with the limit named, and Retry-After on a 429.
func wantRefused(t *testing.T, res *http.Response, status int, code, message string) {
	t.Helper()
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("status %d, body %q not JSON: %v", res.StatusCode, raw, err)
	}
	if res.StatusCode != status || body.Error.Code != code || !strings.Contains(body.Error.Message, message) {
		t.Fatalf("got %d %+v, want %d %s with %q", res.StatusCode, body.Error, status, code, message)
	}
	if status == http.StatusTooManyRequests {
		if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || s < 1 {
			t.Fatalf("429 with Retry-After %q", res.Header.Get("Retry-After"))
		}
	}
}

// dialRaw opens a WebSocket on /graphql and returns the handshake's
// response, for refusals.
func (e *env) dialRaw(header http.Header) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{Subprotocols: []string{transportWS}, HandshakeTimeout: waitTimeout}
	return d.Dial("ws"+strings.TrimPrefix(e.url, "http")+"/graphql", header)
}

// wantWSRefused checks that a WebSocket upgrade is refused with status and
// a JSON error naming message.
func (e *env) wantWSRefused(t *testing.T, header http.Header, status int, code, message string) {
	t.Helper()
	conn, res, err := e.dialRaw(header)
	if err == nil {
		conn.Close()
		t.Fatalf("WebSocket accepted, want %d", status)
	}
	if res == nil {
		t.Fatalf("WebSocket refused without a response: %v", err)
	}
	wantRefused(t, res, status, code, message)
}

// TestSendRatePerKey: a flood of sends from one API key passes its burst,
// then gets RATE_LIMITED naming the limit, with Retry-After, on every
// transport, and appends nothing; once the bucket refills, sending works
// again.
func TestSendRatePerKey(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.SendRatePerKey = limits.Rate{PerSecond: 1, Burst: 3}
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	ws := e.dialWS(t, transportWS, "", nil)
	ws.init(map[string]any{"token": testKey})

	floodVars := map[string]any{"in": map[string]any{"channel": "flood", "data": "x"}}
	for range 3 {
		e.send(t, "flood", "x")
	}
	const want = "send rate limit of 1/s per API key exceeded; retry after 1s"
	res, raw := e.post(t, testKey, "", sendMutation, floodVars)
	got := onlyError(t, raw)
	wantLimit(t, got, "RATE_LIMITED", want)
	if res.StatusCode != http.StatusOK || res.Header.Get("Retry-After") != "1" || got.Extensions.RetryAfter != 1 {
		t.Fatalf("application/json: status %d, Retry-After %q, retryAfter %d; want 200, 1, 1",
			res.StatusCode, res.Header.Get("Retry-After"), got.Extensions.RetryAfter)
	}
	// graphql-response+json answers a request error with 4xx: 429.
	res, raw = e.post(t, testKey, "application/graphql-response+json", sendMutation, floodVars)
	wantLimit(t, onlyError(t, raw), "RATE_LIMITED", want)
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "1" {
		t.Fatalf("graphql-response+json: status %d, Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
	}
	// Over the WebSocket.
	payload, _ := json.Marshal(map[string]any{"query": sendMutation, "variables": floodVars})
	ws.write(wsMsg{Type: "subscribe", ID: "send", Payload: payload})
	if code := ws.errorCode("send"); code != "RATE_LIMITED" {
		t.Fatalf("send over WebSocket: %s", code)
	}
	// A mutation of several sends counts each; one over the burst can never
	// pass.
	res, raw = e.post(t, testKey, "", `mutation($ch: [String!]!) { broadcast(input: {channels: $ch, data: 1}) { messages { id } } }`,
		map[string]any{"ch": []string{"a", "b", "c", "d"}})
	wantLimit(t, onlyError(t, raw), "BAD_USER_INPUT", "4 messages in one operation is over the send burst of 3 per API key")
	if ids := e.ids(t, "flood"); len(ids) != 3 {
		t.Fatalf("refused sends appended: %v", ids)
	}
	for _, ch := range []string{"a", "b", "c", "d"} {
		if ids := e.ids(t, ch); len(ids) != 0 {
			t.Fatalf("refused broadcast appended to %s: %v", ch, ids)
		}
	}

	// The bucket refills at 1/s; refused attempts take nothing from it.
	eventually(t, "a send after the refill", func() bool {
		_, raw := e.post(t, testKey, "", sendMutation, floodVars)
		return !bytes.Contains(raw, []byte(`"errors"`))
	})
	if ids := e.ids(t, "flood"); len(ids) != 4 {
		t.Fatalf("history after the refill: %v", ids)
	}
}

// senderToken mints a token whose holder may read and send to channels.
func senderToken(t *testing.T, sub string, channels []string) string {
	t.Helper()
	claims := access.Claims{
		Channels: channels,
		Publish:  channels,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   sub,
			ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
		},
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testJWTSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSendRatePerToken: token holders that may send are limited per
// holder (sub), apart from other holders and from API keys.
func TestSendRatePerToken(t *testing.T) {
	cfg := testConfig()
	cfg.Namespaces = access.Namespaces{Named: map[string]access.Namespace{"chat": {TokenPublish: true}}}
	cfg.Limits.SendRatePerToken = limits.Rate{PerSecond: 1, Burst: 2}
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	alice := senderToken(t, "alice", []string{"chat:*"})
	aliceAgain := senderToken(t, "alice", []string{"chat:room"}) // another token, the same holder
	bob := senderToken(t, "bob", []string{"chat:*"})
	vars := map[string]any{"in": map[string]any{"channel": "chat:room", "data": "hi"}}

	for range 2 {
		e.do(t, alice, sendMutation, vars).decode(t, &struct{}{})
	}
	for _, tok := range []string{alice, aliceAgain} {
		_, raw := e.post(t, tok, "", sendMutation, vars)
		wantLimit(t, onlyError(t, raw), "RATE_LIMITED", "send rate limit of 1/s per token holder exceeded; retry after 1s")
	}
	e.do(t, bob, sendMutation, vars).decode(t, &struct{}{})
	e.do(t, testKey, sendMutation, vars).decode(t, &struct{}{})
	if ids := e.ids(t, "chat:room"); len(ids) != 4 {
		t.Fatalf("history %v, want alice's 2, bob's and the key's", ids)
	}
	eventually(t, "alice sends after the refill", func() bool {
		_, raw := e.post(t, alice, "", sendMutation, vars)
		return !bytes.Contains(raw, []byte(`"errors"`))
	})
}

// TestConnectionsPerIP: SSE, long-polls and WebSockets open from one IP
// share its limit; the one over it is refused with 429 naming the limit,
// and closing one frees a slot.
func TestConnectionsPerIP(t *testing.T) {
	cfg := anonConfig()
	cfg.Limits.MaxConnectionsPerIP = 2
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	closeSSE := e.openStream(t, "/events?channel=ip", nil)
	e.dialWS(t, transportWS, "", nil) // counted from the upgrade on

	const want = "connection limit of 2 open connections per client IP reached"
	for _, path := range []string{"/events?channel=ip", "/poll?channel=ip&timeout=0"} {
		wantRefused(t, e.open(t, context.Background(), path, nil), http.StatusTooManyRequests, "RATE_LIMITED", want)
	}
	e.wantWSRefused(t, nil, http.StatusTooManyRequests, "RATE_LIMITED", want)
	// Queries and mutations are not connections.
	if ids := e.ids(t, "ip"); len(ids) != 0 {
		t.Fatalf("history of ip: %v", ids)
	}

	closeSSE()
	eventually(t, "a slot freed by closing the SSE stream", func() bool {
		return e.status(t, "/poll?channel=ip&timeout=0", nil) == http.StatusOK
	})
}

// TestTrustedProxies: behind a trusted proxy the per-IP limits apply to
// the client X-Forwarded-For names; without one the header is ignored.
func TestTrustedProxies(t *testing.T) {
	from := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }
	cfg := anonConfig()
	cfg.Limits.MaxConnectionsPerIP = 1
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	e.openStream(t, "/events?channel=p", from("203.0.113.7"))
	wantRefused(t, e.open(t, context.Background(), "/events?channel=p", from("203.0.113.7")),
		http.StatusTooManyRequests, "RATE_LIMITED", "per client IP")
	e.wantWSRefused(t, from("203.0.113.7"), http.StatusTooManyRequests, "RATE_LIMITED", "per client IP")
	e.openStream(t, "/events?channel=p", from("203.0.113.8"))

	cfg.TrustedProxies = nil
	e = startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	e.openStream(t, "/events?channel=p", from("203.0.113.7"))
	wantRefused(t, e.open(t, context.Background(), "/events?channel=p", from("203.0.113.8")),
		http.StatusTooManyRequests, "RATE_LIMITED", "per client IP")
}

// TestConnectRatePerIP: new connections from one IP pass the burst, then
// get 429 with Retry-After until the bucket refills.
func TestConnectRatePerIP(t *testing.T) {
	cfg := anonConfig()
	cfg.Limits.ConnectRatePerIP = limits.Rate{PerSecond: 2, Burst: 3}
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	for i := range 3 {
		if s := e.status(t, "/poll?channel=r&timeout=0", nil); s != http.StatusOK {
			t.Fatalf("poll %d: %d", i+1, s)
		}
	}
	const want = "new connection rate limit of 2/s per client IP exceeded; retry after 1s"
	res := e.open(t, context.Background(), "/events?channel=r", nil)
	if res.Header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q, want 1", res.Header.Get("Retry-After"))
	}
	wantRefused(t, res, http.StatusTooManyRequests, "RATE_LIMITED", want)
	e.wantWSRefused(t, nil, http.StatusTooManyRequests, "RATE_LIMITED", want)
	eventually(t, "a poll after the refill", func() bool {
		return e.status(t, "/poll?channel=r&timeout=0", nil) == http.StatusOK
	})
}

// TestPollFollowingNotRateLimited: a long-poll that carries a cursor is a
// client following its channel, not a new connection: with a connect rate
// of 1/s (burst 3), one client polls after each of 300 sends and is never
// answered 429; polls without a cursor are still refused past the burst.
func TestPollFollowingNotRateLimited(t *testing.T) {
	cfg := anonConfig()
	cfg.Limits.ConnectRatePerIP = limits.Rate{PerSecond: 1, Burst: 3}
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	type answer struct {
		Messages []struct {
			ID string `json:"id"`
		} `json:"messages"`
		Cursor string `json:"cursor"`
	}
	poll := func(t *testing.T, query string) answer {
		t.Helper()
		res := e.open(t, context.Background(), "/poll?"+query, nil)
		defer res.Body.Close()
		var a answer
		if res.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(res.Body)
			t.Fatalf("GET /poll?%s: %s %s", query, res.Status, body)
		}
		if err := json.NewDecoder(res.Body).Decode(&a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	cursor := poll(t, "channel=follow&timeout=0").Cursor // takes a token
	for i := range 300 {
		sent := e.send(t, "follow", i)
		a := poll(t, "channel=follow&timeout=5&cursor="+url.QueryEscape(cursor))
		if len(a.Messages) != 1 || a.Messages[0].ID != sent.ID {
			t.Fatalf("poll %d: %+v, want message %s", i, a, sent.ID)
		}
		cursor = a.Cursor
	}
	// New polls: the burst's two tokens left (and one a second), then
	// 429.
	for i := 0; ; i++ {
		res := e.open(t, context.Background(), "/poll?channel=follow&timeout=0", nil)
		if res.StatusCode == http.StatusOK {
			res.Body.Close()
			if i == 10 {
				t.Fatal("10 new polls at once, none refused by a rate of 1/s with a burst of 3")
			}
			continue
		}
		wantRefused(t, res, http.StatusTooManyRequests, "RATE_LIMITED", "new connection rate limit of 1/s per client IP exceeded")
		break
	}
}

// TestConnectionsPerSubject: one token subject's connections on every
// transport share its limit; a WebSocket over it is closed at
// connection_init with 4429; other subjects and API keys are not counted.
func TestConnectionsPerSubject(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxConnectionsPerSubject = 2
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	alice := token(t, "alice", []string{"room:*"}, time.Hour)
	alice2 := token(t, "alice", []string{"room:1"}, time.Hour) // another token, the same subject
	bob := token(t, "bob", []string{"room:*"}, time.Hour)

	closeSSE := e.openStream(t, "/events?channel=room:1&token="+alice, nil)
	ws := e.dialWS(t, transportWS, "", nil)
	ws.init(map[string]any{"token": alice})

	const want = "connection limit of 2 open connections per subject (token sub) reached"
	for _, path := range []string{"/poll?channel=room:1&timeout=0&token=" + alice2, "/events?channel=room:1&token=" + alice} {
		wantRefused(t, e.open(t, context.Background(), path, nil), http.StatusTooManyRequests, "RATE_LIMITED", want)
	}
	// graphql-sse is a connection too.
	res, _ := e.post(t, alice, "text/event-stream", feedQuery, map[string]any{"channels": []string{"room:1"}})
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("graphql-sse over the limit: %d", res.StatusCode)
	}
	over := e.dialWS(t, transportWS, "", nil)
	raw, _ := json.Marshal(map[string]any{"token": alice})
	over.write(wsMsg{Type: "connection_init", Payload: raw})
	var ce *websocket.CloseError
	if err := over.waitClosed(); !errors.As(err, &ce) || ce.Code != 4429 || !strings.Contains(ce.Text, "per subject") {
		t.Fatalf("WebSocket over the limit ended with %v, want close 4429 naming the limit", err)
	}

	if s := e.status(t, "/poll?channel=room:1&timeout=0&token="+bob, nil); s != http.StatusOK {
		t.Fatalf("bob's poll: %d", s)
	}
	if s := e.status(t, "/poll?channel=room:1&timeout=0&token="+testKey, nil); s != http.StatusOK {
		t.Fatalf("an API key's poll: %d", s)
	}
	closeSSE()
	eventually(t, "alice's slot freed by closing her SSE stream", func() bool {
		return e.status(t, "/poll?channel=room:1&timeout=0&token="+alice, nil) == http.StatusOK
	})
}

// TestSubscriptionsPerWebSocket: the 101st subscribe on one socket is
// refused with the limit named; the socket and its 100 subscriptions go
// on, and completing one frees its slot.
func TestSubscriptionsPerWebSocket(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	var st struct {
		Channel struct{ Cursor string } `json:"channel"`
	}
	e.do(t, testKey, `{ channel(name: "many") { cursor } }`, nil).decode(t, &st)
	start := st.Channel.Cursor // each subscription resumes from here: no race with the send

	c := e.dialWS(t, transportWS, "", nil)
	c.init(map[string]any{"token": testKey})
	for i := range 100 {
		c.subscribe("s"+strconv.Itoa(i), []string{"many"}, start)
	}
	c.subscribe("over", []string{"many"}, start)
	m := c.next()
	var res struct{ Errors []limitError }
	if m.Type != "next" || m.ID != "over" || json.Unmarshal(m.Payload, &res) != nil || len(res.Errors) != 1 {
		t.Fatalf("want the 101st subscribe refused, got %s %s %s", m.Type, m.ID, m.Payload)
	}
	wantLimit(t, res.Errors[0], "RATE_LIMITED", "subscription limit of 100 active operations per WebSocket connection reached")
	if end := c.next(); end.Type != "complete" || end.ID != "over" {
		t.Fatalf("want complete of over, got %+v", end)
	}
	if ids := e.ids(t, "many"); len(ids) != 0 {
		t.Fatalf("history of many: %v", ids)
	}

	e.send(t, "many", "hello")
	got := map[string]bool{}
	for range 100 {
		m := c.next()
		if m.Type != "next" || !strings.Contains(string(m.Payload), `"hello"`) || got[m.ID] {
			t.Fatalf("got %s %s %s", m.Type, m.ID, m.Payload)
		}
		got[m.ID] = true
	}
	c.quiet(100 * time.Millisecond)

	c.write(wsMsg{Type: "complete", ID: "s0"})
	for i := 0; ; i++ {
		id := "again" + strconv.Itoa(i)
		c.subscribe(id, []string{"many"}, start) // resumes: delivers hello at once
		m := c.next()
		if m.Type == "complete" && m.ID == "s0" { // gqlgen acknowledges the client's complete
			m = c.next()
		}
		if m.Type == "next" && m.ID == id && strings.Contains(string(m.Payload), `"hello"`) {
			break
		}
		if !strings.Contains(string(m.Payload), "RATE_LIMITED") || i > 100 {
			t.Fatalf("subscribe after a complete: %s %s %s", m.Type, m.ID, m.Payload)
		}
		c.next() // its complete
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLimitsOff: negative limits turn them off.
func TestLimitsOff(t *testing.T) {
	cfg := anonConfig()
	cfg.Limits = limits.Limits{
		MaxConnectionsPerIP:           -1,
		MaxSubscriptionsPerConnection: -1,
		ConnectRatePerIP:              limits.Rate{PerSecond: -1},
		SendRatePerKey:                limits.Rate{PerSecond: -1},
		MaxQueryDepth:                 -1,
		MaxQueryComplexity:            -1,
	}
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	for range 150 {
		if s := e.status(t, "/poll?channel=off&timeout=0", nil); s != http.StatusOK {
			t.Fatalf("poll: %d", s)
		}
	}
	var aliases strings.Builder
	for i := range 600 {
		aliases.WriteString(" a" + strconv.Itoa(i) + `: channel(name: "off") { name }`)
	}
	if errs := e.do(t, testKey, "{"+aliases.String()+" }", nil).Errors; len(errs) != 0 {
		t.Fatalf("complexity off: %+v", errs)
	}
}
