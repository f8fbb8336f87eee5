package pubsub_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
)

type presenceEvents struct {
	mu  sync.Mutex
	got []string
}

func (e *presenceEvents) on(channel, subject string, joined bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	verb := "leave"
	if joined {
		verb = "join"
	}
	e.got = append(e.got, fmt.Sprintf("%s %s %s", verb, subject, channel))
}

func (e *presenceEvents) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.got
	e.got = nil
	return out
}

func expectPresence(t *testing.T, p pubsub.Presence, channel string, count int, subjects ...string) {
	t.Helper()
	st, err := p.Get(context.Background(), channel)
	if err != nil {
		t.Fatal(err)
	}
	if st.Count != count || !slices.Equal(st.Subjects, subjects) {
		t.Fatalf("presence of %s = %+v, want %d %v", channel, st, count, subjects)
	}
}

func join(t *testing.T, p pubsub.Presence, channel, subject string) func() {
	t.Helper()
	leave, err := p.Join(context.Background(), channel, subject)
	if err != nil {
		t.Fatal(err)
	}
	return leave
}

// testPresence is what every presence implementation does on one node.
func testPresence(t *testing.T, newPresence func(pubsub.PresenceChange) pubsub.Presence) {
	var ev presenceEvents
	p := newPresence(ev.on)
	defer p.Close()
	expectPresence(t, p, "room", 0)
	a1 := join(t, p, "room", "alice")
	a2 := join(t, p, "room", "alice")
	b := join(t, p, "room", "bob")
	join(t, p, "other", "carol")
	expectPresence(t, p, "room", 3, "alice", "bob")
	if got := ev.take(); !slices.Equal(got, []string{"join alice room", "join bob room", "join carol other"}) {
		t.Fatalf("events = %v", got)
	}
	a1()
	a1() // leave is idempotent
	expectPresence(t, p, "room", 2, "alice", "bob")
	if got := ev.take(); len(got) != 0 {
		t.Fatalf("events after one of two alice connections left = %v", got)
	}
	a2()
	b()
	expectPresence(t, p, "room", 0)
	if got := ev.take(); !slices.Equal(got, []string{"leave alice room", "leave bob room"}) {
		t.Fatalf("events = %v", got)
	}
}

func TestMemoryPresence(t *testing.T) {
	testPresence(t, pubsub.NewMemoryPresence)
}

func TestRedisPresence(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	t.Run("one node", func(t *testing.T) {
		testPresence(t, func(on pubsub.PresenceChange) pubsub.Presence {
			return pubsub.NewRedisPresence(client, "one:", time.Minute, on)
		})
	})
	t.Run("two nodes", func(t *testing.T) {
		var ev presenceEvents
		a := pubsub.NewRedisPresence(client, "two:", time.Minute, ev.on)
		b := pubsub.NewRedisPresence(client, "two:", time.Minute, ev.on)
		defer a.Close()
		defer b.Close()
		la := join(t, a, "room", "alice")
		lb := join(t, b, "room", "alice")
		join(t, b, "room", "bob")
		expectPresence(t, a, "room", 3, "alice", "bob")
		expectPresence(t, b, "room", 3, "alice", "bob")
		la()
		expectPresence(t, b, "room", 2, "alice", "bob")
		lb()
		expectPresence(t, a, "room", 1, "bob")
		// alice joined once and left once across the two nodes.
		if got := ev.take(); !slices.Equal(got, []string{"join alice room", "join bob room", "leave alice room"}) {
			t.Fatalf("events = %v", got)
		}
	})
	t.Run("crashed node expires", func(t *testing.T) {
		// Time is the behaviour here: entries live a TTL unless their node
		// refreshes them (every third of it). 1.5 s leaves the alive node
		// a second to refresh on a loaded machine under -race.
		ttl := 1500 * time.Millisecond
		client := srv.Client(t)
		alive := pubsub.NewRedisPresence(client, "crash:", ttl, nil)
		crashed := pubsub.NewRedisPresence(client, "crash:", ttl, nil)
		defer alive.Close()
		join(t, alive, "room", "alice")
		join(t, crashed, "room", "bob")
		expectPresence(t, alive, "room", 2, "alice", "bob")
		crashed.Close() // stops refreshing without leaving, as a crash would
		// Only alive refreshes from here on: its rounds are counted.
		hook := &beforePipeline{}
		client.AddHook(hook)
		deadline := time.Now().Add(redisWait)
		for {
			st, err := alive.Get(context.Background(), "room")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(st.Subjects, "bob") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("presence %+v: the crashed node's bob did not expire", st)
			}
			time.Sleep(50 * time.Millisecond)
		}
		// Three more rounds (a TTL's worth: alice's entry from the join
		// would be gone), and right after the third, alice is there:
		// refreshed.
		for i := range 3 {
			waitRound(t, hook.arm(nil), fmt.Sprintf("round %d after bob expired", i+1))
		}
		expectPresence(t, alive, "room", 1, "alice")
	})
}

// BenchmarkRedisPresence: the cost of presence per connection: one join and
// one leave (each one script call), and one refresh round per node for
// 1,000 distinct (channel, subject) entries.
func BenchmarkRedisPresence(b *testing.B) {
	srv := redistest.Start(b, redistest.WithArgs("--appendonly", "no"))
	client := srv.Client(b)
	p := pubsub.NewRedisPresence(client, "bench:", time.Minute, nil)
	defer p.Close()
	ctx := context.Background()
	b.Run("JoinLeave", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			leave, err := p.Join(ctx, fmt.Sprintf("user:%d", i%1000), "s")
			if err != nil {
				b.Fatal(err)
			}
			leave()
		}
	})
}
