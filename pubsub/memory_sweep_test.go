package pubsub_test

import (
	"context"
	"testing"
	"time"

	"github.com/pushgate/pushgate/pubsub"
)

// TestMemorySweep: the memory store's janitor (run here with a clock the
// test sets) trims messages past the retention age and forgets a channel
// that retains nothing, has no subscriber and no remembered idempotency
// key, once it has been unused for the retention age: publishing to it
// again starts a new epoch. A channel with retained messages, a subscriber
// or a remembered key keeps its epoch and offsets.
func TestMemorySweep(t *testing.T) {
	const ttl = time.Hour
	b := pubsub.NewMemory(pubsub.Options{HistoryTTL: ttl, IdempotencyWindow: 3 * time.Hour})
	t.Cleanup(func() { _ = b.Close() })
	ctx := context.Background()
	publish := func(ch, key string) pubsub.Message {
		t.Helper()
		r, err := b.Publish(ctx, pubsub.PublishRequest{Channel: ch, Data: numData(1), IdempotencyKey: key})
		if err != nil {
			t.Fatalf("publish %s: %v", ch, err)
		}
		return r.Message
	}
	state := func(ch string) pubsub.ChannelState {
		t.Helper()
		st, err := b.State(ctx, ch)
		if err != nil {
			t.Fatalf("state %s: %v", ch, err)
		}
		return st
	}
	// kept checks that ch still has epoch and top, with retained messages.
	kept := func(what, ch, epoch string, top uint64, retained int) {
		t.Helper()
		if st := state(ch); st.Epoch != epoch || st.Top != top || st.Retained != retained {
			t.Fatalf("%s: %s state %+v, want epoch %s, top %d, %d retained", what, ch, st, epoch, top, retained)
		}
	}
	forgotten := func(what, ch, epoch string) {
		t.Helper()
		if st := state(ch); st.Epoch != "" || st.Top != 0 {
			t.Fatalf("%s: %s state %+v, want it forgotten", what, ch, st)
		}
		if m := publish(ch, ""); m.Offset != 1 || m.Epoch == epoch {
			t.Fatalf("%s: a publish to forgotten %s is %s/%d, want offset 1 of a new epoch", what, ch, m.Epoch, m.Offset)
		}
	}

	start := time.Now()
	gone := publish("gone", "")
	young := publish("young", "")
	watched := publish("watched", "")
	keyed := publish("keyed", "k")
	s, err := b.Subscribe(ctx, []string{"watched"}, pubsub.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// Half the retention age on: everything retained, nothing forgotten.
	pubsub.Sweep(b, start.Add(ttl/2))
	kept("after ttl/2", "gone", gone.Epoch, 1, 1)
	kept("after ttl/2", "young", young.Epoch, 1, 1)

	// Two retention ages on: every message is past the age.
	pubsub.Sweep(b, start.Add(2*ttl))
	forgotten("after 2 ttl", "gone", gone.Epoch)
	forgotten("after 2 ttl", "young", young.Epoch)
	kept("after 2 ttl, subscribed", "watched", watched.Epoch, 1, 0)
	kept("after 2 ttl, key remembered", "keyed", keyed.Epoch, 1, 0)
	// The subscriber goes on in the same epoch.
	next := publish("watched", "")
	if next.Epoch != watched.Epoch || next.Offset != 2 {
		t.Fatalf("a publish to the watched channel: %s/%d, want %s/2", next.Epoch, next.Offset, watched.Epoch)
	}
	if ev, err := s.Next(testCtx(t)); err != nil || ev.Message == nil || ev.Message.Offset != 2 {
		t.Fatalf("the subscriber: %+v %v, want message 2", ev, err)
	}

	// Past the idempotency window: the key is dropped, and with it the
	// last reason to keep the channel.
	pubsub.Sweep(b, start.Add(4*ttl))
	forgotten("after the idempotency window", "keyed", keyed.Epoch)
	if r, err := b.Publish(ctx, pubsub.PublishRequest{Channel: "keyed", Data: numData(2), IdempotencyKey: "k"}); err != nil || r.Duplicate {
		t.Fatalf("the forgotten key again: %+v %v, want a new message", r, err)
	}
	// Unsubscribed: the watched channel goes once its last use is a
	// retention age old and its messages are past it.
	s.Close()
	pubsub.Sweep(b, time.Now().Add(2*ttl))
	forgotten("unsubscribed", "watched", watched.Epoch)
}
