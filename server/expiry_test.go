package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/server/access"
)

// shortLife is how long a shortToken lives, give or take the second exp
// is rounded down to. Time is the behaviour here (a stream ends at exp):
// at least 2 s leaves a loaded machine under -race ample time to connect,
// subscribe and deliver before it, and the tests wait for the expiry
// itself with waitTimeout, not for a time.
const shortLife = 3 * time.Second

// shortToken mints a token for channels that expires in shortLife (exp has
// a precision of one second), and returns its exp.
func shortToken(t *testing.T, channels []string) (string, time.Time) {
	t.Helper()
	exp := time.Now().Add(shortLife).Truncate(time.Second)
	tok := mint(t, jwt.SigningMethodHS256, []byte(testJWTSecret), "", access.Claims{
		Channels:         channels,
		RegisteredClaims: jwt.RegisteredClaims{Subject: "u1", ExpiresAt: jwt.NewNumericDate(exp)},
	})
	return tok, exp
}

// expiryConfig is testConfig without leeway, so that a stream ends at exp.
func expiryConfig() server.Config {
	cfg := testConfig()
	cfg.Tokens.Leeway = -1
	return cfg
}

// TestTokenExpiryWebSocket: when the token of a live connection expires,
// the connection is closed with 4403 "token expired" (after a
// connection_error on the legacy protocol) and no complete; messages sent
// meanwhile reach the client when it reconnects with a fresh token and its
// cursor, in order, without duplicates.
func TestTokenExpiryWebSocket(t *testing.T) {
	t.Parallel()
	e := startEnv(t, expiryConfig(), memoryBroker(t, pubsub.Options{}))
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			ch := "exp:ws-" + proto
			tok, exp := shortToken(t, []string{"exp:*"})
			c := e.dialWS(t, proto, "", nil)
			c.init(map[string]any{"token": tok})
			c.subscribe("1", []string{ch}, e.cursor(t, ch))
			e.send(t, ch, 1)
			e.send(t, ch, 2)
			got := c.messages("1", 2)
			last := got[1].Cursor

			err := c.waitClosed()
			closed := time.Now()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != access.CloseTokenExpired || ce.Text != "token expired" {
				t.Fatalf("closed with %v, want 4403 token expired", err)
			}
			if closed.Before(exp) {
				t.Fatalf("closed at %v, before exp %v", closed, exp)
			}
			if proto == legacyWS {
				m := c.next()
				if m.Type != "connection_error" || !strings.Contains(string(m.Payload), "the token has expired") {
					t.Fatalf("want connection_error before the close, got %+v", m)
				}
			}
			select {
			case m := <-c.msgs:
				t.Fatalf("unexpected %+v before the close (a complete would end the client's subscription)", m)
			default:
			}

			// Sent while the client is away.
			var want []string
			for i := 3; i <= 5; i++ {
				want = append(want, e.send(t, ch, i).ID)
			}
			fresh := token(t, "u1", []string{"exp:*"}, time.Hour)
			c2 := e.dialWS(t, proto, "", nil)
			c2.init(map[string]any{"token": fresh})
			c2.subscribe("1", []string{ch}, last)
			if got := ids(c2.messages("1", 3)); got != ch+"/"+strings.Join(want, " "+ch+"/") {
				t.Fatalf("after reconnecting: %s, want %v", got, want)
			}
			c2.quiet(200 * time.Millisecond)
		})
	}
}

// TestAPIKeyConnectionDoesNotExpire: a connection with an API key outlives
// a short token's life.
func TestAPIKeyConnectionDoesNotExpire(t *testing.T) {
	t.Parallel()
	e := startEnv(t, expiryConfig(), memoryBroker(t, pubsub.Options{}))
	_, exp := shortToken(t, nil)
	c := e.dialWS(t, transportWS, "", nil)
	c.init(map[string]any{"token": testKey})
	c.subscribe("1", []string{"exp:key"}, e.cursor(t, "exp:key"))
	eventually(t, "a token minted now would have expired", func() bool { return time.Now().After(exp.Add(500 * time.Millisecond)) })
	sent := e.send(t, "exp:key", "still here")
	if ev := c.event("1"); ev.ID != sent.ID {
		t.Fatalf("got %+v", ev)
	}
}

// TestTokenExpirySSE: when the token of an SSE stream expires, the stream
// ends with event: expired, whose data names the cursor; with a fresh
// token and that cursor the client gets everything sent meanwhile.
func TestTokenExpirySSE(t *testing.T) {
	t.Parallel()
	e := startEnv(t, expiryConfig(), memoryBroker(t, pubsub.Options{}))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	const ch = "exp:sse"
	tok, exp := shortToken(t, []string{"exp:*"})
	events, _ := openSSE(t, ctx, eventsURL(e.url, []string{ch}, url.Values{"token": {tok}, "cursor": {e.cursor(t, ch)}}), nil)
	e.send(t, ch, 1)
	e.send(t, ch, 2)
	var last string
	for range 2 {
		ev := nextSSE(t, events)
		if ev.event != "" {
			t.Fatalf("want a message, got %+v", ev)
		}
		last = ev.id
	}

	ev := nextSSE(t, events)
	if time.Now().Before(exp) {
		t.Fatalf("expired before exp %v", exp)
	}
	var expired struct{ Reason, Cursor string }
	if ev.event != "expired" || json.Unmarshal([]byte(ev.data), &expired) != nil ||
		expired.Reason != "token expired" || expired.Cursor != last {
		t.Fatalf("got %+v, want event: expired with cursor %s", ev, last)
	}
	select {
	case ev, ok := <-events:
		if ok {
			t.Fatalf("event after expired: %+v", ev)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the stream did not end")
	}

	var want []string
	for i := 3; i <= 5; i++ {
		want = append(want, e.send(t, ch, i).ID)
	}
	fresh := token(t, "u1", []string{"exp:*"}, time.Hour)
	events, _ = openSSE(t, ctx, eventsURL(e.url, []string{ch}, url.Values{"token": {fresh}, "cursor": {expired.Cursor}}), nil)
	var got []string
	for range 3 {
		got = append(got, decodeStream(t, nextSSE(t, events).data).ID)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("after reconnecting: %v, want %v", got, want)
	}
	select {
	case ev := <-events:
		t.Fatalf("unexpected %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestTokenExpiryGraphQLSSE: a graphql-sse subscription whose token expires
// gets a last result with an UNAUTHENTICATED error, then completes.
func TestTokenExpiryGraphQLSSE(t *testing.T) {
	t.Parallel()
	e := startEnv(t, expiryConfig(), memoryBroker(t, pubsub.Options{}))
	const ch = "exp:gsse"
	tok, _ := shortToken(t, []string{"exp:*"})
	body, _ := json.Marshal(map[string]any{"query": feedQuery, "variables": map[string]any{"channels": []string{ch}, "cursor": e.cursor(t, ch)}})
	req, _ := http.NewRequest(http.MethodPost, e.url+"/graphql", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	e.send(t, ch, 1)

	type block struct{ event, data string }
	blocks := make(chan block, 16)
	go func() {
		defer close(blocks)
		var b block
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if b.event != "" {
					blocks <- b
				}
				b = block{}
			case strings.HasPrefix(line, "event: "):
				b.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				b.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	next := func() block {
		t.Helper()
		select {
		case b, ok := <-blocks:
			if !ok {
				t.Fatal("the stream ended")
			}
			return b
		case <-time.After(waitTimeout):
			t.Fatal("no event in time")
		}
		return block{}
	}
	if b := next(); b.event != "next" || !strings.Contains(b.data, `"Message"`) {
		t.Fatalf("want the message, got %+v", b)
	}
	b := next()
	var result gqlResponse
	if b.event != "next" || json.Unmarshal([]byte(b.data), &result) != nil || result.code(t) != "UNAUTHENTICATED" {
		t.Fatalf("want a result with UNAUTHENTICATED, got %+v", b)
	}
	if b := next(); b.event != "complete" {
		t.Fatalf("want complete, got %+v", b)
	}
}

// TestPollOutlivesToken: a long-poll whose token expires during its hold
// answers normally.
func TestPollOutlivesToken(t *testing.T) {
	t.Parallel()
	e := startEnv(t, expiryConfig(), memoryBroker(t, pubsub.Options{}))
	tok, exp := shortToken(t, []string{"exp:*"})
	cursor := e.cursor(t, "exp:poll")
	// Holds longer than the token lives.
	hold := strconv.Itoa(int(shortLife/time.Second) + 2)
	res := poll(t, e.url, url.Values{"channel": {"exp:poll"}, "cursor": {cursor}, "token": {tok}, "timeout": {hold}}, waitTimeout)
	if time.Now().Before(exp) || len(res.Messages) != 0 || res.Cursor != cursor {
		t.Fatalf("got %+v at %v (exp %v)", res, time.Now(), exp)
	}
}
