package server_test

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
)

// TestReadAccess: who may read which channel, for every way of passing a
// credential: history over HTTP (Authorization header, ?token=) and the feed
// over WebSocket (connection_init token or Authorization, the upgrade
// request's Authorization header or ?token=).
func TestReadAccess(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	for _, ch := range []string{"news:1", "user:alice", "user:bob"} {
		e.send(t, ch, "hello")
	}

	signed := func(method jwt.SigningMethod, key any, claims jwt.Claims) string {
		s, err := jwt.NewWithClaims(method, claims).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	alice := token(t, "alice", []string{"news:*", "user:*"}, time.Hour)
	creds := []struct {
		name    string
		cred    string
		channel string
		code    string // "" when allowed
	}{
		{"token granting the channel", token(t, "u1", []string{"orders:*", "news:*"}, time.Hour), "news:1", ""},
		{"token with ? pattern", token(t, "u1", []string{"news:?"}, time.Hour), "news:1", ""},
		{"api key", testKey, "user:bob", ""},
		{"alice reading user:alice", alice, "user:alice", ""},
		{"alice reading user:bob", alice, "user:bob", "FORBIDDEN"},
		{"token for another channel", token(t, "u1", []string{"orders:*"}, time.Hour), "news:1", "FORBIDDEN"},
		{"token without channels", token(t, "u1", nil, time.Hour), "news:1", "FORBIDDEN"},
		{"expired token", token(t, "u1", []string{"*"}, -time.Minute), "news:1", "UNAUTHENTICATED"},
		{"no credentials", "", "news:1", "UNAUTHENTICATED"},
		{"garbage", "not-a-key-nor-a-token", "news:1", "UNAUTHENTICATED"},
		{"token signed with another secret", signed(jwt.SigningMethodHS256, []byte("other"),
			access.Claims{Channels: []string{"*"}, RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}),
			"news:1", "UNAUTHENTICATED"},
		{"HS512 token", signed(jwt.SigningMethodHS512, []byte(testJWTSecret),
			access.Claims{Channels: []string{"*"}, RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}),
			"news:1", "UNAUTHENTICATED"},
		{"unsigned token", signed(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType,
			access.Claims{Channels: []string{"*"}, RegisteredClaims: jwt.RegisteredClaims{ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}),
			"news:1", "UNAUTHENTICATED"},
		{"token without exp", signed(jwt.SigningMethodHS256, []byte(testJWTSecret), access.Claims{Channels: []string{"*"}}),
			"news:1", "UNAUTHENTICATED"},
	}

	history := `query($ch: String!) { history(channel: $ch) { nodes { id } } }`
	for _, c := range creds {
		t.Run(c.name, func(t *testing.T) {
			vars := map[string]any{"ch": c.channel}
			check := func(t *testing.T, res gqlResponse) {
				t.Helper()
				if c.code == "" {
					var out struct {
						History struct{ Nodes []message } `json:"history"`
					}
					res.decode(t, &out)
					if len(out.History.Nodes) == 0 { // the feed checks below send more
						t.Fatalf("history %+v", out)
					}
				} else if got := res.code(t); got != c.code {
					t.Fatalf("code %s, want %s", got, c.code)
				}
			}
			t.Run("http header", func(t *testing.T) { check(t, e.do(t, c.cred, history, vars)) })
			t.Run("http query", func(t *testing.T) {
				check(t, e.doURL(t, e.url+"/graphql?token="+url.QueryEscape(c.cred), "", history, vars))
			})
			for _, ws := range []struct {
				name   string
				path   string
				header http.Header
				init   map[string]any
			}{
				{"ws init token", "", nil, map[string]any{"token": c.cred}},
				{"ws init Authorization", "", nil, map[string]any{"Authorization": "Bearer " + c.cred}},
				{"ws init authorization without Bearer", "", nil, map[string]any{"authorization": c.cred}},
				{"ws request header", "", http.Header{"Authorization": {"Bearer " + c.cred}}, nil},
				{"ws request query", "/graphql?token=" + url.QueryEscape(c.cred), nil, nil},
			} {
				if c.cred == "" && ws.name != "ws init token" {
					continue
				}
				t.Run(ws.name, func(t *testing.T) {
					for _, proto := range protocols {
						conn := e.dialWS(t, proto, ws.path, ws.header)
						conn.init(ws.init)
						conn.subscribe("1", []string{c.channel}, e.cursor(t, c.channel))
						if c.code != "" {
							if got := conn.errorCode("1"); got != c.code {
								t.Fatalf("%s: code %s, want %s", proto, got, c.code)
							}
							continue
						}
						sent := e.send(t, c.channel, proto)
						if ev := conn.event("1"); ev.ID != sent.ID || ev.Channel != c.channel {
							t.Fatalf("%s: got %+v, want %+v", proto, ev, sent)
						}
					}
				})
			}
		})
	}
}

// TestSendAccess: only API keys send; a refused send appends nothing.
func TestSendAccess(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	e.send(t, "news:1", "first")
	tests := []struct {
		name string
		cred string
		code string
	}{
		{"missing key", "", "UNAUTHENTICATED"},
		{"wrong key", "wrong-key", "UNAUTHENTICATED"},
		{"key with a suffix", testKey + "x", "UNAUTHENTICATED"},
		{"subscriber token", token(t, "u1", []string{"*"}, time.Hour), "FORBIDDEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, op := range []struct {
				query string
				vars  map[string]any
			}{
				{sendMutation, map[string]any{"in": map[string]any{"channel": "news:1", "data": 1}}},
				{broadcastMutation, map[string]any{"in": map[string]any{"channels": []string{"news:1", "news:2"}, "data": 1}}},
			} {
				if got := e.do(t, tt.cred, op.query, op.vars).code(t); got != tt.code {
					t.Fatalf("code %s, want %s", got, tt.code)
				}
			}
			if got := e.ids(t, "news:1"); !slices.Equal(got, []string{"1"}) {
				t.Fatalf("history changed: %v", got)
			}
			if got := e.ids(t, "news:2"); len(got) != 0 {
				t.Fatalf("history changed: %v", got)
			}
		})
	}
}

// TestAnonymousAccess: --allow-anonymous lets requests without credentials
// read, but never user channels, and never send.
func TestAnonymousAccess(t *testing.T) {
	cfg := testConfig()
	cfg.AllowAnonymous = true
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	e.send(t, "news:1", "hello")
	history := `query($ch: String!) { history(channel: $ch) { nodes { id } } }`

	var out struct {
		History struct{ Nodes []message } `json:"history"`
	}
	e.do(t, "", history, map[string]any{"ch": "news:1"}).decode(t, &out)
	if len(out.History.Nodes) != 1 {
		t.Fatalf("anonymous history: %+v", out)
	}
	for _, tt := range []struct {
		name, cred, query string
		vars              map[string]any
		code              string
	}{
		{"user channel", "", history, map[string]any{"ch": "user:bob"}, "FORBIDDEN"},
		{"invalid token is not anonymous", "garbage", history, map[string]any{"ch": "news:1"}, "UNAUTHENTICATED"},
		{"send", "", sendMutation, map[string]any{"in": map[string]any{"channel": "news:1", "data": 1}}, "UNAUTHENTICATED"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := e.do(t, tt.cred, tt.query, tt.vars).code(t); got != tt.code {
				t.Fatalf("code %s, want %s", got, tt.code)
			}
		})
	}
	if got := e.ids(t, "news:1"); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("history changed: %v", got)
	}

	// The feed too.
	c := e.dialWS(t, transportWS, "", nil)
	c.init(nil)
	c.subscribe("1", []string{"news:1", "user:bob"}, "")
	if got := c.errorCode("1"); got != "FORBIDDEN" {
		t.Fatalf("anonymous feed of user:bob: %s", got)
	}
	c.subscribe("2", []string{"news:1"}, e.cursor(t, "news:1"))
	sent := e.send(t, "news:1", "live")
	if ev := c.event("2"); ev.ID != sent.ID {
		t.Fatalf("anonymous feed: %+v", ev)
	}
}
