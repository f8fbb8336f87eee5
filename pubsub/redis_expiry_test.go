package pubsub_test

import (
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
)

// TestRedisExpiredMetadataNewEpoch: when a channel's metadata expires
// (simulated with PEXPIRE, as Redis does at the end of its TTL), the next
// publish starts a new epoch at offset 1 and drops the stale stream; a
// cursor from the old epoch, and a live subscriber, get an epoch_changed
// Reset, never a silent match of old offsets against new history.
func TestRedisExpiredMetadataNewEpoch(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	b := newRedisBroker(t, srv, pubsub.Options{})
	ctx := testCtx(t)
	old := publishN(t, b, "exp", 1, 5)
	live := subscribeRedis(t, b, pubsub.Cursor{}, "exp")

	// Only the metadata expires: the stream left behind is stale.
	if err := admin.PExpire(ctx, key("exp", ":m"), time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the metadata to expire", func() bool {
		n, err := admin.Exists(ctx, key("exp", ":m")).Result()
		return err == nil && n == 0
	})
	fresh := publishN(t, b, "exp", 6, 2)
	if fresh[0].Epoch == old[0].Epoch || fresh[0].Offset != 1 || fresh[1].Offset != 2 {
		t.Fatalf("after expiry: %s/%d, %s/%d; want offsets 1, 2 of a new epoch (old %s)",
			fresh[0].Epoch, fresh[0].Offset, fresh[1].Epoch, fresh[1].Offset, old[0].Epoch)
	}
	if n, err := admin.XLen(ctx, key("exp", ":s")).Result(); err != nil || n != 2 {
		t.Fatalf("stream length %d, %v: want only the 2 new entries", n, err)
	}

	r := expectReset(t, live, pubsub.ResetEpochChanged)
	if r.Position != (pubsub.Position{Epoch: fresh[0].Epoch}) {
		t.Fatalf("live reset to %+v, want the start of epoch %s", r.Position, fresh[0].Epoch)
	}
	expectMessages(t, live, 6, 7)

	// A cursor "ahead" in the old epoch (offset 4 > new top 2) is reset too.
	resumed := subscribeRedis(t, b, pubsub.NewCursor(map[string]pubsub.Position{"exp": old[3].Position()}), "exp")
	expectReset(t, resumed, pubsub.ResetEpochChanged)
	expectMessages(t, resumed, 6, 7)
	expectNothing(t, resumed)

	// Both keys expiring (an idle channel) behaves the same.
	for _, k := range []string{key("exp", ":m"), key("exp", ":s")} {
		if err := admin.PExpire(ctx, k, time.Millisecond).Err(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "both keys to expire", func() bool {
		n, err := admin.Exists(ctx, key("exp", ":m"), key("exp", ":s")).Result()
		return err == nil && n == 0
	})
	if st, err := b.State(ctx, "exp"); err != nil || st.Epoch != "" || st.Top != 0 {
		t.Fatalf("state of an expired channel = %+v, %v", st, err)
	}
	third := publishN(t, b, "exp", 8, 1)
	if third[0].Epoch == fresh[0].Epoch || third[0].Offset != 1 {
		t.Fatalf("after full expiry: %s/%d, want offset 1 of a third epoch", third[0].Epoch, third[0].Offset)
	}
	expectReset(t, live, pubsub.ResetEpochChanged)
	expectMessages(t, live, 8)
}
