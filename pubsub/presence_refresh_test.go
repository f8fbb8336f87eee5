package pubsub_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
)

// beforePipeline runs a function right before the next pipeline (a
// presence refresh round is one) goes to Redis, and tells when that
// pipeline has been answered; arm it again for the one after.
type beforePipeline struct {
	mu   sync.Mutex
	f    func() // nil: nothing to run
	done chan struct{}
}

// arm runs f (if not nil) before the next pipeline; the channel returned
// is closed once that pipeline has been answered.
func (h *beforePipeline) arm(f func()) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.f, h.done = f, make(chan struct{})
	return h.done
}

func (h *beforePipeline) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *beforePipeline) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (h *beforePipeline) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		f, done := h.f, h.done
		h.f, h.done = nil, nil
		h.mu.Unlock()
		if done == nil {
			return next(ctx, cmds)
		}
		if f != nil {
			f()
		}
		err := next(ctx, cmds)
		close(done)
		return err
	}
}

var _ redis.Hook = (*beforePipeline)(nil)

// waitRound waits for an armed pipeline to be answered.
func waitRound(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(redisWait):
		t.Fatalf("no refresh round: %s", what)
	}
}

// TestRedisPresenceRefreshRacesLeave: a connection that leaves while its
// node's refresh round is under way (the round copied the node's entries,
// then wrote them) must not stay present. Before the fix the round wrote
// the copied count back after the leave had removed it, so the subject
// stayed in Channel.presence until the TTL ran out, after its leave event.
func TestRedisPresenceRefreshRacesLeave(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs("--appendonly", "no"))
	client := srv.Client(t)
	hook := &beforePipeline{}
	client.AddHook(hook)
	// Refresh rounds every second; an entry written by one lives 3 s.
	const ttl = 3 * time.Second
	var ev presenceEvents
	p := pubsub.NewRedisPresence(client, "race:", ttl, ev.on)
	defer p.Close()

	join(t, p, "room", "bob") // stays: the round has something else to write
	leave := join(t, p, "room", "alice")
	expectPresence(t, p, "room", 2, "alice", "bob")
	// alice leaves after the round copied the entries, before it writes.
	waitRound(t, hook.arm(leave), "the round alice leaves in")
	// That round ends by writing again what changed while it ran, and the
	// next one starts only after it (one goroutine): once the next has
	// written, alice must be gone. Not only from Get, whose entries expire
	// with the clock, but from the hash, where a stale field stays as long
	// as bob's refreshes keep the key, however slowly this test runs.
	waitRound(t, hook.arm(nil), "the round after")
	expectPresence(t, p, "room", 1, "bob")
	if raw, err := client.HGet(context.Background(), "race:{room}:p", "alice").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("alice's field after she left during a refresh round: %q, %v; want none", raw, err)
	}
	got := ev.take()
	if len(got) != 3 || got[2] != "leave alice room" {
		t.Fatalf("events %v, want joins of bob and alice, then alice's leave", got)
	}
}
