package server_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/pushclient"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
)

type presenceOut struct {
	Channel struct {
		Presence *struct {
			Count    int      `json:"count"`
			Subjects []string `json:"subjects"`
		} `json:"presence"`
	} `json:"channel"`
}

func (e *env) presence(t *testing.T, channel string) *presenceOut {
	t.Helper()
	var out presenceOut
	e.do(t, testKey, `query($ch: String!) { channel(name: $ch) { presence { count subjects } } }`,
		map[string]any{"ch": channel}).decode(t, &out)
	return &out
}

// TestPresence: WebSocket and SSE subscriptions are counted by subject on
// channels whose namespace has presence on; joins and leaves are published
// on the companion channel; other namespaces have no presence.
func TestPresence(t *testing.T) {
	cfg := testConfig()
	cfg.Namespaces = access.Namespaces{Named: map[string]access.Namespace{"chat": {Presence: true}}}
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice := token(t, "alice", []string{"chat:*", "news:*"}, time.Hour)
	bob := token(t, "bob", []string{"chat:*"}, time.Hour)

	// A watcher of the companion feed, from its start.
	events, err := pushclient.OpenSSE(ctx, e.url, []string{"chat:room:presence"},
		startCursorOf("chat:room:presence"), alice)
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	expectEvent := func(want string) {
		t.Helper()
		ev, err := events.Next(ctx)
		if err != nil || ev.Message == nil {
			t.Fatalf("presence event: %+v %v", ev, err)
		}
		var d struct{ Subject string }
		_ = json.Unmarshal(ev.Message.Data, &d)
		if got := ev.Message.Event + " " + d.Subject; got != want {
			t.Fatalf("presence event %q, want %q", got, want)
		}
	}

	a1, err := pushclient.OpenSSE(ctx, e.url, []string{"chat:room"}, "", alice)
	if err != nil {
		t.Fatal(err)
	}
	expectEvent("join alice")
	a2, err := pushclient.OpenWS(ctx, e.url, []string{"chat:room", "news:1"}, "", alice)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pushclient.OpenSSE(ctx, e.url, []string{"chat:room"}, "", bob)
	if err != nil {
		t.Fatal(err)
	}
	expectEvent("join bob")
	waitUntil(t, "three subscriptions present", func() bool {
		p := e.presence(t, "chat:room").Channel.Presence
		return p != nil && p.Count == 3 && slices.Equal(p.Subjects, []string{"alice", "bob"})
	})
	b.Close()
	expectEvent("leave bob")
	a1.Close()
	waitUntil(t, "one subscription left", func() bool {
		p := e.presence(t, "chat:room").Channel.Presence
		return p != nil && p.Count == 1 && slices.Equal(p.Subjects, []string{"alice"})
	})
	a2.Close()
	expectEvent("leave alice")
	if p := e.presence(t, "news:1").Channel.Presence; p != nil {
		t.Fatalf("presence of a namespace without it: %+v", p)
	}
}

// TestPresenceNotForgeable: nobody but the server sends on a companion
// feed of a namespace with presence on, neither an API key that covers it
// nor a token holder whose publish claim does; nothing is appended.
func TestPresenceNotForgeable(t *testing.T) {
	cfg := testConfig()
	cfg.Namespaces = access.Namespaces{Named: map[string]access.Namespace{"chat": {Presence: true, TokenPublish: true}}}
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	holder := publishToken(t, "mallory", []string{"chat:*"}, []string{"chat:*"})
	for _, cred := range []string{testKey, holder} {
		for _, q := range []struct {
			query string
			vars  map[string]any
		}{
			{sendMutation, map[string]any{"in": map[string]any{"channel": "chat:room:presence", "event": "join", "data": map[string]any{"subject": "ghost"}}}},
			{`mutation($in: BroadcastInput!) { broadcast(input: $in) { messages { id } } }`,
				map[string]any{"in": map[string]any{"channels": []string{"chat:other", "chat:room:presence"}, "event": "leave", "data": 1}}},
		} {
			r := e.do(t, cred, q.query, q.vars)
			if code := r.code(t); code != "FORBIDDEN" {
				t.Fatalf("forged presence event: %s, want FORBIDDEN", code)
			}
		}
	}
	for _, ch := range []string{"chat:room:presence", "chat:other"} {
		if got := e.ids(t, ch); len(got) != 0 {
			t.Fatalf("%s: appended %v", ch, got)
		}
	}
	// The same key and token send to the channel itself.
	for _, cred := range []string{testKey, holder} {
		if r := e.do(t, cred, sendMutation, map[string]any{"in": map[string]any{"channel": "chat:room", "data": 1}}); len(r.Errors) > 0 {
			t.Fatalf("send to chat:room: %v", r.Errors)
		}
	}
}
