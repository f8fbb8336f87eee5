package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/internal/pushclient"
	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
)

// subscriberToken mints a token of sub for channels.
func subscriberToken(t *testing.T, sub string, channels ...string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, access.Claims{
		Channels:         channels,
		RegisteredClaims: jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
	}).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type presenceState struct {
	Count    int      `json:"count"`
	Subjects []string `json:"subjects"`
}

// presenceOf asks n for Channel.presence of channel.
func presenceOf(t *testing.T, n *node, channel string) (presenceState, error) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"query":     `query($ch: String!) { channel(name: $ch) { presence { count subjects } } }`,
		"variables": map[string]any{"ch": channel},
	})
	req, _ := http.NewRequest(http.MethodPost, n.url()+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return presenceState{}, err
	}
	defer res.Body.Close()
	var out struct {
		Data struct {
			Channel struct{ Presence *presenceState }
		}
		Errors []json.RawMessage
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return presenceState{}, err
	}
	if len(out.Errors) > 0 || out.Data.Channel.Presence == nil {
		t.Fatalf("presence of %s: errors %s, presence %v", channel, out.Errors, out.Data.Channel.Presence)
	}
	return *out.Data.Channel.Presence, nil
}

// TestPresenceAcrossNodes: three nodes on one Redis with presence on for
// the chat namespace. Subscribers of one channel on different nodes, by
// SSE and WebSocket, are counted by every node (Channel.presence), joins
// and leaves reach a watcher of the companion feed on another node, a
// subject with a connection left on another node stays present, and the
// entries of a node killed with SIGKILL disappear within the presence TTL
// (30 s), while those of the live nodes stay.
func TestPresenceAcrossNodes(t *testing.T) {
	redis := redistest.Start(t)
	conf := filepath.Join(t.TempDir(), "pushgate.yaml")
	if err := os.WriteFile(conf, []byte("namespaces:\n  chat:\n    presence: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--redis-url", redis.URL(), "--config", conf}
	a, b, c := startNode(t, "a", args...), startNode(t, "b", args...), startNode(t, "c", args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const room = "chat:room"
	alice, bob, carol := subscriberToken(t, "alice", "chat:*"), subscriberToken(t, "bob", "chat:*"), subscriberToken(t, "carol", "chat:*")

	// The watcher of the companion feed, on node a, from its start.
	watcher, err := pushclient.OpenSSE(ctx, a.url(), []string{room + ":presence"},
		pubsub.NewCursor(map[string]pubsub.Position{room + ":presence": {}}).String(), alice)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	var (
		evMu   sync.Mutex
		events []string
	)
	go func() {
		for {
			ev, err := watcher.Next(ctx)
			if err != nil {
				return
			}
			if ev.Message != nil {
				var d struct{ Subject string }
				_ = json.Unmarshal(ev.Message.Data, &d)
				evMu.Lock()
				events = append(events, ev.Message.Event+" "+d.Subject)
				evMu.Unlock()
			}
		}
	}()
	eventsNow := func() []string {
		evMu.Lock()
		defer evMu.Unlock()
		return append([]string(nil), events...)
	}

	open := func(n *node, tr pushclient.Transport, tok string) pushclient.Stream {
		t.Helper()
		s, err := pushclient.Open(ctx, tr, n.url(), []string{room}, "", tok)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	aliceSSE := open(b, pushclient.SSE, alice)
	open(a, pushclient.WebSocket, alice)
	open(c, pushclient.WebSocket, bob)
	open(c, pushclient.SSE, carol)

	// waitPresence waits until every node in on reports want.
	waitPresence := func(what string, within time.Duration, want presenceState, on ...*node) time.Duration {
		t.Helper()
		start := time.Now()
		deadline := start.Add(within)
		for {
			ok := true
			var got presenceState
			for _, n := range on {
				got, err = presenceOf(t, n, room)
				if err != nil || got.Count != want.Count || !slices.Equal(got.Subjects, want.Subjects) {
					ok = false
					break
				}
			}
			if ok {
				return time.Since(start)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: presence %+v (%v), want %+v within %v", what, got, err, want, within)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	all := presenceState{Count: 4, Subjects: []string{"alice", "bob", "carol"}}
	waitPresence("four connections of three subjects on three nodes", 10*time.Second, all, a, b, c)
	joins := func() []string {
		out := eventsNow()
		sort.Strings(out)
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(joins(), []string{"join alice", "join bob", "join carol"}) {
		if time.Now().After(deadline) {
			t.Fatalf("companion events %v, want one join of each subject", eventsNow())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// alice leaves node b but is still on node a: counted once less,
	// still present, no leave event.
	aliceSSE.Close()
	waitPresence("alice's SSE stream gone", 10*time.Second, presenceState{Count: 3, Subjects: all.Subjects}, a, b, c)

	// Node c crashes with bob and carol on it.
	c.kill(syscall.SIGKILL)
	took := waitPresence("the crashed node's entries to expire", pubsub.DefaultPresenceTTL+10*time.Second,
		presenceState{Count: 1, Subjects: []string{"alice"}}, a, b)
	t.Logf("the crashed node's entries expired %v after SIGKILL (TTL %v)", took.Round(100*time.Millisecond), pubsub.DefaultPresenceTTL)
	if got := eventsNow(); len(got) != 3 {
		// A crashed node's subjects vanish without a leave event
		// (pubsub.Presence); a leave of alice here would be wrong.
		t.Errorf("companion events after the crash %v, want only the three joins", got)
	}
}
