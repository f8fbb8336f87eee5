package pubsub

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// panickyStore is a memory store whose reads panic for one channel.
type panickyStore struct {
	*memStore
	channel string
}

func (p panickyStore) readAfter(ctx context.Context, name string, after uint64, limit, maxBytes int) (ChannelState, []Message, error) {
	if name == p.channel {
		panic("deliberate panic in readAfter")
	}
	return p.memStore.readAfter(ctx, name, after, limit, maxBytes)
}

// TestCatchUpPanicEndsOnlyItsSubscription: a panic in a subscription's
// catch-up goroutine (here the store's read) is recovered, reported to
// Options.Panicked with its stack, and ends that subscription with a
// *PanicError wrapping ErrInternal; the broker and its other subscriptions
// go on. Without the recover the test binary dies.
func TestCatchUpPanicEndsOnlyItsSubscription(t *testing.T) {
	var (
		mu       sync.Mutex
		reported []string
	)
	opts := Options{Panicked: func(where string, v any, stack []byte) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, where+": "+v.(string)+"\n"+string(stack))
	}}.withDefaults()
	m := NewMemory(opts).(*broker).st.(*memStore)
	b := newBroker(opts, panickyStore{memStore: m, channel: "boom"}, m.hub)
	t.Cleanup(func() { _ = b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	good, err := b.Subscribe(ctx, []string{"fine"}, Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	r, err := b.Publish(ctx, PublishRequest{Channel: "boom", Data: []byte(`1`)})
	if err != nil {
		t.Fatal(err)
	}
	// A cursor makes the subscription read the store: its catch-up panics.
	bad, err := b.Subscribe(ctx, []string{"boom"}, NewCursor(map[string]Position{"boom": {Epoch: r.Message.Epoch}}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Next(ctx); !errors.Is(err, ErrInternal) {
		t.Fatalf("next on the panicked subscription: %v, want ErrInternal", err)
	}
	var pe *PanicError
	if !errors.As(bad.Err(), &pe) || pe.Value != "deliberate panic in readAfter" || !strings.Contains(string(pe.Stack), "readAfter") {
		t.Fatalf("Err() = %#v, want a *PanicError with the value and stack", bad.Err())
	}
	mu.Lock()
	if len(reported) != 1 || !strings.HasPrefix(reported[0], "subscription catch-up: deliberate panic") || !strings.Contains(reported[0], "readAfter") {
		t.Fatalf("Panicked got %q", reported)
	}
	mu.Unlock()
	if bad.CatchingUp() {
		t.Fatal("the ended subscription still reports a catch-up")
	}

	// The other subscription and the broker go on.
	if _, err := b.Publish(ctx, PublishRequest{Channel: "fine", Data: []byte(`2`)}); err != nil {
		t.Fatal(err)
	}
	ev, err := good.Next(ctx)
	if err != nil || ev.Message == nil || string(ev.Message.Data) != "2" {
		t.Fatalf("other subscription: %+v, %v", ev, err)
	}
}
