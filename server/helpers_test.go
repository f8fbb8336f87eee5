package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/limits"
)

const (
	testKey       = "test-key-secret"
	testJWTSecret = "test-jwt-secret"
	waitTimeout   = 10 * time.Second
)

func testConfig() server.Config {
	return server.Config{
		APIKeys:   []access.APIKey{{Name: "test", Secret: testKey}},
		JWTSecret: testJWTSecret,
		// Tests connect from one IP far faster than any client would;
		// limits_test.go turns the limit back on where it is tested.
		Limits: limits.Limits{ConnectRatePerIP: limits.Rate{PerSecond: -1}},
	}
}

// env is a real pushgate handler behind a real HTTP server on loopback.
type env struct {
	url    string
	broker pubsub.Broker
}

// startEnv serves server.New(cfg, broker) until the test ends; streams end
// first, as on a real shutdown.
func startEnv(t *testing.T, cfg server.Config, broker pubsub.Broker) *env {
	t.Helper()
	return startEnvLog(t, cfg, broker, io.Discard)
}

// startEnvLog is startEnv with the server's log written to w.
func startEnvLog(t *testing.T, cfg server.Config, broker pubsub.Broker, w io.Writer) *env {
	t.Helper()
	base, cancel := context.WithCancelCause(context.Background())
	ts := httptest.NewUnstartedServer(server.New(cfg, broker, zerolog.New(w)))
	ts.Config.BaseContext = func(net.Listener) context.Context { return base }
	ts.Start()
	t.Cleanup(func() {
		shutdownServer(t, ts, cancel)
		ts.Close()
	})
	return &env{url: ts.URL, broker: broker}
}

func memoryBroker(t *testing.T, opts pubsub.Options) pubsub.Broker {
	t.Helper()
	b := pubsub.NewMemory(opts)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// token mints a subscriber token.
func token(t *testing.T, sub string, channels []string, ttl time.Duration) string {
	t.Helper()
	claims := access.Claims{
		Channels: channels,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   sub,
			ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl)),
		},
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testJWTSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type gqlError struct {
	Message    string `json:"message"`
	Extensions struct {
		Code string `json:"code"`
	} `json:"extensions"`
}

type gqlResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

// code returns the code of the only error, failing when there is not
// exactly one.
func (r gqlResponse) code(t *testing.T) string {
	t.Helper()
	if len(r.Errors) != 1 {
		t.Fatalf("want one error, got %+v (data %s)", r.Errors, r.Data)
	}
	if r.Errors[0].Extensions.Code == "" {
		t.Fatalf("error without extensions.code: %+v", r.Errors[0])
	}
	return r.Errors[0].Extensions.Code
}

func (r gqlResponse) decode(t *testing.T, v any) {
	t.Helper()
	if len(r.Errors) > 0 {
		t.Fatalf("unexpected errors: %+v", r.Errors)
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		t.Fatalf("decode %s: %v", r.Data, err)
	}
}

// do posts a GraphQL operation with cred as bearer ("" for none).
func (e *env) do(t *testing.T, cred, query string, vars map[string]any) gqlResponse {
	t.Helper()
	return e.doURL(t, e.url+"/graphql", cred, query, vars)
}

func (e *env) doURL(t *testing.T, url, cred, query string, vars map[string]any) gqlResponse {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	_, out, _ := postGraphQL(t, url, cred, body)
	return out
}

// postGraphQL posts body as JSON with cred as bearer ("" for none) and
// decodes the GraphQL response.
func postGraphQL(t *testing.T, url, cred string, body []byte) (status int, out gqlResponse, raw []byte) {
	t.Helper()
	status, _, raw = postRaw(t, url, cred, nil, body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("status %d, body %s: %v", status, raw, err)
	}
	return status, out, raw
}

// postRaw POSTs a JSON body with cred as bearer (none when empty) and the
// extra headers; it returns the answer as it came.
func postRaw(t *testing.T, url, cred string, header http.Header, body []byte) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, raw
}

type message struct {
	Channel   string          `json:"channel"`
	ID        string          `json:"id"`
	Event     *string         `json:"event"`
	Data      json.RawMessage `json:"data"`
	CreatedAt string          `json:"createdAt"`
	Cursor    string          `json:"cursor"`
}

const messageFields = `channel id event data createdAt cursor`

const sendMutation = `mutation($in: SendInput!) { send(input: $in) { duplicate message { ` + messageFields + ` } } }`

// send sends data to channel with the test key and returns the message.
func (e *env) send(t *testing.T, channel string, data any) message {
	t.Helper()
	var out struct {
		Send struct {
			Message message `json:"message"`
		} `json:"send"`
	}
	e.do(t, testKey, sendMutation, map[string]any{"in": map[string]any{"channel": channel, "data": data}}).decode(t, &out)
	return out.Send.Message
}

// ids returns the history of channel (newest 1000) as ids, read with the
// test key.
func (e *env) ids(t *testing.T, channel string) []string {
	t.Helper()
	var out struct {
		History struct {
			Nodes []message `json:"nodes"`
		} `json:"history"`
	}
	e.do(t, testKey, `query($ch: String!) { history(channel: $ch, last: 1000) { nodes { id } } }`,
		map[string]any{"ch": channel}).decode(t, &out)
	ids := []string{}
	for _, m := range out.History.Nodes {
		ids = append(ids, m.ID)
	}
	return ids
}

// WebSocket test client, speaking graphql-transport-ws or the legacy
// graphql-ws over gorilla/websocket (independent of the server's
// coder/websocket).

const (
	transportWS = "graphql-transport-ws"
	legacyWS    = "graphql-ws"
)

var protocols = []string{transportWS, legacyWS}

type wsMsg struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

type wsClient struct {
	t     *testing.T
	proto string
	conn  *websocket.Conn
	wmu   sync.Mutex
	msgs  chan wsMsg
	done  chan struct{} // closed when the read loop ends
	err   error         // why it ended, readable after done
}

const feedQuery = `subscription($channels: [String!]!, $cursor: String) {
  feed(channels: $channels, cursor: $cursor) {
    __typename
    ... on Message { ` + messageFields + ` }
    ... on Reset { channel reason cursor }
  }
}`

// dialWS opens a WebSocket on /graphql (path may carry a query).
func (e *env) dialWS(t *testing.T, proto, path string, header http.Header) *wsClient {
	t.Helper()
	c, err := e.tryDialWS(proto, path, header)
	if err != nil {
		t.Fatalf("dial %s: %v", proto, err)
	}
	c.t = t
	if got := c.conn.Subprotocol(); got != proto {
		t.Fatalf("negotiated subprotocol %q, want %q", got, proto)
	}
	go c.readLoop()
	t.Cleanup(func() { c.conn.Close() })
	return c
}

func (e *env) tryDialWS(proto, path string, header http.Header) (*wsClient, error) {
	if path == "" {
		path = "/graphql"
	}
	d := websocket.Dialer{Subprotocols: []string{proto}, HandshakeTimeout: waitTimeout}
	conn, res, err := d.Dial("ws"+strings.TrimPrefix(e.url, "http")+path, header)
	if err != nil {
		return nil, err
	}
	res.Body.Close()
	return &wsClient{proto: proto, conn: conn, msgs: make(chan wsMsg, 1024), done: make(chan struct{})}, nil
}

func (c *wsClient) readLoop() {
	defer close(c.done)
	for {
		var m wsMsg
		if err := c.conn.ReadJSON(&m); err != nil {
			c.err = err
			return
		}
		switch m.Type {
		case "ka", "pong":
			continue
		case "ping":
			c.write(wsMsg{Type: "pong"})
			continue
		}
		c.msgs <- m
	}
}

func (c *wsClient) write(m wsMsg) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	_ = c.conn.WriteJSON(m)
}

// init sends connection_init with payload and waits for the ack.
func (c *wsClient) init(payload any) {
	c.t.Helper()
	raw, _ := json.Marshal(payload)
	c.write(wsMsg{Type: "connection_init", Payload: raw})
	if m := c.next(); m.Type != "connection_ack" {
		c.t.Fatalf("want connection_ack, got %+v", m)
	}
}

// subscribe starts the feed of channels as operation id.
func (c *wsClient) subscribe(id string, channels []string, cursor string) {
	vars := map[string]any{"channels": channels}
	if cursor != "" {
		vars["cursor"] = cursor
	}
	raw, _ := json.Marshal(map[string]any{"query": feedQuery, "variables": vars})
	typ := "subscribe"
	if c.proto == legacyWS {
		typ = "start"
	}
	c.write(wsMsg{Type: typ, ID: id, Payload: raw})
}

// next returns the next message other than keep-alives.
func (c *wsClient) next() wsMsg {
	c.t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-c.done:
		select {
		case m := <-c.msgs:
			return m
		default:
		}
		c.t.Fatalf("connection ended: %v", c.err)
	case <-time.After(waitTimeout):
		c.t.Fatalf("no message within %v", waitTimeout)
	}
	return wsMsg{}
}

type feedEvent struct {
	Typename string `json:"__typename"`
	message
	Reason string `json:"reason"`
}

// event returns the next feed event of operation id.
func (c *wsClient) event(id string) feedEvent {
	c.t.Helper()
	m := c.next()
	if (m.Type != "next" && m.Type != "data") || m.ID != id {
		c.t.Fatalf("want an event of %s, got %s %s %s", id, m.Type, m.ID, m.Payload)
	}
	var out struct {
		Feed feedEvent `json:"feed"`
	}
	var res gqlResponse
	if err := json.Unmarshal(m.Payload, &res); err != nil {
		c.t.Fatal(err)
	}
	res.decode(c.t, &out)
	return out.Feed
}

// messages returns the next n events of id, all messages.
func (c *wsClient) messages(id string, n int) []feedEvent {
	c.t.Helper()
	out := make([]feedEvent, 0, n)
	for range n {
		ev := c.event(id)
		if ev.Typename != "Message" {
			c.t.Fatalf("want a Message, got %+v", ev)
		}
		out = append(out, ev)
	}
	return out
}

// errorCode waits for operation id to fail and returns extensions.code.
func (c *wsClient) errorCode(id string) string {
	c.t.Helper()
	m := c.next()
	if m.ID != id {
		c.t.Fatalf("want a message of %s, got %+v", id, m)
	}
	var errs []gqlError
	switch m.Type {
	case "next", "data":
		var res gqlResponse
		if err := json.Unmarshal(m.Payload, &res); err != nil {
			c.t.Fatal(err)
		}
		errs = res.Errors
		if end := c.next(); end.Type != "complete" || end.ID != id {
			c.t.Fatalf("want complete of %s after the error, got %+v", id, end)
		}
	case "error":
		if err := json.Unmarshal(m.Payload, &errs); err != nil {
			var one gqlError // graphql-ws sends one error object
			if err := json.Unmarshal(m.Payload, &one); err != nil {
				c.t.Fatalf("error payload %s: %v", m.Payload, err)
			}
			errs = []gqlError{one}
		}
	default:
		c.t.Fatalf("want an error of %s, got %+v", id, m)
	}
	if len(errs) != 1 || errs[0].Extensions.Code == "" {
		c.t.Fatalf("want one error with a code, got %+v", errs)
	}
	return errs[0].Extensions.Code
}

// quiet asserts that nothing arrives for a moment (used only after the
// expected messages, to catch duplicates).
func (c *wsClient) quiet(d time.Duration) {
	c.t.Helper()
	select {
	case m := <-c.msgs:
		c.t.Fatalf("unexpected message %+v", m)
	case <-time.After(d):
	}
}

// waitClosed waits until the server closes the connection.
func (c *wsClient) waitClosed() error {
	c.t.Helper()
	select {
	case <-c.done:
		return c.err
	case <-time.After(waitTimeout):
		c.t.Fatalf("connection still open after %v", waitTimeout)
		return nil
	}
}

func ids(evs []feedEvent) string {
	var s []string
	for _, ev := range evs {
		s = append(s, ev.Channel+"/"+ev.ID)
	}
	return strings.Join(s, " ")
}

var errTimeout = errors.New("timeout")

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, errTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// shutdownServer shuts ts down as pushgate's main does: the base context
// cancelled with ErrShutdown (WebSocket streams, held polls), then
// http.Server.Shutdown (SSE streams, which outlive their requests).
func shutdownServer(t *testing.T, ts *httptest.Server, cancelBase context.CancelCauseFunc) {
	t.Helper()
	cancelBase(server.ErrShutdown)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := ts.Config.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}
