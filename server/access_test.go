package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/server/access"
)

// Tests of per-namespace rules, API key scopes, token publishing and
// issueToken, over real HTTP against the real handler. Every refused
// request is followed by a check that history is unchanged.

const ordersKey = "orders-service-secret"

// accessConfig: the test key (every channel), orders-service (orders:*
// only), and namespaces chat (token holders send, 100-byte messages, 3
// retained), news (anonymous reading) and private (no anonymous reading
// even with AllowAnonymous).
func accessConfig() server.Config {
	cfg := testConfig()
	cfg.APIKeys = append(cfg.APIKeys, access.APIKey{Name: "orders-service", Secret: ordersKey, Channels: []string{"orders:*"}})
	cfg.MaxMessageSize = 1000
	cfg.Namespaces = access.Namespaces{Named: map[string]access.Namespace{
		"chat":    {TokenPublish: true, MaxMessageSize: 100, HistorySize: 3},
		"news":    {AnonymousRead: true},
		"private": {},
	}}
	return cfg
}

// accessBroker is a memory broker with cfg's retention per namespace.
func accessBroker(t *testing.T, cfg server.Config) pubsub.Broker {
	return memoryBroker(t, pubsub.Options{Retention: cfg.Namespaces.Retention})
}

// publishToken mints a token with read and publish patterns.
func publishToken(t *testing.T, sub string, channels, publish []string) string {
	t.Helper()
	claims := access.Claims{
		Channels: channels,
		Publish:  publish,
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

func sendVars(channel string, data any) map[string]any {
	return map[string]any{"in": map[string]any{"channel": channel, "data": data}}
}

func broadcastVars(channels []string, data any) map[string]any {
	return map[string]any{"in": map[string]any{"channels": channels, "data": data}}
}

// refused checks that res failed with code and a message containing each
// of want.
func refused(t *testing.T, res gqlResponse, code string, want ...string) {
	t.Helper()
	if got := res.code(t); got != code {
		t.Fatalf("code %s, want %s (%s)", got, code, res.Errors[0].Message)
	}
	for _, w := range want {
		if !strings.Contains(res.Errors[0].Message, w) {
			t.Fatalf("message %q does not mention %q", res.Errors[0].Message, w)
		}
	}
}

// unchanged checks the ids of each channel's history.
func (e *env) unchanged(t *testing.T, want map[string][]string) {
	t.Helper()
	for ch, ids := range want {
		if got := e.ids(t, ch); !slices.Equal(got, ids) {
			t.Fatalf("history of %s changed: %v, want %v", ch, got, ids)
		}
	}
}

// TestAPIKeyScopes: a key sends only to the channels of its patterns; a
// send or broadcast with any channel outside them appends nothing.
func TestAPIKeyScopes(t *testing.T) {
	cfg := accessConfig()
	e := startEnv(t, cfg, accessBroker(t, cfg))

	var sent struct {
		Send struct{ Message message } `json:"send"`
	}
	e.do(t, ordersKey, sendMutation, sendVars("orders:1", "paid")).decode(t, &sent)
	if sent.Send.Message.ID != "1" {
		t.Fatalf("send to orders:1: %+v", sent)
	}
	e.send(t, "news:1", "hello") // the unscoped key sends anywhere
	before := map[string][]string{"orders:1": {"1"}, "orders:2": {}, "news:1": {"1"}, "news:2": {}}

	for _, tt := range []struct {
		name  string
		query string
		vars  map[string]any
	}{
		{"send outside", sendMutation, sendVars("news:1", 1)},
		{"send to a look-alike", sendMutation, sendVars("orders", 1)},
		{"broadcast with one channel outside", broadcastMutation, broadcastVars([]string{"orders:2", "news:2"}, 1)},
		{"broadcast outside first", broadcastMutation, broadcastVars([]string{"news:2", "orders:1"}, 1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			refused(t, e.do(t, ordersKey, tt.query, tt.vars), "FORBIDDEN", `API key "orders-service" may send only to orders:*`)
			e.unchanged(t, before)
		})
	}

	var out struct {
		Broadcast struct{ Messages []message } `json:"broadcast"`
	}
	e.do(t, ordersKey, broadcastMutation, broadcastVars([]string{"orders:1", "orders:2"}, 2)).decode(t, &out)
	if len(out.Broadcast.Messages) != 2 {
		t.Fatalf("broadcast inside the key's patterns: %+v", out)
	}
	e.unchanged(t, map[string][]string{"orders:1": {"1", "2"}, "orders:2": {"1"}})
}

// TestTokenPublish: a token holder sends to the channels of its publish
// claim only where the namespace has TokenPublish; every refusal says
// which rule refused.
func TestTokenPublish(t *testing.T) {
	cfg := accessConfig()
	e := startEnv(t, cfg, accessBroker(t, cfg))
	alice := publishToken(t, "alice", []string{"chat:*"}, []string{"chat:room1", "news:*", "other"})
	reader := publishToken(t, "bob", []string{"chat:*"}, nil)

	var sent struct {
		Send struct{ Message message } `json:"send"`
	}
	e.do(t, alice, sendMutation, sendVars("chat:room1", "hi")).decode(t, &sent)
	if sent.Send.Message.Channel != "chat:room1" || sent.Send.Message.ID != "1" {
		t.Fatalf("token send: %+v", sent)
	}
	before := map[string][]string{"chat:room1": {"1"}, "chat:room2": {}, "news:1": {}, "other": {}}

	for _, tt := range []struct {
		name, cred, query string
		vars              map[string]any
		want              []string
	}{
		{"namespace without token_publish", alice, sendMutation, sendVars("news:1", 1),
			[]string{`namespace "news"`, "token_publish is off"}},
		{"default namespace", alice, sendMutation, sendVars("other", 1),
			[]string{"the default namespace", "token_publish is off"}},
		{"outside the publish claim", alice, sendMutation, sendVars("chat:room2", 1),
			[]string{`"chat:room2"`, "publish claim"}},
		{"no publish claim", reader, sendMutation, sendVars("chat:room1", 1), []string{"publish claim"}},
		{"broadcast with one channel refused", alice, broadcastMutation, broadcastVars([]string{"chat:room1", "news:1"}, 1),
			[]string{"token_publish is off"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			refused(t, e.do(t, tt.cred, tt.query, tt.vars), "FORBIDDEN", tt.want...)
			e.unchanged(t, before)
		})
	}
}

// TestAnonymousReadPerNamespace: anonymous reading follows the channel's
// namespace; AllowAnonymous opens the default namespace only, and user
// channels never.
func TestAnonymousReadPerNamespace(t *testing.T) {
	history := `query($ch: String!) { history(channel: $ch) { nodes { id } } }`
	for _, tt := range []struct {
		name      string
		anonymous bool
		allowed   []string
		refused   map[string]string // channel -> code
	}{
		{"without AllowAnonymous", false, []string{"news:1"},
			map[string]string{"chat:1": "UNAUTHENTICATED", "private:1": "UNAUTHENTICATED", "plain": "UNAUTHENTICATED", "user:bob": "UNAUTHENTICATED"}},
		{"with AllowAnonymous", true, []string{"news:1", "plain", "orders:1"},
			map[string]string{"chat:1": "UNAUTHENTICATED", "private:1": "UNAUTHENTICATED", "user:bob": "FORBIDDEN"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := accessConfig()
			cfg.AllowAnonymous = tt.anonymous
			e := startEnv(t, cfg, accessBroker(t, cfg))
			for _, ch := range tt.allowed {
				e.send(t, ch, "x")
				var out struct {
					History struct{ Nodes []message } `json:"history"`
				}
				e.do(t, "", history, map[string]any{"ch": ch}).decode(t, &out)
				if len(out.History.Nodes) != 1 {
					t.Fatalf("anonymous history of %s: %+v", ch, out)
				}
				// The SSE feed follows the same rule.
				ctx, cancel := context.WithCancel(context.Background())
				_, res := openSSE(t, ctx, eventsURL(e.url, []string{ch}, nil), nil)
				cancel()
				res.Body.Close()
			}
			for ch, code := range tt.refused {
				refused(t, e.do(t, "", history, map[string]any{"ch": ch}), code, ch)
				if status, got := httpError(t, eventsURL(e.url, []string{ch}, nil)); got != code || status != server.HTTPStatus(code) {
					t.Fatalf("anonymous /events of %s: %d %s, want %s", ch, status, got, code)
				}
			}
			// One refused channel refuses the whole feed.
			if _, got := httpError(t, eventsURL(e.url, []string{tt.allowed[0], "private:1"}, nil)); got != "UNAUTHENTICATED" {
				t.Fatalf("anonymous feed of %s and private:1: %s", tt.allowed[0], got)
			}
		})
	}
}

// httpError does a GET that must fail and returns its status and
// error.code.
func httpError(t *testing.T, u string) (int, string) {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || body.Error.Code == "" {
		t.Fatalf("GET %s: %s, not an error body (%v)", u, res.Status, err)
	}
	return res.StatusCode, body.Error.Code
}

// TestNamespaceRetention: a namespace's history size bounds its channels
// only.
func TestNamespaceRetention(t *testing.T) {
	cfg := accessConfig()
	e := startEnv(t, cfg, accessBroker(t, cfg))
	for i := range 5 {
		e.send(t, "chat:1", i)
		e.send(t, "news:1", i)
	}
	e.unchanged(t, map[string][]string{"chat:1": {"3", "4", "5"}, "news:1": {"1", "2", "3", "4", "5"}})
}

// TestNamespaceMessageSize: the bound of a message is its namespace's, and
// is named in the error.
func TestNamespaceMessageSize(t *testing.T) {
	cfg := accessConfig()
	e := startEnv(t, cfg, accessBroker(t, cfg))
	big := strings.Repeat("x", 200) // 202 bytes of JSON: over chat's 100, under the default 1000
	e.send(t, "news:1", big)
	e.send(t, "chat:1", "small")
	before := map[string][]string{"news:1": {"1"}, "news:2": {}, "chat:1": {"1"}}
	for _, tt := range []struct {
		name  string
		query string
		vars  map[string]any
		want  []string
	}{
		{"over the namespace's bound", sendMutation, sendVars("chat:1", big), []string{"202 bytes", "100 bytes", `"chat:1"`}},
		{"over the default bound", sendMutation, sendVars("news:2", strings.Repeat("x", 1000)), []string{"1000 bytes"}},
		{"broadcast with one channel over", broadcastMutation, broadcastVars([]string{"news:2", "chat:1"}, big), []string{"100 bytes"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			refused(t, e.do(t, testKey, tt.query, tt.vars), "PAYLOAD_TOO_LARGE", tt.want...)
			e.unchanged(t, before)
		})
	}
}

const issueTokenMutation = `mutation($in: IssueTokenInput!) { issueToken(input: $in) { token expiresAt } }`

type issued struct {
	IssueToken struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expiresAt"`
	} `json:"issueToken"`
}

// TestIssueToken: an API key mints tokens for patterns its own cover; the
// token reads what it grants and nothing else, and sends where its publish
// claim and the namespace allow.
func TestIssueToken(t *testing.T) {
	cfg := accessConfig()
	e := startEnv(t, cfg, accessBroker(t, cfg))
	e.send(t, "news:1", "before")
	before := map[string][]string{"news:1": {"1"}, "orders:42": {}, "chat:1": {}}

	in := func(kv ...any) map[string]any {
		m := map[string]any{"subject": "alice", "channels": []string{"orders:42"}}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return map[string]any{"in": m}
	}
	t.Run("refused", func(t *testing.T) {
		for _, tt := range []struct {
			name, cred string
			vars       map[string]any
			code       string
			want       string
		}{
			{"key pattern does not cover", ordersKey, in("channels", []string{"orders:42", "news:*"}), "FORBIDDEN", `"news:*" is not covered`},
			{"wider than the key", ordersKey, in("channels", []string{"orders*"}), "FORBIDDEN", "not covered"},
			{"everything", ordersKey, in("channels", []string{"*"}), "FORBIDDEN", "not covered"},
			{"publish not covered", ordersKey, in("publish", []string{"chat:*"}), "FORBIDDEN", "publish"},
			{"ttl 0", testKey, in("ttlSeconds", 0), "BAD_USER_INPUT", "ttlSeconds"},
			{"ttl over a day", testKey, in("ttlSeconds", 86401), "BAD_USER_INPUT", "86400"},
			{"no subject", testKey, in("subject", ""), "BAD_USER_INPUT", "subject"},
			{"long subject", testKey, in("subject", strings.Repeat("a", 129)), "BAD_USER_INPUT", "subject"},
			{"no channels", testKey, in("channels", []string{}), "BAD_USER_INPUT", "channels"},
			{"33 patterns", testKey, in("channels", slices.Repeat([]string{"a"}, 33)), "BAD_USER_INPUT", "at most 32"},
			{"bad pattern", testKey, in("channels", []string{"news 1"}), "BAD_USER_INPUT", `"news 1"`},
			{"no credentials", "", in(), "UNAUTHENTICATED", "API key"},
			{"subscriber token", publishToken(t, "alice", []string{"*"}, []string{"*"}), in(), "FORBIDDEN", "API key"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				refused(t, e.do(t, tt.cred, issueTokenMutation, tt.vars), tt.code, tt.want)
			})
		}
		e.unchanged(t, before)
	})

	var out issued
	start := time.Now()
	e.do(t, ordersKey, issueTokenMutation, in("channels", []string{"orders:42", "orders:4*"}, "ttlSeconds", 600)).decode(t, &out)
	tok := out.IssueToken.Token
	if exp := out.IssueToken.ExpiresAt; exp.Before(start.Add(599*time.Second)) || exp.After(time.Now().Add(601*time.Second)) {
		t.Fatalf("expiresAt %v, want about 600 s from %v", exp, start)
	}

	// The minted token reads its channel over SSE...
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, res := openSSE(t, ctx, eventsURL(e.url, []string{"orders:42"}, url.Values{"token": {tok}}), nil)
	defer res.Body.Close()
	sent := e.send(t, "orders:42", "shipped")
	var got streamMessage
	if err := json.Unmarshal([]byte(nextSSE(t, events).data), &got); err != nil || got.ID != sent.ID || got.Channel != "orders:42" {
		t.Fatalf("SSE with the minted token: %+v (%v)", got, err)
	}
	// ...and no other channel, on any transport.
	if status, code := httpError(t, eventsURL(e.url, []string{"news:1"}, url.Values{"token": {tok}})); code != "FORBIDDEN" || status != http.StatusForbidden {
		t.Fatalf("/events of news:1 with the minted token: %d %s", status, code)
	}
	refused(t, e.do(t, tok, `query { history(channel: "news:1") { nodes { id } } }`, nil), "FORBIDDEN", "news:1")
	c := e.dialWS(t, transportWS, "", nil)
	c.init(map[string]any{"token": tok})
	c.subscribe("1", []string{"news:1"}, "")
	if code := c.errorCode("1"); code != "FORBIDDEN" {
		t.Fatalf("feed of news:1 with the minted token: %s", code)
	}
	// It cannot send: orders has no token publishing.
	refused(t, e.do(t, tok, sendMutation, sendVars("orders:42", 1)), "FORBIDDEN", "token_publish is off")

	// A token with publish sends where the namespace allows it.
	e.do(t, testKey, issueTokenMutation, in("subject", "bob", "channels", []string{"chat:*"}, "publish", []string{"chat:1"})).decode(t, &out)
	var sentByToken struct {
		Send struct{ Message message } `json:"send"`
	}
	e.do(t, out.IssueToken.Token, sendMutation, sendVars("chat:1", "hi")).decode(t, &sentByToken)
	e.unchanged(t, map[string][]string{"news:1": {"1"}, "orders:42": {"1"}, "chat:1": {"1"}})
}

// TestIssueTokenWithoutSecret: without a JWT secret nothing can be signed.
func TestIssueTokenWithoutSecret(t *testing.T) {
	cfg := accessConfig()
	cfg.JWTSecret = ""
	e := startEnv(t, cfg, accessBroker(t, cfg))
	res := e.do(t, testKey, issueTokenMutation, map[string]any{"in": map[string]any{"subject": "alice", "channels": []string{"news:1"}}})
	refused(t, res, "UNAVAILABLE", "JWT secret")
}

// TestIssueTokenVerifies: a minted token carries the iss and aud the
// verifier requires, so it reads where it grants.
func TestIssueTokenVerifies(t *testing.T) {
	cfg := accessConfig()
	cfg.Tokens = access.TokenConfig{Issuer: "https://auth.example.com/", Audience: "pushgate"}
	e := startEnv(t, cfg, accessBroker(t, cfg))
	e.send(t, "orders:1", "x")
	var out issued
	e.do(t, ordersKey, issueTokenMutation, map[string]any{"in": map[string]any{"subject": "alice", "channels": []string{"orders:1"}}}).decode(t, &out)
	if got := e.do(t, out.IssueToken.Token, `query { history(channel: "orders:1") { nodes { id } } }`, nil); len(got.Errors) > 0 {
		t.Fatalf("reading with the minted token: %+v", got.Errors)
	}
	// A token without them is refused: the check above is not vacuous.
	refused(t, e.do(t, publishToken(t, "alice", []string{"orders:1"}, nil), `query { history(channel: "orders:1") { nodes { id } } }`, nil),
		"UNAUTHENTICATED")
}
