package pubsub_test

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
)

// TestRedisResyncRetried: when a node's PUB/SUB connection is back but its
// channel's state cannot be read yet (Redis still loading after a restart;
// here, an ACL that denies the node's user scripts, which its reads are),
// the resync is kept and retried by the control loop: once Redis can be
// read, the subscriber gets what was published while notifications were
// lost, without another publish to reveal the gap.
func TestRedisResyncRetried(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := testCtx(t)
	acl := func(rules ...any) {
		t.Helper()
		if err := admin.Do(ctx, append([]any{"acl", "setuser", "node"}, rules...)...).Err(); err != nil {
			t.Fatalf("ACL SETUSER node %v: %v", rules, err)
		}
	}
	acl("on", ">node-pw", "~*", "&*", "+@all")
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "node", Password: "node-pw"})
	t.Cleanup(func() { _ = client.Close() })
	sub, err := pubsub.NewRedis(ctx, client, pubsub.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	pub := newRedisBroker(t, srv, pubsub.Options{})

	s := subscribeRedis(t, sub, pubsub.Cursor{}, "rr")
	publishN(t, pub, "rr", 1, 1)
	expectMessages(t, s, 1)
	subscribers := func() int64 {
		n, err := admin.PubSubNumSub(ctx, key("rr", "")).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n[key("rr", "")]
	}

	// The node may neither subscribe nor run scripts; its PUB/SUB
	// connection is cut, and message 2 published without a listener.
	acl("-@pubsub", "-@scripting")
	if n, err := admin.ClientKillByFilter(ctx, "USER", "node").Result(); err != nil || n < 1 {
		t.Fatalf("CLIENT KILL USER node = %d, %v", n, err)
	}
	publishN(t, pub, "rr", 2, 1)
	if n := subscribers(); n != 0 {
		t.Fatalf("%d subscribers while the node may not subscribe", n)
	}
	// It may subscribe again, but still not read: the resync after the
	// subscription fails and is kept.
	acl("+@pubsub")
	eventually(t, "the node to subscribe again", func() bool { return subscribers() == 1 })
	eventually(t, "a resync to be pending", func() bool { return pubsub.ResyncPending(sub) })
	expectNothing(t, s)
	// Readable again: a retry delivers message 2, and nothing else.
	acl("+@all")
	expectMessages(t, s, 2)
	eventually(t, "no resync pending", func() bool { return !pubsub.ResyncPending(sub) })
	expectNothing(t, s)
}
