package pubsub_test

import (
	"testing"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
)

// TestRedisOnePubSubConnectionPerNode: a node (broker) holds one PUB/SUB
// connection for all its channels, subscribes each channel once however
// many local subscriptions it has (reference counting), fans a message out
// to all of them locally, and unsubscribes a channel when its last local
// subscription ends.
func TestRedisOnePubSubConnectionPerNode(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := testCtx(t)
	node := newRedisBroker(t, srv, pubsub.Options{})
	numsub := func(ch string) int64 {
		n, err := admin.PubSubNumSub(ctx, key(ch, "")).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n[key(ch, "")]
	}
	var a []*pubsub.Subscription
	for range 3 {
		a = append(a, subscribeRedis(t, node, pubsub.Cursor{}, "rc:a"))
	}
	b1 := subscribeRedis(t, node, pubsub.Cursor{}, "rc:a", "rc:b")
	b2 := subscribeRedis(t, node, pubsub.Cursor{}, "rc:b")
	if n := pubsubClients(t, admin); n != 1 {
		t.Fatalf("%d PUB/SUB connections for one node, want 1", n)
	}
	if na, nb := numsub("rc:a"), numsub("rc:b"); na != 1 || nb != 1 {
		t.Fatalf("NUMSUB rc:a %d, rc:b %d; want each subscribed once", na, nb)
	}

	// One publish reaches every local subscription once.
	publishN(t, node, "rc:a", 1, 1)
	for _, s := range append(a, b1) {
		expectMessages(t, s, 1)
	}
	publishN(t, node, "rc:b", 1, 1)
	for _, s := range []*pubsub.Subscription{b1, b2} {
		expectMessages(t, s, 1)
	}
	for _, s := range a {
		expectNothing(t, s)
	}

	// A second node adds its own connection, not one per subscription.
	other := newRedisBroker(t, srv, pubsub.Options{})
	for range 2 {
		subscribeRedis(t, other, pubsub.Cursor{}, "rc:a")
	}
	if n := pubsubClients(t, admin); n != 2 {
		t.Fatalf("%d PUB/SUB connections for two nodes, want 2", n)
	}
	if n := numsub("rc:a"); n != 2 {
		t.Fatalf("NUMSUB rc:a = %d with two nodes, want 2", n)
	}
	_ = other.Close()
	eventually(t, "the second node to unsubscribe", func() bool { return numsub("rc:a") == 1 })

	// The channel stays subscribed while any local subscription remains.
	a[0].Close()
	a[1].Close()
	b1.Close()
	publishN(t, node, "rc:a", 2, 1)
	expectMessages(t, a[2], 2)
	if n := numsub("rc:a"); n != 1 {
		t.Fatalf("NUMSUB rc:a = %d with one local subscription left, want 1", n)
	}
	a[2].Close()
	eventually(t, "rc:a to be unsubscribed after its last subscription", func() bool { return numsub("rc:a") == 0 })
	if n := numsub("rc:b"); n != 1 {
		t.Fatalf("NUMSUB rc:b = %d, want 1 (b2 still subscribed)", n)
	}
	publishN(t, node, "rc:b", 2, 1)
	expectMessages(t, b2, 2)
	if n := pubsubClients(t, admin); n != 1 {
		t.Fatalf("%d PUB/SUB connections, want still 1", n)
	}
}
