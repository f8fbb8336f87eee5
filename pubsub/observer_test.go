package pubsub_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pushgate/pushgate/pubsub"
)

// recorder is an Observer that lists what it was told.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, s)
}

func (r *recorder) Reset(reason pubsub.ResetReason) { r.add("reset " + string(reason)) }
func (r *recorder) StoreError(op string)            { r.add("store error " + op) }
func (r *recorder) Resumed(withReset bool) {
	if withReset {
		r.add("resumed after reset")
	} else {
		r.add("resumed")
	}
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

// waitEvents waits until the recorder holds want, in order, and nothing
// else.
func (r *recorder) wait(t *testing.T, want ...string) {
	t.Helper()
	var got []string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		got = slices.Clone(r.events)
		r.mu.Unlock()
		if len(got) >= len(want) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // nothing more comes
	if got = r.take(); !slices.Equal(got, want) {
		t.Fatalf("observed %q, want %q", got, want)
	}
}

// TestObserver: the observer hears of every reset with its reason, and of
// each subscription that started from a cursor once it caught up.
func TestObserver(t *testing.T) {
	rec := &recorder{}
	b := pubsub.NewMemory(pubsub.Options{HistorySize: 2, Observer: rec})
	t.Cleanup(func() { _ = b.Close() })
	ctx := context.Background()
	const ch = "obs"
	var first pubsub.Message
	for i := range 3 {
		res, err := b.Publish(ctx, pubsub.PublishRequest{Channel: ch, Data: json.RawMessage(`1`)})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = res.Message
		}
	}
	subscribe := func(positions map[string]pubsub.Position, n int) {
		t.Helper()
		s, err := b.Subscribe(ctx, []string{ch, "obs-other"}, pubsub.NewCursor(positions))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for range n {
			if _, err := s.Next(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// Resumed is reported when every channel has caught up: do not
		// end the subscription before (under load the other channel may
		// still be reading the store).
		deadline := time.Now().Add(5 * time.Second)
		for s.CatchingUp() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}

	subscribe(nil, 0) // live: no resume
	rec.wait(t)
	subscribe(map[string]pubsub.Position{ch: first.Position()}, 2) // after the first: both retained
	rec.wait(t, "resumed")
	subscribe(map[string]pubsub.Position{ch: {Epoch: first.Epoch}}, 3) // the first is gone
	rec.wait(t, "reset expired", "resumed after reset")
	subscribe(map[string]pubsub.Position{ch: {Epoch: first.Epoch, Offset: 9}}, 3) // ahead of the stream
	rec.wait(t, "reset unknown_position", "resumed after reset")
	subscribe(map[string]pubsub.Position{ch: {Epoch: "elsewhere", Offset: 1}}, 3)
	rec.wait(t, "reset epoch_changed", "resumed after reset")
	// A cursor of other channels only is no resume.
	subscribe(map[string]pubsub.Position{"unsubscribed": {Epoch: first.Epoch, Offset: 1}}, 0)
	rec.wait(t)
}
