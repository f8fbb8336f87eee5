package server_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/limits"
)

// The security suite of issue 4: hostile or out-of-scope requests, each on
// every transport that could carry it, each followed by a check that
// history is unchanged. Every test first shows that the same request with
// a legitimate credential does append (or deliver), so that the
// "unchanged" checks can fail.

// operation runs a GraphQL operation (a mutation, usually) as operation id
// over the WebSocket.
func (c *wsClient) operation(id, query string, vars map[string]any) {
	raw, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	typ := "subscribe"
	if c.proto == legacyWS {
		typ = "start"
	}
	c.write(wsMsg{Type: typ, ID: id, Payload: raw})
}

// succeeded waits for the result of operation id: data without errors,
// then complete.
func (c *wsClient) succeeded(id string) {
	c.t.Helper()
	m := c.next()
	var res gqlResponse
	if (m.Type != "next" && m.Type != "data") || m.ID != id || json.Unmarshal(m.Payload, &res) != nil || len(res.Errors) > 0 {
		c.t.Fatalf("want a result of %s, got %s %s %s", id, m.Type, m.ID, m.Payload)
	}
	if end := c.next(); end.Type != "complete" || end.ID != id {
		c.t.Fatalf("want complete of %s, got %+v", id, end)
	}
}

// postSSE posts a graphql-sse operation that must end by itself (a
// refusal) and returns its status and body; a stream still open after
// waitTimeout fails the test.
func (e *env) postSSE(t *testing.T, cred, query string, vars map[string]any) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/graphql", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+cred)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("graphql-sse stream did not end (accepted?): %v; got %s", err, raw)
	}
	return res.StatusCode, string(raw)
}

// securityConfig: the test key (every channel), orders-service (orders:*
// only); namespace chat lets token holders send (no retention bound, so
// that every append shows in history).
func securityConfig() server.Config {
	cfg := accessConfig()
	cfg.Namespaces = access.Namespaces{Named: map[string]access.Namespace{
		"chat": {TokenPublish: true},
		"news": {AnonymousRead: true},
	}}
	return cfg
}

// TestSecurityHostileTokensChangeNothing: expired, not-yet-valid, wrongly
// signed, alg none, HS256 keyed with the RSA public key, wrong aud and
// wrong iss tokens, all claiming to publish to chat:*, are refused with
// UNAUTHENTICATED and the reason on send, broadcast, the WebSocket (both
// protocols), history, SSE and long-poll; nothing is appended.
func TestSecurityHostileTokensChangeNothing(t *testing.T) {
	keys := startJWKS(t, rsaJWK("rsa-a", &rsaA.PublicKey), ecJWK("ec-a", &ecA.PublicKey))
	full := securityConfig()
	full.Tokens = access.TokenConfig{JWKSURL: keys.url, Issuer: testIssuer, Audience: testAudience}
	jwksOnly := full
	jwksOnly.JWTSecret = "" // HS256 refused: only the JWKS keys verify
	broker := accessBroker(t, full)
	envs := map[string]*env{"secret+jwks": startEnv(t, full, broker), "jwks": startEnv(t, jwksOnly, broker)}
	e := envs["secret+jwks"]

	e.send(t, "news:1", "seed")
	e.send(t, "chat:room", "seed")
	e.send(t, "user:bob", "seed")

	secret := []byte(testJWTSecret)
	in := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(time.Now().Add(d)) }
	publisher := func(edit func(c *access.Claims)) access.Claims {
		return claims(func(c *access.Claims) {
			c.Publish = []string{"chat:*"}
			if edit != nil {
				edit(c)
			}
		})
	}

	// Legitimate tokens with the same claims send: the path is open, so the
	// checks below would see a forged append.
	for i, good := range []struct{ env, token string }{
		{"secret+jwks", mint(t, jwt.SigningMethodHS256, secret, "", publisher(nil))},
		{"jwks", mint(t, jwt.SigningMethodRS256, rsaA, "rsa-a", publisher(nil))},
		{"jwks", mint(t, jwt.SigningMethodES256, ecA, "ec-a", publisher(nil))},
	} {
		envs[good.env].do(t, good.token, sendMutation, sendVars("chat:room", i)).decode(t, &struct{}{})
	}
	before := map[string][]string{
		"chat:room": {"1", "2", "3", "4"}, "chat:other": {}, "news:1": {"1"}, "user:bob": {"1"},
	}
	e.unchanged(t, before)

	pubDER, err := x509.MarshalPKIXPublicKey(&rsaA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	noneClaims := fmt.Sprintf(`{"sub":"u1","channels":["*"],"publish":["chat:*"],"iss":%q,"aud":%q,"exp":%d}`,
		testIssuer, testAudience, time.Now().Add(time.Hour).Unix())

	for _, tt := range []struct {
		name, env, token, want string
	}{
		{"expired", "secret+jwks",
			mint(t, jwt.SigningMethodHS256, secret, "", publisher(func(c *access.Claims) { c.ExpiresAt = in(-time.Minute) })),
			"the token has expired"},
		{"expired RS256", "jwks",
			mint(t, jwt.SigningMethodRS256, rsaA, "rsa-a", publisher(func(c *access.Claims) { c.ExpiresAt = in(-time.Hour) })),
			"the token has expired"},
		{"not yet valid", "secret+jwks",
			mint(t, jwt.SigningMethodHS256, secret, "", publisher(func(c *access.Claims) { c.NotBefore = in(2 * time.Minute) })),
			"not valid yet (nbf"},
		{"signed with another secret", "secret+jwks",
			mint(t, jwt.SigningMethodHS256, []byte("not-the-secret"), "", publisher(nil)), "bad signature"},
		{"signed with another RSA key under a known kid", "jwks",
			mint(t, jwt.SigningMethodRS256, rsaB, "rsa-a", publisher(nil)), "bad signature"},
		{"alg none", "secret+jwks", unsigned(`{"alg":"none","typ":"JWT"}`, noneClaims, ""), "algorithm none is not allowed"},
		{"alg none, JWKS only", "jwks", unsigned(`{"alg":"none","typ":"JWT"}`, noneClaims, ""), "algorithm none is not allowed"},
		{"HS256 keyed with the RSA public key PEM", "jwks",
			mint(t, jwt.SigningMethodHS256, pubPEM, "rsa-a", publisher(nil)), "algorithm HS256 is not allowed"},
		{"HS256 keyed with the RSA public key DER", "jwks",
			mint(t, jwt.SigningMethodHS256, pubDER, "rsa-a", publisher(nil)), "algorithm HS256 is not allowed"},
		{"HS256 keyed with the RSA public key, a secret configured", "secret+jwks",
			mint(t, jwt.SigningMethodHS256, pubPEM, "rsa-a", publisher(nil)), "bad signature"},
		{"wrong aud", "secret+jwks",
			mint(t, jwt.SigningMethodHS256, secret, "", publisher(func(c *access.Claims) { c.Audience = jwt.ClaimStrings{"other"} })),
			"wrong audience"},
		{"wrong aud RS256", "jwks",
			mint(t, jwt.SigningMethodRS256, rsaA, "rsa-a", publisher(func(c *access.Claims) { c.Audience = nil })),
			"wrong audience"},
		{"wrong iss", "secret+jwks",
			mint(t, jwt.SigningMethodHS256, secret, "", publisher(func(c *access.Claims) { c.Issuer = "https://evil.test" })),
			"wrong issuer"},
		{"wrong iss ES256", "jwks",
			mint(t, jwt.SigningMethodES256, ecA, "ec-a", publisher(func(c *access.Claims) { c.Issuer = "" })),
			"wrong issuer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			x := envs[tt.env]
			refused(t, x.do(t, tt.token, sendMutation, sendVars("chat:room", "forged")), "UNAUTHENTICATED", tt.want)
			refused(t, x.doURL(t, x.url+"/graphql?token="+url.QueryEscape(tt.token), "", sendMutation, sendVars("chat:room", "forged")),
				"UNAUTHENTICATED", tt.want)
			refused(t, x.do(t, tt.token, broadcastMutation, broadcastVars([]string{"chat:room", "chat:other"}, "forged")),
				"UNAUTHENTICATED", tt.want)
			refused(t, x.do(t, tt.token, `query { history(channel: "news:1") { nodes { id } } }`, nil), "UNAUTHENTICATED", tt.want)
			for _, proto := range protocols {
				c := x.dialWS(t, proto, "", nil)
				c.init(map[string]any{"token": tt.token})
				c.operation("send", sendMutation, sendVars("chat:room", "forged"))
				if code := c.errorCode("send"); code != "UNAUTHENTICATED" {
					t.Fatalf("%s: send: %s", proto, code)
				}
				c.subscribe("feed", []string{"chat:room"}, "")
				if code := c.errorCode("feed"); code != "UNAUTHENTICATED" {
					t.Fatalf("%s: feed: %s", proto, code)
				}
			}
			for _, path := range []string{"/events?", "/poll?timeout=0&"} {
				u := x.url + path + url.Values{"channel": {"chat:room"}, "token": {tt.token}}.Encode()
				if status, code := httpError(t, u); status != http.StatusUnauthorized || code != "UNAUTHENTICATED" {
					t.Fatalf("%s: %d %s", path, status, code)
				}
			}
			e.unchanged(t, before)
		})
	}
}

// TestSecurityUserChannelOfAnother: a token for alice (channels and
// publish user:*) is refused user:bob with FORBIDDEN on every way of
// reading, a feed naming both is refused whole, and she cannot send there;
// she does read user:alice.
func TestSecurityUserChannelOfAnother(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	e.send(t, "user:alice", "for alice")
	e.send(t, "user:bob", "for bob")
	before := map[string][]string{"user:alice": {"1"}, "user:bob": {"1"}}
	alice := publishToken(t, "alice", []string{"user:*"}, []string{"user:*"})
	aliceNamingBob := publishToken(t, "alice", []string{"user:bob"}, nil)
	history := `query($ch: String!) { history(channel: $ch) { nodes { id } } }`
	// From the start: an accepted feed would deliver "for bob" at once.
	cursor := startCursorOf("user:bob")

	// Her own channel is readable: the refusals below are about bob.
	var own struct {
		History struct{ Nodes []message } `json:"history"`
	}
	e.do(t, alice, history, map[string]any{"ch": "user:alice"}).decode(t, &own)
	if len(own.History.Nodes) != 1 {
		t.Fatalf("alice's own history: %+v", own)
	}

	for _, tok := range []string{alice, aliceNamingBob} {
		refused(t, e.do(t, tok, history, map[string]any{"ch": "user:bob"}), "FORBIDDEN", "user:bob")
		refused(t, e.do(t, tok, `{ channel(name: "user:bob") { cursor } }`, nil), "FORBIDDEN", "user:bob")
		for _, u := range []string{
			eventsURL(e.url, []string{"user:bob"}, url.Values{"token": {tok}}),
			eventsURL(e.url, []string{"user:alice", "user:bob"}, url.Values{"token": {tok}}),
			e.url + "/poll?" + url.Values{"channel": {"user:bob"}, "timeout": {"0"}, "token": {tok}}.Encode(),
		} {
			if status, code := httpError(t, u); status != http.StatusForbidden || code != "FORBIDDEN" {
				t.Fatalf("GET %s: %d %s", u, status, code)
			}
		}
		for _, proto := range protocols {
			c := e.dialWS(t, proto, "", nil)
			c.init(map[string]any{"token": tok})
			c.subscribe("bob", []string{"user:bob"}, cursor)
			if code := c.errorCode("bob"); code != "FORBIDDEN" {
				t.Fatalf("%s: feed of user:bob: %s", proto, code)
			}
			c.subscribe("both", []string{"user:alice", "user:bob"}, "")
			if code := c.errorCode("both"); code != "FORBIDDEN" {
				t.Fatalf("%s: feed of user:alice and user:bob: %s", proto, code)
			}
		}
		if status, raw := e.postSSE(t, tok, feedQuery, map[string]any{"channels": []string{"user:bob"}, "cursor": cursor}); !strings.Contains(raw, `"FORBIDDEN"`) || strings.Contains(raw, "for bob") {
			t.Fatalf("graphql-sse feed of user:bob: %d %s", status, raw)
		}
	}
	// Nor may she write there (the user namespace has no token publishing).
	refused(t, e.do(t, alice, sendMutation, sendVars("user:bob", "from alice")), "FORBIDDEN", "token_publish is off")
	e.unchanged(t, before)
}

// TestSecuritySendsOutsideScopeOverWebSocket: over the WebSocket too, a key
// sending outside its patterns and a token holder sending where the
// namespace forbids it get FORBIDDEN and append nothing.
func TestSecuritySendsOutsideScopeOverWebSocket(t *testing.T) {
	cfg := securityConfig()
	e := startEnv(t, cfg, accessBroker(t, cfg))
	e.send(t, "news:1", "seed")
	holder := publishToken(t, "alice", []string{"news:*", "chat:*"}, []string{"news:*", "chat:*"})
	before := map[string][]string{"orders:1": {}, "news:1": {"1"}, "news:2": {}, "chat:1": {}}

	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			key := e.dialWS(t, proto, "", nil)
			key.init(map[string]any{"token": ordersKey})
			key.operation("out", sendMutation, sendVars("news:1", "x"))
			if code := key.errorCode("out"); code != "FORBIDDEN" {
				t.Fatalf("key sending outside its patterns: %s", code)
			}
			key.operation("mixed", broadcastMutation, broadcastVars([]string{"orders:1", "news:2"}, "x"))
			if code := key.errorCode("mixed"); code != "FORBIDDEN" {
				t.Fatalf("key broadcasting partly outside its patterns: %s", code)
			}
			e.unchanged(t, before)

			tok := e.dialWS(t, proto, "", nil)
			tok.init(map[string]any{"token": holder})
			tok.operation("news", sendMutation, sendVars("news:1", "x"))
			if code := tok.errorCode("news"); code != "FORBIDDEN" {
				t.Fatalf("token sending where the namespace forbids it: %s", code)
			}
			e.unchanged(t, before)

			// Inside the rules, the same sockets send.
			key.operation("in", sendMutation, sendVars("orders:1", proto))
			key.succeeded("in")
			tok.operation("chat", sendMutation, sendVars("chat:1", proto))
			tok.succeeded("chat")
			before["orders:1"] = append(before["orders:1"], strconv.Itoa(len(before["orders:1"])+1))
			before["chat:1"] = append(before["chat:1"], strconv.Itoa(len(before["chat:1"])+1))
			e.unchanged(t, before)
		})
	}
}

// TestSecurityOperationLimitsOverWebSocket: a too deep or too complex
// mutation sent over the WebSocket is refused with BAD_USER_INPUT naming
// the limit before it runs; nothing is appended.
func TestSecurityOperationLimitsOverWebSocket(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.MaxQueryDepth = 2
	cfg.Limits.MaxQueryComplexity = 1000
	b := memoryBroker(t, pubsub.Options{})
	e := startEnv(t, cfg, b)
	reader := startEnv(t, testConfig(), b) // history nests deeper than 2
	var aliases strings.Builder
	aliases.WriteString("mutation {")
	for i := range 600 {
		aliases.WriteString(" a" + strconv.Itoa(i) + `: send(input: {channel: "w", data: 1}) { duplicate }`)
	}
	aliases.WriteString(" }")

	for _, proto := range protocols {
		c := e.dialWS(t, proto, "", nil)
		c.init(map[string]any{"token": testKey})
		c.operation("deep", `mutation($in: SendInput!) { send(input: $in) { message { id } } }`, sendVars("w", 1))
		if code := c.errorCode("deep"); code != "BAD_USER_INPUT" {
			t.Fatalf("%s: deep mutation: %s", proto, code)
		}
		c.operation("complex", aliases.String(), nil)
		if code := c.errorCode("complex"); code != "BAD_USER_INPUT" {
			t.Fatalf("%s: complex mutation: %s", proto, code)
		}
		reader.unchanged(t, map[string][]string{"w": {}})
	}
	// The messages name the limits (as over HTTP).
	_, raw := e.post(t, testKey, "", aliases.String(), nil)
	wantLimit(t, onlyError(t, raw), "BAD_USER_INPUT", "complexity of 1200 is over the limit of 1000")

	// Within the limits, the socket sends.
	c := e.dialWS(t, transportWS, "", nil)
	c.init(map[string]any{"token": testKey})
	c.operation("ok", `mutation($in: SendInput!) { send(input: $in) { duplicate } }`, sendVars("w", 1))
	c.succeeded("ok")
	reader.unchanged(t, map[string][]string{"w": {"1"}})
}

// TestSecurityWebSocket101stOperation: with 100 subscriptions active on a
// socket, a 101st operation that is a send is refused with RATE_LIMITED
// naming the limit and appends nothing; the 100 feeds go on, and once one
// completes the send passes.
func TestSecurityWebSocket101stOperation(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	start := e.cursor(t, "many")
	c := e.dialWS(t, transportWS, "", nil)
	c.init(map[string]any{"token": testKey})
	for i := range 100 {
		c.subscribe("s"+strconv.Itoa(i), []string{"many"}, start)
	}
	vars := map[string]any{"in": map[string]any{"channel": "many", "data": "late", "idempotencyKey": "late-1"}}
	c.operation("send", sendMutation, vars)
	m := c.next()
	var res struct{ Errors []limitError }
	if m.Type != "next" || m.ID != "send" || json.Unmarshal(m.Payload, &res) != nil || len(res.Errors) != 1 {
		t.Fatalf("want the 101st operation refused, got %s %s %s", m.Type, m.ID, m.Payload)
	}
	wantLimit(t, res.Errors[0], "RATE_LIMITED", "subscription limit of 100 active operations per WebSocket connection reached")
	if end := c.next(); end.Type != "complete" || end.ID != "send" {
		t.Fatalf("want complete of send, got %+v", end)
	}
	e.unchanged(t, map[string][]string{"many": {}})

	// Free a slot; the send then passes (the slot is given back when the
	// operation's context ends, so retry until then).
	c.write(wsMsg{Type: "complete", ID: "s0"})
	// The remaining 99 feeds get the message once each, possibly before
	// the send's own result.
	got := map[string]bool{}
	feedEvent := func(m wsMsg) bool {
		if m.Type != "next" || !strings.HasPrefix(m.ID, "s") || m.ID == "send" {
			return false
		}
		if m.ID == "s0" || got[m.ID] || !strings.Contains(string(m.Payload), `"late"`) {
			t.Fatalf("feed event %s %s", m.ID, m.Payload)
		}
		got[m.ID] = true
		return true
	}
	deadline := time.Now().Add(waitTimeout)
	for i := 0; ; i++ {
		id := "retry" + strconv.Itoa(i)
		c.operation(id, sendMutation, vars)
		var m wsMsg
		for m = c.next(); m.ID != id; m = c.next() {
			if m.Type != "complete" && !feedEvent(m) { // complete: of s0 or of an earlier retry
				t.Fatalf("unexpected %s %s %s", m.Type, m.ID, m.Payload)
			}
		}
		var out gqlResponse
		if err := json.Unmarshal(m.Payload, &out); err != nil {
			t.Fatal(err)
		}
		if len(out.Errors) == 0 {
			break
		}
		if out.code(t) != "RATE_LIMITED" || time.Now().After(deadline) {
			t.Fatalf("send after freeing a slot: %s", m.Payload)
		}
		time.Sleep(10 * time.Millisecond) // polling, bounded by deadline
	}
	for len(got) < 99 {
		if m := c.next(); m.Type != "complete" && !feedEvent(m) {
			t.Fatalf("got %s %s %s", m.Type, m.ID, m.Payload)
		}
	}
	e.unchanged(t, map[string][]string{"many": {"1"}})
}

// TestSecurityCrossOriginPage: a page on a foreign origin, holding a valid
// API key, cannot send by any route a browser offers (fetch with JSON, a
// CORS "simple" text/plain POST with ?token=, GET, graphql-sse, the
// WebSocket) nor read (SSE, long-poll): 403 FORBIDDEN naming the origin,
// nothing appended. The same request from an allowed origin, the server's
// own or none appends.
func TestSecurityCrossOriginPage(t *testing.T) {
	cfg := testConfig()
	cfg.AllowedOrigins = []string{"https://h5.example.com"}
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	e.send(t, "news:1", "seed")
	before := map[string][]string{"news:1": {"1"}}
	body, _ := json.Marshal(map[string]any{"query": sendMutation, "variables": sendVars("news:1", "csrf")})
	gqlURL := e.url + "/graphql"
	withToken := gqlURL + "?token=" + url.QueryEscape(testKey)

	request := func(method, u, origin, contentType, accept string, withBody bool) *http.Response {
		t.Helper()
		var r *strings.Reader
		if withBody {
			r = strings.NewReader(string(body))
		} else {
			r = strings.NewReader("")
		}
		req, _ := http.NewRequest(method, u, r)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		req.Header.Set("Authorization", "Bearer "+testKey)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	const evil = "https://evil.example"
	const want = "origin " + evil + " is not allowed"
	getMutation := gqlURL + "?" + url.Values{"query": {`mutation { send(input: {channel: "news:1", data: 1}) { duplicate } }`},
		"token": {testKey}}.Encode()
	for _, tt := range []struct {
		name                             string
		method, url, contentType, accept string
		withBody                         bool
	}{
		{"fetch with JSON", http.MethodPost, gqlURL, "application/json", "", true},
		{"simple POST text/plain", http.MethodPost, withToken, "text/plain;charset=UTF-8", "", true},
		{"simple POST form", http.MethodPost, withToken, "application/x-www-form-urlencoded", "", true},
		{"GET mutation", http.MethodGet, getMutation, "", "", false},
		{"graphql-sse", http.MethodPost, gqlURL, "application/json", "text/event-stream", true},
		{"SSE", http.MethodGet, eventsURL(e.url, []string{"news:1"}, url.Values{"token": {testKey}}), "", "", false},
		{"long-poll", http.MethodGet, e.url + "/poll?channel=news:1&timeout=0&token=" + url.QueryEscape(testKey), "", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantRefused(t, request(tt.method, tt.url, evil, tt.contentType, tt.accept, tt.withBody), http.StatusForbidden, "FORBIDDEN", want)
			e.unchanged(t, before)
		})
	}
	t.Run("WebSocket", func(t *testing.T) {
		e.wantWSRefused(t, http.Header{"Origin": {evil}, "Authorization": {"Bearer " + testKey}}, http.StatusForbidden, "FORBIDDEN", want)
		e.unchanged(t, before)
	})

	// The control: the very request appends from the allowed origin, the
	// server's own and a client without Origin (a mini-program).
	for _, origin := range []string{"https://h5.example.com", e.url, ""} {
		res := request(http.MethodPost, gqlURL, origin, "application/json", "", true)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("from %q: %s", origin, res.Status)
		}
		before["news:1"] = append(before["news:1"], strconv.Itoa(len(before["news:1"])+1))
		e.unchanged(t, before)
	}
}

// TestSecurityConnectionFloodChangesNothing: a flood of connections from
// one IP past its open-connection limit, and past its connect rate, is
// refused with 429, RATE_LIMITED and Retry-After; the admitted streams go
// on and receive each message once, and nothing is appended.
func TestSecurityConnectionFloodChangesNothing(t *testing.T) {
	t.Run("open connections", func(t *testing.T) {
		cfg := testConfig()
		cfg.Limits.MaxConnectionsPerIP = 3
		e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
		e.send(t, "flood:1", "seed")
		cursor := e.cursor(t, "flood:1")
		var streams []<-chan sseEvent
		for range 3 {
			events, _ := openSSE(t, t.Context(), eventsURL(e.url, []string{"flood:1"}, url.Values{"token": {testKey}, "cursor": {cursor}}), nil)
			streams = append(streams, events)
		}
		const want = "connection limit of 3 open connections per client IP reached"
		auth := http.Header{"Authorization": {"Bearer " + testKey}}
		for range 10 {
			for _, path := range []string{"/events?channel=flood:1", "/poll?channel=flood:1&timeout=0"} {
				wantRefused(t, e.open(t, t.Context(), path, auth), http.StatusTooManyRequests, "RATE_LIMITED", want)
			}
			e.wantWSRefused(t, auth, http.StatusTooManyRequests, "RATE_LIMITED", want)
		}
		e.unchanged(t, map[string][]string{"flood:1": {"1"}})
		sent := e.send(t, "flood:1", "after the flood")
		for i, events := range streams {
			if m := decodeStream(t, nextSSE(t, events).data); m.ID != sent.ID {
				t.Fatalf("stream %d: got %+v, want id %s", i, m, sent.ID)
			}
		}
		e.unchanged(t, map[string][]string{"flood:1": {"1", "2"}})
	})
	t.Run("connect rate", func(t *testing.T) {
		cfg := testConfig()
		cfg.Limits.ConnectRatePerIP = limits.Rate{PerSecond: 0.2, Burst: 2}
		e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
		e.send(t, "flood:1", "seed")
		poll := "/poll?channel=flood:1&timeout=0&token=" + url.QueryEscape(testKey)
		for i := range 2 {
			if s := e.status(t, poll, nil); s != http.StatusOK {
				t.Fatalf("poll %d within the burst: %d", i+1, s)
			}
		}
		const want = "new connection rate limit of 0.2/s per client IP exceeded"
		for range 10 {
			for _, path := range []string{poll, "/events?channel=flood:1&token=" + url.QueryEscape(testKey)} {
				wantRefused(t, e.open(t, t.Context(), path, nil), http.StatusTooManyRequests, "RATE_LIMITED", want)
			}
			e.wantWSRefused(t, nil, http.StatusTooManyRequests, "RATE_LIMITED", want)
		}
		e.unchanged(t, map[string][]string{"flood:1": {"1"}})
	})
}

// TestSecurity33ChannelsOverGraphQLSSE: the channel limit holds on
// graphql-sse too (the WebSocket, SSE and long-poll are in
// TestSubscriptionChannels), and the refused feed delivers nothing.
func TestSecurity33ChannelsOverGraphQLSSE(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	var chs []string
	for i := range 33 {
		chs = append(chs, "ch:"+strconv.Itoa(i))
	}
	e.send(t, "ch:0", "seed")
	status, raw := e.postSSE(t, testKey, feedQuery, map[string]any{"channels": chs})
	if !strings.Contains(raw, "33 channels, over the limit of 32 per subscription") ||
		!strings.Contains(raw, `"BAD_USER_INPUT"`) || strings.Contains(raw, `"seed"`) {
		t.Fatalf("graphql-sse feed of 33 channels: %d %s", status, raw)
	}
	e.unchanged(t, map[string][]string{"ch:0": {"1"}, "ch:32": {}})
}
