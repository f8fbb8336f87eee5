package pubsub_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
)

// beforePipeline runs a function once, right before the next pipeline
// (a presence refresh round is one) goes to Redis, and tells when that
// pipeline has been answered.
type beforePipeline struct {
	armed atomic.Pointer[func()]
	done  chan struct{}
}

func (h *beforePipeline) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *beforePipeline) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (h *beforePipeline) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		f := h.armed.Swap(nil)
		if f == nil {
			return next(ctx, cmds)
		}
		(*f)()
		err := next(ctx, cmds)
		close(h.done)
		return err
	}
}

var _ redis.Hook = (*beforePipeline)(nil)

// TestRedisPresenceRefreshRacesLeave: a connection that leaves while its
// node's refresh round is under way (the round copied the node's entries,
// then wrote them) must not stay present. Before the fix the round wrote
// the copied count back after the leave had removed it, so the subject
// stayed in Channel.presence until the TTL ran out, after its leave event.
func TestRedisPresenceRefreshRacesLeave(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs("--appendonly", "no"))
	client := srv.Client(t)
	hook := &beforePipeline{done: make(chan struct{})}
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
	f := func() { leave() }
	hook.armed.Store(&f)
	select {
	case <-hook.done:
	case <-time.After(redisWait):
		t.Fatal("no refresh round")
	}
	// The leave is done and announced; within a moment (well before the
	// TTL could clear a stale entry) alice must be gone.
	deadline := time.Now().Add(ttl / 2)
	for {
		st, err := p.Get(context.Background(), "room")
		if err != nil {
			t.Fatal(err)
		}
		if st.Count == 1 && len(st.Subjects) == 1 && st.Subjects[0] == "bob" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("presence %+v %v after alice left during a refresh round, want only bob", st.Count, st.Subjects)
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := ev.take()
	if len(got) != 3 || got[2] != "leave alice room" {
		t.Fatalf("events %v, want joins of bob and alice, then alice's leave", got)
	}
}
