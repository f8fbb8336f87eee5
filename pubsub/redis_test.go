package pubsub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/pubsub/pubsubtest"
)

// redisWait bounds every wait in these tests: generous, for a loaded
// machine under -race; a passing test never waits for it.
const redisWait = 20 * time.Second

func TestRedisContract(t *testing.T) {
	// Each test gets its own redis-server, started by its first New.
	var (
		mu      sync.Mutex
		servers = map[*testing.T]*redistest.Server{}
	)
	server := func(t *testing.T) *redistest.Server {
		mu.Lock()
		defer mu.Unlock()
		if srv := servers[t]; srv != nil {
			return srv
		}
		srv := redistest.Start(t)
		servers[t] = srv
		t.Cleanup(func() {
			mu.Lock()
			delete(servers, t)
			mu.Unlock()
		})
		return srv
	}
	pubsubtest.Run(t, pubsubtest.Harness{
		New: func(t *testing.T, opts pubsub.Options) pubsub.Broker {
			return newRedisBroker(t, server(t), opts)
		},
		SharedStore: true,
		LoseHistory: func(t *testing.T) { server(t).FlushAll(t) },
	})
}

// newRedisBroker returns a broker with a client of its own (a node), both
// closed when the test ends.
func newRedisBroker(t testing.TB, srv *redistest.Server, opts pubsub.Options) pubsub.Broker {
	t.Helper()
	client := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), redisWait)
	defer cancel()
	b, err := pubsub.NewRedis(ctx, client, pubsub.RedisOptions{Options: opts})
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*redisWait)
	t.Cleanup(cancel)
	return ctx
}

func numData(i int) json.RawMessage { return json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)) }

func numOf(t testing.TB, m *pubsub.Message) int {
	t.Helper()
	var v struct{ N int }
	if err := json.Unmarshal(m.Data, &v); err != nil {
		t.Fatalf("message data %s: %v", m.Data, err)
	}
	return v.N
}

// publishN publishes {"n":from} .. {"n":from+n-1} to channel.
func publishN(t testing.TB, b pubsub.Broker, channel string, from, n int) []pubsub.Message {
	t.Helper()
	out := make([]pubsub.Message, 0, n)
	for i := from; i < from+n; i++ {
		r, err := b.Publish(testCtx(t), pubsub.PublishRequest{Channel: channel, Data: numData(i)})
		if err != nil {
			t.Fatalf("publish %s #%d: %v", channel, i, err)
		}
		out = append(out, r.Message)
	}
	return out
}

func subscribeRedis(t testing.TB, b pubsub.Broker, cursor pubsub.Cursor, channels ...string) *pubsub.Subscription {
	t.Helper()
	s, err := b.Subscribe(testCtx(t), channels, cursor)
	if err != nil {
		t.Fatalf("subscribe %v: %v", channels, err)
	}
	t.Cleanup(s.Close)
	return s
}

func nextEvent(t testing.TB, s *pubsub.Subscription) pubsub.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), redisWait)
	defer cancel()
	ev, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("next event: %v", err)
	}
	return ev
}

// expectMessages reads messages carrying the numbers want, in order, and
// fails on anything else (a Reset, a duplicate, a gap).
func expectMessages(t testing.TB, s *pubsub.Subscription, want ...int) []pubsub.Event {
	t.Helper()
	out := make([]pubsub.Event, 0, len(want))
	for _, w := range want {
		ev := nextEvent(t, s)
		if ev.Reset != nil {
			t.Fatalf("unexpected reset %+v after %d messages", *ev.Reset, len(out))
		}
		if n := numOf(t, ev.Message); n != w {
			t.Fatalf("got message %d (offset %d), want %d", n, ev.Message.Offset, w)
		}
		out = append(out, ev)
	}
	return out
}

func expectReset(t testing.TB, s *pubsub.Subscription, reason pubsub.ResetReason) *pubsub.Reset {
	t.Helper()
	ev := nextEvent(t, s)
	if ev.Reset == nil || ev.Reset.Reason != reason {
		t.Fatalf("event = %+v, want a %s reset", ev, reason)
	}
	return ev.Reset
}

func expectNothing(t testing.TB, s *pubsub.Subscription) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if ev, err := s.Next(ctx); err == nil {
		t.Fatalf("unexpected event %+v", ev)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(redisWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// seqFrom returns from..to.
func seqFrom(from, to int) []int {
	out := make([]int, 0, to-from+1)
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func key(channel, suffix string) string {
	return pubsub.DefaultRedisPrefix + "{" + channel + "}" + suffix
}

// collect reads n events from s in a goroutine; the result is every
// message number in arrival order, or an error on a Reset.
func collect(s *pubsub.Subscription, n int) <-chan []int {
	out := make(chan []int, 1)
	go func() {
		got := make([]int, 0, n)
		for len(got) < n {
			ctx, cancel := context.WithTimeout(context.Background(), redisWait)
			ev, err := s.Next(ctx)
			cancel()
			if err != nil || ev.Reset != nil {
				break
			}
			var v struct{ N int }
			_ = json.Unmarshal(ev.Message.Data, &v)
			got = append(got, v.N)
		}
		out <- got
	}()
	return out
}

func sameInts(a, b []int) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// TestRedisPubSubConnectionLoss kills the subscriber node's PUB/SUB
// connection while another node publishes: the subscriber still gets every
// message once, in order, including those published while it was
// reconnecting and after the last notification it received.
func TestRedisPubSubConnectionLoss(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	sub := newRedisBroker(t, srv, pubsub.Options{HistorySize: 5000})
	pub := newRedisBroker(t, srv, pubsub.Options{HistorySize: 5000})
	ctx := testCtx(t)
	s := subscribeRedis(t, sub, pubsub.Cursor{}, "loss")
	const total = 600
	done := collect(s, total+1)
	subscribed := func() bool {
		n, err := admin.PubSubNumSub(ctx, key("loss", "")).Result()
		return err == nil && n[key("loss", "")] == 1
	}
	kill := func() {
		t.Helper()
		// Only once the previous connection is back, so each kill hits a
		// subscribed connection.
		eventually(t, "the PUB/SUB connection to be subscribed", subscribed)
		n, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
		if err != nil || n < 1 {
			t.Fatalf("CLIENT KILL TYPE pubsub = %d, %v", n, err)
		}
	}
	for i := 1; i <= total; i++ {
		if i%150 == 100 { // before 100, 250, 400 and 550
			kill()
		}
		publishN(t, pub, "loss", i, 1)
	}
	// One more right after a kill, with nothing after it: no later
	// notification reveals the gap, only the resync after reconnecting
	// delivers it.
	kill()
	publishN(t, pub, "loss", total+1, 1)
	if got := <-done; !sameInts(got, seqFrom(1, total+1)) {
		t.Fatalf("subscriber got %d messages, want 1..%d in order: %v", len(got), total+1, got)
	}
	expectNothing(t, s)
}

// TestRedisRestart stops redis-server for a few seconds under two nodes
// with connected subscribers, while a publisher keeps trying: every publish
// during the outage fails promptly with ErrUnavailable, Ready and State
// report it, and after the restart (data kept by the append-only file) live
// delivery resumes without subscribing again: every subscriber receives
// every publish that succeeded, in order, without duplicates, in the same
// epoch, and history agrees.
func TestRedisRestart(t *testing.T) {
	const outage = 3 * time.Second
	srv := redistest.Start(t)
	a := newURLBroker(t, srv.URL(), pubsub.RedisOptions{})
	b := newURLBroker(t, srv.URL(), pubsub.RedisOptions{})
	nodes := []pubsub.Broker{a, b}
	subs := []*pubsub.Subscription{
		subscribeRedis(t, a, pubsub.Cursor{}, "rs"),
		subscribeRedis(t, a, pubsub.Cursor{}, "rs", "other"),
		subscribeRedis(t, b, pubsub.Cursor{}, "rs"),
	}
	before := publishN(t, a, "rs", 1, 5)
	for _, s := range subs {
		expectMessages(t, s, 1, 2, 3, 4, 5)
	}

	// The publisher numbers every attempt; a failed one may still have been
	// stored (its reply lost), so subscribers may see it too.
	var (
		mu     sync.Mutex
		acked  []int
		failed int
	)
	stop := make(chan struct{})
	stopped := make(chan error, 1)
	go func() {
		for n := 6; ; n++ {
			select {
			case <-stop:
				stopped <- nil
				return
			case <-time.After(20 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), redisWait)
			_, err := nodes[n%2].Publish(ctx, pubsub.PublishRequest{Channel: "rs", Data: numData(n)})
			cancel()
			mu.Lock()
			if err == nil {
				acked = append(acked, n)
			} else {
				failed++
			}
			mu.Unlock()
			if err != nil && !errors.Is(err, pubsub.ErrUnavailable) {
				stopped <- fmt.Errorf("publish #%d: %v, want ErrUnavailable", n, err)
				return
			}
			// Promptly: a refused connection fails the publish, rather
			// than the caller's deadline or PublishTimeout (10 s).
			var ne net.Error
			if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
				stopped <- fmt.Errorf("publish #%d timed out: %v, want it to fail as Redis refuses it", n, err)
				return
			}
		}
	}()
	counts := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(acked), failed
	}
	eventually(t, "publishes before the outage", func() bool { n, _ := counts(); return n >= 10 })

	srv.Stop(t)
	down := time.Now()
	for _, node := range nodes {
		if err := node.Ready(testCtx(t)); !errors.Is(err, pubsub.ErrUnavailable) {
			t.Fatalf("Ready while Redis is down: %v, want ErrUnavailable", err)
		}
	}
	if _, err := a.State(testCtx(t), "rs"); !errors.Is(err, pubsub.ErrUnavailable) {
		t.Fatalf("State while Redis is down: %v, want ErrUnavailable", err)
	}
	ackedBefore, _ := counts()
	time.Sleep(time.Until(down.Add(outage))) // the outage itself
	srv.Start(t)
	ackedDuring, failedDuring := counts()
	eventually(t, "publishes after the restart", func() bool { n, _ := counts(); return n >= ackedDuring+10 })
	close(stop)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if failedDuring < 10 || ackedDuring > ackedBefore+1 {
		t.Fatalf("during the outage %d publishes failed and %d succeeded: want the publisher to keep failing", failedDuring, ackedDuring-ackedBefore)
	}
	// Readiness comes back with Redis: each node's next ping after its
	// pool has reconnected (a ping may still meet a connection the pool
	// dialled while the server was down).
	for i, node := range nodes {
		eventually(t, fmt.Sprintf("node %d ready after the restart", i), func() bool { return node.Ready(testCtx(t)) == nil })
	}

	mu.Lock()
	last := acked[len(acked)-1]
	mu.Unlock()
	var seen []int
	for i, s := range subs {
		got := []int{1, 2, 3, 4, 5}
		for got[len(got)-1] != last {
			ev := nextEvent(t, s)
			if ev.Reset != nil {
				t.Fatalf("subscriber %d: unexpected reset %+v", i, *ev.Reset)
			}
			m := ev.Message
			if m.Epoch != before[0].Epoch || m.Offset != uint64(len(got)+1) {
				t.Fatalf("subscriber %d: message %d at %s/%d after %d messages", i, numOf(t, m), m.Epoch, m.Offset, len(got))
			}
			got = append(got, numOf(t, m))
		}
		if seen == nil {
			seen = got
		} else if !sameInts(got, seen) {
			t.Fatalf("subscriber %d got %v, subscriber 0 got %v", i, got, seen)
		}
	}
	expectNothing(t, subs[0])
	// In order without duplicates (offsets are contiguous and numbers grow),
	// and nothing acknowledged is missing.
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] {
			t.Fatalf("subscribers got %v: out of order", seen)
		}
	}
	for _, n := range acked {
		if !slices.Contains(seen, n) {
			t.Fatalf("acknowledged publish %d never reached the subscribers (got %v)", n, seen)
		}
	}
	p, err := b.History(testCtx(t), "rs", pubsub.HistoryRequest{Limit: pubsub.MaxHistoryLimit})
	if err != nil {
		t.Fatal(err)
	}
	var nums []int
	for i := range p.Messages {
		nums = append(nums, numOf(t, &p.Messages[i]))
	}
	if !sameInts(nums, seen) || p.State.Epoch != before[0].Epoch {
		t.Fatalf("history after the restart = %v in epoch %s, subscribers saw %v", nums, p.State.Epoch, seen)
	}
	t.Logf("%d publishes acknowledged, %d failed during the %v outage", len(acked), failedDuring, outage)
}

// TestRedisFencingRestart: with fencing on, a restarted server (a new
// replication ID, as after a failover) starts a new epoch at the next
// publish, keeping the retained messages renumbered from 1; a subscriber
// gets an epoch_changed Reset, then what is retained and the new message.
func TestRedisFencingRestart(t *testing.T) {
	srv := redistest.Start(t)
	b := newURLBroker(t, srv.URL(), pubsub.RedisOptions{Options: pubsub.Options{HistorySize: 3}, Fencing: pubsub.FencingOn})
	s := subscribeRedis(t, b, pubsub.Cursor{}, "fenced")
	old := publishN(t, b, "fenced", 1, 5) // retained: 3, 4, 5
	expectMessages(t, s, 1, 2, 3, 4, 5)
	again := publishN(t, b, "fenced", 6, 1)
	if again[0].Epoch != old[0].Epoch || again[0].Offset != 6 {
		t.Fatalf("publish on the same server: %s/%d, want offset 6 of epoch %s", again[0].Epoch, again[0].Offset, old[0].Epoch)
	}
	expectMessages(t, s, 6)

	srv.Stop(t)
	srv.Start(t)
	var fresh pubsub.Message
	eventually(t, "a publish after the restart", func() bool {
		r, err := b.Publish(testCtx(t), pubsub.PublishRequest{Channel: "fenced", Data: numData(7), IdempotencyKey: "seven"})
		fresh = r.Message
		return err == nil
	})
	if fresh.Epoch == old[0].Epoch || fresh.Offset != 4 {
		t.Fatalf("first publish after the restart: %s/%d, want offset 4 of a new epoch", fresh.Epoch, fresh.Offset)
	}
	// Kept: 4, 5, 6 as 1, 2, 3; then 7 as 4, and retention (3) drops 4.
	r := expectReset(t, s, pubsub.ResetEpochChanged)
	if r.Position != (pubsub.Position{Epoch: fresh.Epoch, Offset: 1}) {
		t.Fatalf("reset to %+v, want offset 1 of epoch %s", r.Position, fresh.Epoch)
	}
	evs := expectMessages(t, s, 5, 6, 7)
	for i, ev := range evs {
		if ev.Message.Epoch != fresh.Epoch || ev.Message.Offset != uint64(i+2) {
			t.Fatalf("message %d after the reset at %s/%d", i, ev.Message.Epoch, ev.Message.Offset)
		}
	}
	expectNothing(t, s)
	// The next publish continues the new epoch.
	if next := publishN(t, b, "fenced", 8, 1); next[0].Epoch != fresh.Epoch || next[0].Offset != 5 {
		t.Fatalf("second publish after the restart: %s/%d", next[0].Epoch, next[0].Offset)
	}
}

// TestRedisFlushAll: a FLUSHALL starts a new epoch; a live subscriber and a
// resume with an old cursor both get an epoch_changed Reset, then the new
// messages.
func TestRedisFlushAll(t *testing.T) {
	srv := redistest.Start(t)
	b := newRedisBroker(t, srv, pubsub.Options{})
	s := subscribeRedis(t, b, pubsub.Cursor{}, "fl")
	old := publishN(t, b, "fl", 1, 3)
	evs := expectMessages(t, s, 1, 2, 3)
	cursor := evs[1].Cursor // at message 2 of the old epoch

	srv.FlushAll(t)
	fresh := publishN(t, b, "fl", 4, 3)
	if fresh[0].Epoch == old[0].Epoch || fresh[0].Offset != 1 {
		t.Fatalf("first message after FLUSHALL = %+v, want offset 1 in a new epoch", fresh[0])
	}
	r := expectReset(t, s, pubsub.ResetEpochChanged)
	if r.Position != (pubsub.Position{Epoch: fresh[0].Epoch}) {
		t.Fatalf("reset position %+v, want the start of epoch %s", r.Position, fresh[0].Epoch)
	}
	expectMessages(t, s, 4, 5, 6)

	s2 := subscribeRedis(t, b, cursor, "fl")
	expectReset(t, s2, pubsub.ResetEpochChanged)
	expectMessages(t, s2, 4, 5, 6)
	expectNothing(t, s2)

	_, err := b.History(testCtx(t), "fl", pubsub.HistoryRequest{After: &pubsub.Position{Epoch: old[0].Epoch, Offset: 1}, Limit: 10})
	if !errors.Is(err, pubsub.ErrEpochMismatch) {
		t.Fatalf("history from the old epoch: %v, want ErrEpochMismatch", err)
	}
}

// TestRedisResyncNewEpoch: while a node's PUB/SUB connection is down, the
// channel's history is lost and a new epoch begins, and nothing is
// published after that. When the connection returns, the node's resync
// finds the new epoch and its subscriber gets the Reset and the new
// messages at once, not at the channel's next publish.
func TestRedisResyncNewEpoch(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := testCtx(t)
	acl := func(rules ...any) {
		t.Helper()
		if err := admin.Do(ctx, append([]any{"ACL", "SETUSER", "node"}, rules...)...).Err(); err != nil {
			t.Fatalf("ACL SETUSER node %v: %v", rules, err)
		}
	}
	acl("on", ">pw", "~*", "&*", "+@all")
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "node", Password: "pw"})
	t.Cleanup(func() { _ = client.Close() })
	sub, err := pubsub.NewRedis(ctx, client, pubsub.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	pub := newRedisBroker(t, srv, pubsub.Options{})
	s := subscribeRedis(t, sub, pubsub.Cursor{}, "ep")
	publishN(t, pub, "ep", 1, 2)
	expectMessages(t, s, 1, 2)

	// Without channel permissions the node's PUB/SUB connection is closed
	// and it cannot subscribe again until they are back.
	acl("resetchannels")
	eventually(t, "the node to be unsubscribed", func() bool {
		n, err := admin.PubSubNumSub(ctx, key("ep", "")).Result()
		return err == nil && n[key("ep", "")] == 0
	})
	srv.FlushAll(t)
	fresh := publishN(t, pub, "ep", 3, 2)
	acl("&*")
	r := expectReset(t, s, pubsub.ResetEpochChanged)
	if r.Position != (pubsub.Position{Epoch: fresh[0].Epoch}) {
		t.Fatalf("reset to %+v, want the start of epoch %s", r.Position, fresh[0].Epoch)
	}
	expectMessages(t, s, 3, 4)
	expectNothing(t, s)
}

// TestRedisLostNotification appends a message by hand, as if its PUBLISH
// had been lost: the next notification skips an offset and the node fills
// the gap from the stream, in order.
func TestRedisLostNotification(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	b := newRedisBroker(t, srv, pubsub.Options{})
	s := subscribeRedis(t, b, pubsub.Cursor{}, "gap")
	ctx := testCtx(t)
	publishN(t, b, "gap", 1, 1)
	expectMessages(t, s, 1)

	top, err := admin.HIncrBy(ctx, key("gap", ":m"), "top", 1).Result()
	if err != nil || top != 2 {
		t.Fatalf("HINCRBY top = %d, %v", top, err)
	}
	err = admin.XAdd(ctx, &redis.XAddArgs{
		Stream: key("gap", ":s"),
		ID:     "2-0",
		Values: []any{"t", strconv.FormatInt(time.Now().UnixMilli(), 10), "e", "", "d", `{"n":2}`},
	}).Err()
	if err != nil {
		t.Fatal(err)
	}
	publishN(t, b, "gap", 3, 1)
	expectMessages(t, s, 2, 3)
	expectNothing(t, s)
}

// TestRedisIdempotencyAcrossNodes: an idempotency key holds across nodes,
// also under concurrent retries, and after its message was trimmed.
func TestRedisIdempotencyAcrossNodes(t *testing.T) {
	srv := redistest.Start(t)
	a := newRedisBroker(t, srv, pubsub.Options{HistorySize: 2})
	b := newRedisBroker(t, srv, pubsub.Options{HistorySize: 2})
	ctx := testCtx(t)

	first, err := a.Publish(ctx, pubsub.PublishRequest{Channel: "idem", Event: "made", Data: numData(1), IdempotencyKey: "k"})
	if err != nil || first.Duplicate {
		t.Fatalf("first publish: %+v, %v", first, err)
	}
	again, err := b.Publish(ctx, pubsub.PublishRequest{Channel: "idem", Event: "other", Data: numData(2), IdempotencyKey: "k"})
	if err != nil || !again.Duplicate {
		t.Fatalf("repeat on the other node: %+v, %v", again, err)
	}
	if again.Message.Position() != first.Message.Position() || again.Message.Event != "made" ||
		string(again.Message.Data) != `{"n":1}` || !again.Message.Time.Equal(first.Message.Time) {
		t.Fatalf("repeat returned %+v, want the original %+v", again.Message, first.Message)
	}

	// Concurrent first attempts on both nodes: exactly one appends.
	const tries = 16
	var wg sync.WaitGroup
	var appended atomic.Int32
	results := make([]pubsub.PublishResult, tries)
	errs := make([]error, tries)
	for i := range tries {
		node := a
		if i%2 == 1 {
			node = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = node.Publish(ctx, pubsub.PublishRequest{Channel: "idem", Data: numData(100 + i), IdempotencyKey: "race"})
			if errs[i] == nil && !results[i].Duplicate {
				appended.Add(1)
			}
		}()
	}
	wg.Wait()
	for i := range tries {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if results[i].Message.Position() != results[0].Message.Position() {
			t.Fatalf("attempt %d got %+v, attempt 0 %+v", i, results[i].Message.Position(), results[0].Message.Position())
		}
	}
	if n := appended.Load(); n != 1 {
		t.Fatalf("%d concurrent attempts appended, want 1", n)
	}
	st, err := b.State(ctx, "idem")
	if err != nil || st.Top != 2 {
		t.Fatalf("state = %+v, %v, want top 2", st, err)
	}

	// Once the original is trimmed, a repeat still appends nothing and
	// reports the original position.
	publishN(t, a, "idem", 200, 2)
	trimmed, err := b.Publish(ctx, pubsub.PublishRequest{Channel: "idem", Event: "made", Data: numData(1), IdempotencyKey: "k"})
	if err != nil || !trimmed.Duplicate || trimmed.Message.Position() != first.Message.Position() {
		t.Fatalf("repeat after trimming: %+v, %v", trimmed, err)
	}
	if st, _ := a.State(ctx, "idem"); st.Top != 4 {
		t.Fatalf("repeat after trimming appended: %+v", st)
	}
}

// TestRedisAgeTrim: with a short ttl, old messages leave history (filtered
// at once, trimmed from the stream by the next publish), keys expire with
// the ttl, and a cursor before them yields an expired Reset.
func TestRedisAgeTrim(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	const ttl = 300 * time.Millisecond
	b := newRedisBroker(t, srv, pubsub.Options{HistoryTTL: ttl})
	ctx := testCtx(t)
	old := publishN(t, b, "age", 1, 3)
	eventually(t, "the messages to age out", func() bool {
		st, err := b.State(ctx, "age")
		return err == nil && st.Retained == 0
	})
	st, err := b.State(ctx, "age")
	if err != nil || st.Top != 3 || st.First != 4 || !st.LastTime.IsZero() {
		t.Fatalf("state after ageing = %+v, %v", st, err)
	}
	if p, err := b.History(ctx, "age", pubsub.HistoryRequest{Limit: 10}); err != nil || len(p.Messages) != 0 {
		t.Fatalf("history after ageing = %+v, %v", p, err)
	}

	publishN(t, b, "age", 4, 1)
	if n, err := admin.XLen(ctx, key("age", ":s")).Result(); err != nil || n != 1 {
		t.Fatalf("stream length after a publish = %d, %v; want the old entries trimmed", n, err)
	}
	for _, k := range []string{key("age", ":m"), key("age", ":s")} {
		pttl, err := admin.PTTL(ctx, k).Result()
		if err != nil || pttl <= time.Minute-time.Second || pttl > ttl+time.Minute {
			t.Fatalf("PTTL %s = %v, %v; want about ttl + 1 minute", k, pttl, err)
		}
	}

	s := subscribeRedis(t, b, pubsub.NewCursor(map[string]pubsub.Position{"age": old[0].Position()}), "age")
	r := expectReset(t, s, pubsub.ResetExpired)
	if r.Position != (pubsub.Position{Epoch: old[0].Epoch, Offset: 3}) {
		t.Fatalf("reset position = %+v, want offset 3", r.Position)
	}
	expectMessages(t, s, 4)
}

// TestRedisUnavailableAtStart: NewRedis reports an unreachable server.
func TestRedisUnavailableAtStart(t *testing.T) {
	srv := redistest.Start(t)
	addr := srv.Addr()
	srv.Stop(t)
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), redisWait)
	defer cancel()
	if _, err := pubsub.NewRedis(ctx, client, pubsub.RedisOptions{}); !errors.Is(err, pubsub.ErrUnavailable) {
		t.Fatalf("NewRedis without a server: %v, want ErrUnavailable", err)
	}
}

// TestRedisKeyLayout checks the key layout Cluster relies on:
// a channel's keys and its PUB/SUB channel share one hash tag.
func TestRedisKeyLayout(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := testCtx(t)
	client := srv.Client(t)
	b, err := pubsub.NewRedis(ctx, client, pubsub.RedisOptions{Prefix: "app:"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if _, err := b.Publish(ctx, pubsub.PublishRequest{Channel: "orders:1", Data: numData(1), IdempotencyKey: "x"}); err != nil {
		t.Fatal(err)
	}
	keys, err := admin.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"app:{orders:1}:m": true, "app:{orders:1}:s": true, "app:{orders:1}:i:x": true}
	if len(keys) != len(want) {
		t.Fatalf("keys = %v, want %v", keys, want)
	}
	for _, k := range keys {
		if !want[k] {
			t.Fatalf("unexpected key %q (keys %v)", k, keys)
		}
	}
	if _, err := pubsub.NewRedis(ctx, client, pubsub.RedisOptions{Prefix: "a{b}:"}); err == nil {
		t.Fatal("NewRedis accepted a prefix with braces")
	}
}

// TestRedisCloseLeaksNothing: after subscription churn, closing the broker
// (and the client, which its owner closes) leaves no goroutine behind.
func TestRedisCloseLeaksNothing(t *testing.T) {
	srv := redistest.Start(t)
	ctx := testCtx(t)
	run := func(channels int) {
		client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer client.Close()
		b, err := pubsub.NewRedis(ctx, client, pubsub.RedisOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		for i := range channels {
			ch := "leak:" + strconv.Itoa(i%7)
			s, err := b.Subscribe(ctx, []string{ch}, pubsub.Cursor{})
			if err != nil {
				t.Fatal(err)
			}
			publishN(t, b, ch, i, 1)
			if i%2 == 0 {
				expectMessages(t, s, i)
				s.Close()
			}
		}
	}
	run(1) // go-redis starts a few process-wide goroutines once
	before := runtime.NumGoroutine()
	run(40)
	eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// BenchmarkRedis runs the shared broker benchmarks on a real redis-server
// (without AOF fsync, as a production cache-grade setup would run).
func BenchmarkRedis(b *testing.B) {
	srv := redistest.Start(b, redistest.WithArgs("--appendonly", "no"))
	pubsubtest.Bench(b, func(b *testing.B, opts pubsub.Options) pubsub.Broker {
		return newRedisBroker(b, srv, opts)
	})
}

// TestRedisKeepsWatchedChannels: a quiet channel with subscribers keeps its
// metadata (and so its epoch) beyond the expiry a publish set.
func TestRedisKeepsWatchedChannels(t *testing.T) {
	t.Cleanup(pubsub.SetKeepWatchedEvery(100 * time.Millisecond))
	srv := redistest.Start(t)
	b := newRedisBroker(t, srv, pubsub.Options{})
	publishN(t, b, "quiet", 1, 1)
	subscribeRedis(t, b, pubsub.Cursor{}, "quiet")
	rc := srv.Client(t)
	ctx := testCtx(t)
	// As if the last publish were long ago: the metadata is about to expire.
	if err := rc.PExpire(ctx, key("quiet", ":m"), 3*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the watched channel's metadata to be kept", func() bool {
		return rc.PTTL(ctx, key("quiet", ":m")).Val() > time.Hour
	})
	// An unwatched channel is left to expire.
	publishN(t, b, "loud", 1, 1)
	if err := rc.PExpire(ctx, key("loud", ":m"), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // more than one keep round
	if ttl := rc.PTTL(ctx, key("loud", ":m")).Val(); ttl > time.Minute {
		t.Fatalf("unwatched channel's metadata kept: ttl %v", ttl)
	}
}

// TestRedisPublishTimeout: with a client that heeds contexts (as
// ParseRedisURL makes them), a publish that Redis does not answer fails
// with ErrUnavailable once Options.PublishTimeout has passed, whatever the
// caller's context allows, for the callers that send the pipelines and for
// those whose scripts wait in them; Redis answering again, publishes
// succeed.
func TestRedisPublishTimeout(t *testing.T) {
	srv := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = client.Close() })
	ctx := context.Background() // no deadline of its own
	b, err := pubsub.NewRedis(testCtx(t), client, pubsub.RedisOptions{Options: pubsub.Options{PublishTimeout: 300 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	// Redis holds writes (the publish script) for longer than the test
	// waits, so a publish that returns failed by PublishTimeout, not by an
	// answer; WRITE mode lets CLIENT UNPAUSE through at once.
	if err := srv.Client(t).Do(ctx, "client", "pause", (3 * redisWait).Milliseconds(), "write").Err(); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() {
			_, err := b.Publish(ctx, pubsub.PublishRequest{Channel: "paused", Data: numData(1)})
			errs <- err
		}()
	}
	for range cap(errs) {
		select {
		case err := <-errs:
			if !errors.Is(err, pubsub.ErrUnavailable) {
				t.Fatalf("a publish Redis did not answer: %v, want ErrUnavailable", err)
			}
		case <-time.After(redisWait):
			t.Fatalf("a publish Redis did not answer still waits after %v (PublishTimeout 300ms)", redisWait)
		}
	}
	if err := srv.Client(t).Do(ctx, "client", "unpause").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "publishes to succeed again", func() bool {
		_, err := b.Publish(ctx, pubsub.PublishRequest{Channel: "paused", Data: numData(2)})
		return err == nil
	})
}

// TestRedisPublishExtendsKeys: publishes extend the channel's keys' lives
// to the ttl and a minute, at most once a second: a publish within a
// second of the last extension leaves them, the next one after extends
// them again.
//
// The oracle is the script's own clock, not the test's: each publish
// returns the time it ran at (Message.Time, Redis's TIME in ms), so which
// publish must extend follows from those times however slowly the test
// runs, and every publish is checked.
func TestRedisPublishExtendsKeys(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	const ttl = time.Hour
	b := newRedisBroker(t, srv, pubsub.Options{HistoryTTL: ttl})
	ctx := testCtx(t)
	keys := []string{key("life", ":m"), key("life", ":s")}
	shorten := func() {
		for _, k := range keys {
			if err := admin.PExpire(ctx, k, 30*time.Second).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(what string, extended bool) {
		t.Helper()
		for _, k := range keys {
			pttl, err := admin.PTTL(ctx, k).Result()
			if err != nil || extended != (pttl > 30*time.Second) {
				t.Fatalf("%s: PTTL %s = %v, %v; extended: %v", what, k, pttl, err, extended)
			}
		}
	}
	last := publishN(t, b, "life", 1, 1)[0].Time // a new channel: extends
	check("the first publish", true)
	// Publishes every 100 ms until one was within a second of the last
	// extension (left the keys) and a later one a second or more after it
	// (extended them again).
	var kept, again bool
	deadline := time.Now().Add(redisWait)
	for i := 2; !kept || !again; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d publishes: one within a second of an extension: %v, one extending after it: %v", i-1, kept, again)
		}
		shorten()
		at := publishN(t, b, "life", i, 1)[0].Time
		since := at.Sub(last)
		extends := since >= time.Second || since < 0 // < 0: Redis's clock went back
		check(fmt.Sprintf("publish %d, %v after the last extension", i, since), extends)
		if extends {
			last, again = at, kept
		} else {
			kept = true
		}
		time.Sleep(100 * time.Millisecond) // paces the publishes over the second, synchronises nothing
	}
}
