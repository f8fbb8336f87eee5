package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
)

// Hostile clients and the names of channels and subjects (issue 12, items
// 11 and 12): "user:" with an empty id is no channel, and a token cannot
// pass for an API key or for anonymous readers.

// mapToken signs claims as they are given (a sub that is empty but
// present, for one), with an hour to live.
func mapToken(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	claims["exp"] = time.Now().Add(time.Hour).Unix()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testJWTSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestUserChannelWithoutID: "user:" is refused with BAD_USER_INPUT
// wherever a channel is named (send, broadcast, history, channel, the
// WebSocket feed on both protocols, SSE, long-poll), even to a token
// granted user:* whose sub is missing or empty; such a token reads no user
// channel at all, and nothing is appended to "user:".
func TestUserChannelWithoutID(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	const why = `"user:" names no user`
	tokens := map[string]string{
		"no sub":    mapToken(t, jwt.MapClaims{"channels": []string{"user:*"}}),
		"empty sub": mapToken(t, jwt.MapClaims{"sub": "", "channels": []string{"user:*"}}),
	}
	e.send(t, "user:abc", "for abc")

	refused(t, e.do(t, testKey, sendMutation, sendVars("user:", 1)), "BAD_USER_INPUT", why)
	refused(t, e.do(t, testKey, broadcastMutation, broadcastVars([]string{"user:abc", "user:"}, 1)), "BAD_USER_INPUT", why)
	if ids := e.ids(t, "user:abc"); len(ids) != 1 {
		t.Fatalf("a refused broadcast appended to user:abc: %v", ids)
	}
	for name, tok := range tokens {
		t.Run(name, func(t *testing.T) {
			refused(t, e.do(t, tok, `{ history(channel: "user:") { nodes { id } } }`, nil), "BAD_USER_INPUT", why)
			refused(t, e.do(t, tok, `{ channel(name: "user:") { lastId } }`, nil), "BAD_USER_INPUT", why)
			// A user channel is its user's alone: without a subject, none.
			refused(t, e.do(t, tok, `{ history(channel: "user:abc") { nodes { id } } }`, nil), "FORBIDDEN")
			refused(t, e.do(t, tok, `{ history(channel: "user:a") { nodes { id } } }`, nil), "FORBIDDEN")

			q := url.Values{"channel": {"user:"}, "token": {tok}, "timeout": {"0"}}
			for _, path := range []string{"/events?", "/poll?"} {
				wantRefusedNow(t, e, path+q.Encode(), nil, http.StatusBadRequest, "BAD_USER_INPUT", why)
			}
			for _, proto := range protocols {
				c := e.dialWS(t, proto, "", nil)
				c.init(map[string]any{"token": tok})
				c.subscribe("u", []string{"user:"}, "")
				if code := c.errorCode("u"); code != "BAD_USER_INPUT" {
					t.Fatalf("%s feed of user:: %s", proto, code)
				}
			}
		})
	}
	if ids := e.ids(t, "user:abc"); len(ids) != 1 {
		t.Fatalf("user:abc: %v", ids)
	}
}

// TestReservedSubjects: a token whose sub is "anonymous" or starts with
// "key:" (any case) is refused wherever a token is read (HTTP, SSE,
// long-poll, WebSocket connection_init), so presence never lists a token
// holder under an API key's or anonymous readers' name; issueToken refuses
// to mint one, even for an unscoped key; other subjects still work.
func TestReservedSubjects(t *testing.T) {
	cfg := accessConfig()
	cfg.Namespaces.Named["room"] = access.Namespace{Presence: true, AnonymousRead: true}
	e := startEnv(t, cfg, accessBroker(t, cfg))
	e.send(t, "room:1", "hi")

	for _, sub := range []string{"anonymous", "Anonymous", "key:test", "key:orders-service", "KEY:test", "key:"} {
		t.Run(sub, func(t *testing.T) {
			tok := token(t, sub, []string{"*"}, time.Hour)
			refused(t, e.do(t, tok, `{ history(channel: "room:1") { nodes { id } } }`, nil), "UNAUTHENTICATED", "subject (sub)", "reserved")
			q := url.Values{"channel": {"room:1"}, "token": {tok}, "timeout": {"0"}}
			for _, path := range []string{"/events?", "/poll?"} {
				wantRefusedNow(t, e, path+q.Encode(), nil, http.StatusUnauthorized, "UNAUTHENTICATED", "reserved")
			}
			for _, proto := range protocols {
				c := e.dialWS(t, proto, "", nil)
				c.init(map[string]any{"token": tok})
				c.subscribe("p", []string{"room:1"}, "")
				if code := c.errorCode("p"); code != "UNAUTHENTICATED" {
					t.Fatalf("%s feed: %s", proto, code)
				}
			}
			for _, cred := range []string{testKey, ordersKey} {
				refused(t, e.do(t, cred, issueTokenMutation, map[string]any{"in": map[string]any{
					"subject": sub, "channels": []string{"orders:1"}}}), "BAD_USER_INPUT", "subject", "reserved")
			}
		})
	}

	// Nobody is listed: every reserved-subject subscription was refused.
	if p := e.presence(t, "room:1"); p.Channel.Presence == nil || p.Channel.Presence.Count != 0 {
		t.Fatalf("presence after refused tokens: %+v", p.Channel.Presence)
	}
	// A subject that merely contains the words is a subject like any other.
	for _, sub := range []string{"anonymous2", "monkey:1", "user:key:x"} {
		var out issued
		e.do(t, testKey, issueTokenMutation, map[string]any{"in": map[string]any{
			"subject": sub, "channels": []string{"room:*"}}}).decode(t, &out)
		res := e.do(t, out.IssueToken.Token, `{ history(channel: "room:1") { nodes { id } } }`, nil)
		if len(res.Errors) > 0 || !strings.Contains(string(res.Data), `"id":"1"`) {
			t.Fatalf("token for %q: %s %+v", sub, res.Data, res.Errors)
		}
	}
	// key:test is the API key's name, and only its.
	e.openStream(t, "/events?channel=room:1&token="+testKey, nil)
	eventually(t, "the key listed in presence", func() bool {
		p := e.presence(t, "room:1").Channel.Presence
		return p != nil && p.Count == 1 && len(p.Subjects) == 1 && p.Subjects[0] == "key:test"
	})
}
