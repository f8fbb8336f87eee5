package pubsub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/pubsub/pubsubtest"
)

// newURLBroker returns a broker on a client of its own made from url by
// ParseRedisURL, as pushgate makes it; both are closed when the test ends.
func newURLBroker(t testing.TB, url string, opts pubsub.RedisOptions) pubsub.Broker {
	t.Helper()
	o, err := pubsub.ParseRedisURL(url)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewUniversalClient(o)
	t.Cleanup(func() { _ = client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), redisWait)
	defer cancel()
	b, err := pubsub.NewRedis(ctx, client, opts)
	if err != nil {
		t.Fatalf("NewRedis(%s): %v", url, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// TestRedisClusterContract runs the contract suite on a 3-master cluster:
// every broker is a node with a cluster client of its own. The subtests
// share the cluster; each has a key prefix of its own.
func TestRedisClusterContract(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	var (
		mu       sync.Mutex
		prefixes = map[*testing.T]string{}
	)
	prefix := func(t *testing.T) string {
		mu.Lock()
		defer mu.Unlock()
		p, ok := prefixes[t]
		if !ok {
			p = "c" + strconv.Itoa(len(prefixes)) + ":"
			prefixes[t] = p
		}
		return p
	}
	pubsubtest.Run(t, pubsubtest.Harness{
		New: func(t *testing.T, opts pubsub.Options) pubsub.Broker {
			return newURLBroker(t, cl.URL(), pubsub.RedisOptions{Options: opts, Prefix: prefix(t)})
		},
		SharedStore: true,
		LoseHistory: func(t *testing.T) { cl.FlushAll(t) },
	})
}

// TestRedisClusterManyChannels: 200 channels spread over the three
// masters, subscribers on two nodes, publishers on both: every subscriber
// gets every message of every channel once, in offset order, and the
// notifications of each channel travel on its own shard (each master
// carries shard channels, on one PUB/SUB connection per node).
func TestRedisClusterManyChannels(t *testing.T) {
	const channels, perChannel, perSub = 200, 8, 25
	cl := redistest.StartCluster(t, 3)
	nodes := []pubsub.Broker{
		newURLBroker(t, cl.URL(), pubsub.RedisOptions{}),
		newURLBroker(t, cl.URL(), pubsub.RedisOptions{}),
	}
	ctx := testCtx(t)
	names := make([]string, channels)
	onMaster := map[string]int{}
	for i := range names {
		names[i] = "many:" + strconv.Itoa(i)
		onMaster[cl.MasterOf(t, key(names[i], "")).Addr()]++
	}
	if len(onMaster) != 3 {
		t.Fatalf("channels are served by %d masters, want 3: %v", len(onMaster), onMaster)
	}

	type result struct {
		got map[string][]pubsub.Message
		err error
	}
	var subs []*pubsub.Subscription
	for _, b := range nodes {
		for i := 0; i < channels; i += perSub {
			subs = append(subs, subscribeRedis(t, b, pubsub.Cursor{}, names[i:i+perSub]...))
		}
	}
	results := make(chan result, len(subs))
	for _, s := range subs {
		go func() {
			r := result{got: map[string][]pubsub.Message{}}
			for n := 0; n < perSub*perChannel; n++ {
				ev, err := s.Next(ctx)
				if err != nil {
					r.err = err
					break
				}
				if ev.Reset != nil {
					r.err = fmt.Errorf("unexpected reset %+v", *ev.Reset)
					break
				}
				r.got[ev.Message.Channel] = append(r.got[ev.Message.Channel], *ev.Message)
			}
			results <- r
		}()
	}

	// Four publishers, each sending every channel two messages per round
	// through alternating nodes; what they were told is the truth to check.
	var (
		pmu  sync.Mutex
		sent = map[string]map[uint64]string{}
		wg   sync.WaitGroup
	)
	errs := make(chan error, 4)
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; round < perChannel/4; round++ {
				for i, ch := range names {
					data := fmt.Sprintf(`{"p":%d,"r":%d}`, p, round)
					r, err := nodes[(i+p)%2].Publish(ctx, pubsub.PublishRequest{Channel: ch, Data: json.RawMessage(data)})
					if err != nil {
						errs <- err
						return
					}
					pmu.Lock()
					if sent[ch] == nil {
						sent[ch] = map[uint64]string{}
					}
					sent[ch][r.Message.Offset] = data
					pmu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for range subs {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		for ch, msgs := range r.got {
			for i, m := range msgs {
				if m.Offset != uint64(i+1) || string(m.Data) != sent[ch][m.Offset] {
					t.Fatalf("channel %s: message %d is offset %d %s, want offset %d %s", ch, i, m.Offset, m.Data, i+1, sent[ch][uint64(i+1)])
				}
			}
		}
	}

	// Every master carries shard channels, each on one connection per node.
	for _, m := range cl.Masters {
		rc := m.Client(t)
		chans, err := rc.PubSubShardChannels(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(chans) != onMaster[m.Addr()] {
			t.Fatalf("master %s has %d shard channels subscribed, want %d", m.Addr(), len(chans), onMaster[m.Addr()])
		}
		if n := pubsubClients(t, rc); n != len(nodes) {
			t.Fatalf("master %s has %d PUB/SUB connections, want one per node (%d)", m.Addr(), n, len(nodes))
		}
	}
}

// pubsubClients counts the PUB/SUB connections of a server.
func pubsubClients(t testing.TB, rc *redis.Client) int {
	t.Helper()
	list, err := rc.ClientList(testCtx(t)).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(list, "\n") {
		if slices.Contains(strings.Fields(line), "flags=P") {
			n++
		}
	}
	return n
}

// TestRedisClusterPubSubConnectionLoss kills the PUB/SUB connections on one
// master after another while another node publishes to channels on every
// master: the subscriber gets every message once, in order, the channels of
// the other masters never stop, and a message published right after a kill,
// with nothing after it, arrives through the resync.
func TestRedisClusterPubSubConnectionLoss(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	sub := newURLBroker(t, cl.URL(), pubsub.RedisOptions{Options: pubsub.Options{HistorySize: 5000}})
	pub := newURLBroker(t, cl.URL(), pubsub.RedisOptions{Options: pubsub.Options{HistorySize: 5000}})
	ctx := testCtx(t)

	// Two channels per master.
	var chans []string
	master := map[string]*redistest.Server{}
	perMaster := map[*redistest.Server]int{}
	for i := 0; len(chans) < 6; i++ {
		ch := "loss:" + strconv.Itoa(i)
		m := cl.MasterOf(t, key(ch, ""))
		if perMaster[m] < 2 {
			perMaster[m]++
			master[ch] = m
			chans = append(chans, ch)
		}
	}
	s := subscribeRedis(t, sub, pubsub.Cursor{}, chans...)
	const rounds = 120
	done := make(chan map[string][]int, 1)
	go func() {
		got := map[string][]int{}
		for n := 0; n < (rounds+1)*len(chans); n++ {
			ev, err := s.Next(ctx)
			if err != nil || ev.Reset != nil {
				break
			}
			got[ev.Message.Channel] = append(got[ev.Message.Channel], numOf(t, ev.Message))
		}
		done <- got
	}()
	admins := map[*redistest.Server]*redis.Client{}
	for _, m := range cl.Masters {
		admins[m] = m.Client(t)
	}
	subscribed := func(m *redistest.Server) bool {
		var names []string
		for _, ch := range chans {
			if master[ch] == m {
				names = append(names, key(ch, ""))
			}
		}
		n, err := admins[m].PubSubShardNumSub(ctx, names...).Result()
		if err != nil {
			return false
		}
		for _, name := range names {
			if n[name] != 1 {
				return false
			}
		}
		return true
	}
	kill := func(m *redistest.Server) {
		t.Helper()
		eventually(t, "the PUB/SUB connection to "+m.Addr()+" to be subscribed", func() bool { return subscribed(m) })
		n, err := admins[m].ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
		if err != nil || n < 1 {
			t.Fatalf("CLIENT KILL TYPE pubsub on %s = %d, %v", m.Addr(), n, err)
		}
	}
	for i := 1; i <= rounds; i++ {
		if i%40 == 20 {
			kill(cl.Masters[(i/40)%3])
		}
		for _, ch := range chans {
			publishN(t, pub, ch, i, 1)
		}
	}
	kill(cl.Masters[0])
	for _, ch := range chans {
		publishN(t, pub, ch, rounds+1, 1)
	}
	got := <-done
	for _, ch := range chans {
		if !sameInts(got[ch], seqFrom(1, rounds+1)) {
			t.Fatalf("channel %s (on %s): got %d messages, want 1..%d in order: %v", ch, master[ch].Addr(), len(got[ch]), rounds+1, got[ch])
		}
	}
	expectNothing(t, s)
}

// TestRedisClusterSlotMigration moves the slots of two subscribed channels
// to other masters between publishes: the old master unsubscribes the
// node's connection from each channel, the node subscribes it on the new
// master, and the subscriber misses nothing. With fencing (the Cluster
// default) the moved keys carry the old master's replication ID, so the
// next publish starts a new epoch: the subscriber gets an epoch_changed
// Reset, the kept messages renumbered, then the new ones. Without fencing
// the epoch simply continues.
func TestRedisClusterSlotMigration(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	ctx := testCtx(t)
	for _, tc := range []struct {
		channel string
		fencing pubsub.Fencing
	}{
		{"moving", pubsub.FencingAuto},
		{"moving-unfenced", pubsub.FencingOff},
	} {
		opts := pubsub.RedisOptions{Fencing: tc.fencing}
		sub := newURLBroker(t, cl.URL(), opts)
		pub := newURLBroker(t, cl.URL(), opts)
		s := subscribeRedis(t, sub, pubsub.Cursor{}, tc.channel)
		before := publishN(t, pub, tc.channel, 1, 5)
		expectMessages(t, s, 1, 2, 3, 4, 5)

		name := key(tc.channel, "")
		src := cl.MasterOf(t, name)
		dst := cl.Masters[0]
		if dst == src {
			dst = cl.Masters[1]
		}
		cl.MigrateSlot(t, name, dst)
		after := publishN(t, pub, tc.channel, 6, 5)
		if tc.fencing == pubsub.FencingOff {
			if after[0].Epoch != before[0].Epoch || after[0].Offset != 6 {
				t.Fatalf("%s: first message after the move %s/%d, want offset 6 of epoch %s", tc.channel, after[0].Epoch, after[0].Offset, before[0].Epoch)
			}
		} else {
			r := expectReset(t, s, pubsub.ResetEpochChanged)
			if after[0].Epoch == before[0].Epoch || after[0].Offset != 6 || r.Position != (pubsub.Position{Epoch: after[0].Epoch}) {
				t.Fatalf("%s: reset to %+v, first message after the move %s/%d: want a new epoch keeping 1..5", tc.channel, r.Position, after[0].Epoch, after[0].Offset)
			}
			expectMessages(t, s, 1, 2, 3, 4, 5)
		}
		expectMessages(t, s, 6, 7, 8, 9, 10)
		expectNothing(t, s)
		eventually(t, "the channel to be subscribed on its new master", func() bool {
			n, err := dst.Client(t).PubSubShardNumSub(ctx, name).Result()
			return err == nil && n[name] == 1
		})
		if n, err := src.Client(t).PubSubShardNumSub(ctx, name).Result(); err != nil || n[name] != 0 {
			t.Fatalf("%s: the old master still has %v subscribers (%v)", tc.channel, n, err)
		}
	}
}
