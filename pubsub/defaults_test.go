package pubsub_test

import (
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
)

// TestDefaultRetention: with zero Options both backends retain 1000
// messages per channel (pubsub.DefaultHistorySize); on Redis the channel's
// keys live for the default age (24h) plus the expiry margin and an
// idempotency key for the default window (5 minutes).
func TestDefaultRetention(t *testing.T) {
	if pubsub.DefaultHistorySize != 1000 || pubsub.DefaultHistoryTTL != 24*time.Hour || pubsub.DefaultIdempotencyWindow != 5*time.Minute {
		t.Fatalf("defaults %d / %v / %v, want 1000 / 24h / 5m",
			pubsub.DefaultHistorySize, pubsub.DefaultHistoryTTL, pubsub.DefaultIdempotencyWindow)
	}
	srv := redistest.Start(t)
	for _, be := range []struct {
		name string
		new  func() pubsub.Broker
	}{
		{"memory", func() pubsub.Broker {
			b := pubsub.NewMemory(pubsub.Options{})
			t.Cleanup(func() { _ = b.Close() })
			return b
		}},
		{"redis", func() pubsub.Broker { return newRedisBroker(t, srv, pubsub.Options{}) }},
	} {
		t.Run(be.name, func(t *testing.T) {
			b := be.new()
			ctx := testCtx(t)
			first, err := b.Publish(ctx, pubsub.PublishRequest{Channel: "defaults", Data: numData(1), IdempotencyKey: "once"})
			if err != nil {
				t.Fatal(err)
			}
			publishN(t, b, "defaults", 2, pubsub.DefaultHistorySize)
			st, err := b.State(ctx, "defaults")
			if err != nil {
				t.Fatal(err)
			}
			if st.Top != 1001 || st.First != 2 || st.Retained != 1000 {
				t.Fatalf("state after 1001 publishes = %+v, want top 1001, first 2, retained 1000", st)
			}
			// The key outlives its (trimmed) message: still a duplicate.
			again, err := b.Publish(ctx, pubsub.PublishRequest{Channel: "defaults", Data: numData(2), IdempotencyKey: "once"})
			if err != nil || !again.Duplicate || again.Message.Position() != first.Message.Position() {
				t.Fatalf("repeat with the default window: %+v, %v", again, err)
			}
			if be.name != "redis" {
				return
			}
			admin := srv.Client(t)
			near := func(k string, want time.Duration) {
				t.Helper()
				got, err := admin.PTTL(ctx, k).Result()
				if err != nil || got > want || got < want-time.Minute {
					t.Fatalf("PTTL %s = %v, %v; want about %v", k, got, err, want)
				}
			}
			near(key("defaults", ":m"), 24*time.Hour+time.Minute)
			near(key("defaults", ":s"), 24*time.Hour+time.Minute)
			near(key("defaults", ":i:once"), 5*time.Minute)
		})
	}
}
