package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/pushclient"
	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
)

var sender = &pushclient.Sender{Key: apiKey}

// subscriber is a client that keeps one feed over one transport, moving to
// another node whenever its connection ends (or at random, to churn), and
// resuming with the cursor of the last event it handled.
type subscriber struct {
	name      string
	transport pushclient.Transport
	channels  []string

	// steady: never reconnect voluntarily (only when the stream ends).
	steady bool
	// exact: message k of every channel must carry {"i": k-1} (each
	// channel's messages were sent one after another, each acknowledged
	// before the next), so a message appended twice shifts every later one.
	exact bool

	mu         sync.Mutex
	last       map[string]uint64 // channel -> newest id handled
	seen       map[string]bool   // payloads handled ("<channel>/<n>")
	duplicates int               // events at or below last: redelivered
	gap        error             // first message that skipped an id, or carried the wrong payload (exact)
	reconnects int
}

func (s *subscriber) run(ctx context.Context, nodes []*node, first int, cursor string, rng *rand.Rand) {
	budget := func() int { return 200 + rng.IntN(800) } // events before a voluntary reconnect
	if s.steady {
		budget = nil
	}
	follow(ctx, s.transport, s.channels, nodes, first, cursor, budget, s.handle, func() {
		s.mu.Lock()
		s.reconnects++
		s.mu.Unlock()
	})
}

// follow keeps a feed of channels over transport, opening it on the nodes
// in turn from nodes[first]: when a stream ends, or after budget() events
// (nil: never), it moves to the next node and resumes with the cursor of
// the last event it passed to handle; then it calls ended, if set. It
// returns when ctx ends.
func follow(ctx context.Context, transport pushclient.Transport, channels []string, nodes []*node, first int, cursor string,
	budget func() int, handle func(pushclient.Event), ended func()) {
	for i := first; ctx.Err() == nil; i++ {
		stream, err := pushclient.Open(ctx, transport, nodes[i%len(nodes)].url(), channels, cursor, "")
		if err != nil {
			time.Sleep(50 * time.Millisecond) // that node is down: the next one
			continue
		}
		n := 1 << 62
		if budget != nil {
			n = budget()
		}
		for ; n > 0; n-- {
			ev, err := stream.Next(ctx)
			if err != nil {
				break
			}
			handle(ev)
			cursor = ev.Cursor
		}
		stream.Close()
		if ended != nil {
			ended()
		}
	}
}

func (s *subscriber) handle(ev pushclient.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ev.Reset != nil {
		if s.gap == nil {
			s.gap = fmt.Errorf("%s: reset %+v", s.name, *ev.Reset)
		}
		return
	}
	m := ev.Message
	off := m.Offset()
	switch last := s.last[m.Channel]; {
	case off <= last:
		s.duplicates++
	case off != last+1 && s.gap == nil:
		s.gap = fmt.Errorf("%s: channel %s jumped from %d to %d", s.name, m.Channel, last, off)
	default:
		s.last[m.Channel] = off
		var d struct{ I *int }
		_ = json.Unmarshal(m.Data, &d)
		if s.exact && (d.I == nil || uint64(*d.I)+1 != off) && s.gap == nil {
			s.gap = fmt.Errorf("%s: channel %s message %d carries %s, want {\"i\":%d}", s.name, m.Channel, off, m.Data, off-1)
		}
		if s.seen != nil && d.I != nil {
			s.seen[fmt.Sprintf("%s/%d", m.Channel, *d.I)] = true
		}
	}
}

// waitSubscribers waits until cond (called with the subscriber's lock held)
// holds for every subscriber that has not failed; failures are reported by
// checkSubscribers.
func waitSubscribers(t *testing.T, what string, subs []*subscriber, cond func(*subscriber) bool) {
	t.Helper()
	waitFor(t, what, func() bool {
		for _, s := range subs {
			s.mu.Lock()
			ok := s.gap != nil || cond(s)
			s.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	})
}

// checkSubscribers fails the test for every gap, and for duplicates on
// WebSocket and SSE, whose cursors are exact per event (a long-poll client
// that stops inside an answer gets that answer again).
func checkSubscribers(t *testing.T, subs []*subscriber) {
	t.Helper()
	for _, s := range subs {
		s.mu.Lock()
		if s.gap != nil {
			t.Error(s.gap)
		}
		if s.transport != pushclient.Poll && s.duplicates > 0 {
			t.Errorf("%s: %d duplicates", s.name, s.duplicates)
		}
		s.mu.Unlock()
	}
}

// caughtUpLocked reports whether s has every wanted message of its
// channels.
func (s *subscriber) caughtUpLocked(want map[string]uint64) bool {
	for _, ch := range s.channels {
		n := want[ch]
		if s.last[ch] < n {
			return false
		}
	}
	return true
}

// TestNodesOnOneRedis: 3 pushgate processes on one redis-server;
// subscribers spread over them by WebSocket, SSE and long-poll; concurrent
// senders through every node; one node killed with SIGKILL and one
// restarted mid-run. Every subscriber that reconnects with its cursor ends
// with every acknowledged message, in order, without a gap.
func TestNodesOnOneRedis(t *testing.T) {
	redis := redistest.Start(t)
	runNodes(t, redis.URL(), channelNames("e2e", 4), 1000)
}

// TestNodesOnCluster: the same on a 3-master Redis Cluster, with 200
// channels spread over every shard (sharded PUB/SUB, one connection per
// master on every node).
func TestNodesOnCluster(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	channels := channelNames("shard", 210)
	masters := map[string]bool{}
	for _, ch := range channels {
		masters[cluster.MasterOf(t, "pushgate:{"+ch+"}:m").Addr()] = true
	}
	if len(masters) != 3 {
		t.Fatalf("channels on %d masters, want 3", len(masters))
	}
	runNodes(t, cluster.URL(), channels, 15)
}

func channelNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s:%d", prefix, i)
	}
	return out
}

// runNodes is the multi-node scenario on the Redis at redisURL: perChannel
// messages to each of channels.
func runNodes(t *testing.T, redisURL string, channels []string, perChannel int) {
	nodes := []*node{
		startNode(t, "a", "--redis-url", redisURL, "--allow-anonymous"),
		startNode(t, "b", "--redis-url", redisURL, "--allow-anonymous"),
		startNode(t, "c", "--redis-url", redisURL, "--allow-anonymous"),
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Subscriptions hold at most 32 channels: each group of channels has a
	// subscriber on every transport, all starting from the channels' start,
	// so every message sent is expected.
	var subs []*subscriber
	var wg sync.WaitGroup
	for g := 0; g*30 < len(channels); g++ {
		group := channels[g*30 : min(len(channels), (g+1)*30)]
		for i, tr := range []pushclient.Transport{pushclient.WebSocket, pushclient.SSE, pushclient.Poll} {
			for j := 0; j < 2 && (j == 0 || len(channels) <= 30); j++ {
				s := &subscriber{name: fmt.Sprintf("%s-%d-%d", tr, g, j), transport: tr, channels: group, exact: true, last: map[string]uint64{}}
				subs = append(subs, s)
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.run(ctx, nodes, g+i+j, startCursor(group...), rand.New(rand.NewPCG(uint64(g*10+i), uint64(j))))
				}()
			}
		}
	}

	// Senders through every node; each message has an idempotency key.
	var (
		sentMu sync.Mutex
		sent   uint64
	)
	const senders = 8
	var wgSend sync.WaitGroup
	sendErrs := make(chan error, senders)
	for w := 0; w < senders; w++ {
		wgSend.Add(1)
		go func() {
			defer wgSend.Done()
			for i := 0; i < perChannel; i++ {
				for ci := w; ci < len(channels); ci += senders {
					ch := channels[ci]
					sctx, scancel := context.WithTimeout(ctx, 60*time.Second)
					_, err := sendRetrying(sctx, nodes, ci+i, ch, map[string]int{"i": i}, fmt.Sprintf("%s-%d", ch, i))
					scancel()
					if err != nil {
						sendErrs <- err
						return
					}
					sentMu.Lock()
					sent++
					sentMu.Unlock()
				}
			}
		}()
	}
	total := uint64(perChannel * len(channels))
	progress := func() uint64 {
		sentMu.Lock()
		defer sentMu.Unlock()
		return sent
	}
	waitFor(t, "a quarter of the messages", func() bool { return progress() >= total/4 })
	nodes[1].kill(syscall.SIGKILL) // node b dies
	waitFor(t, "half of the messages", func() bool { return progress() >= total/2 })
	nodes[2].kill(syscall.SIGTERM) // node c restarts
	nodes[2].start()
	wgSend.Wait()
	close(sendErrs)
	for err := range sendErrs {
		t.Fatal(err)
	}
	want := map[string]uint64{}
	for _, ch := range channels {
		want[ch] = uint64(perChannel) // ids 1..perChannel: each key appended once
	}
	waitSubscribers(t, "every subscriber to catch up", subs, func(s *subscriber) bool { return s.caughtUpLocked(want) })
	cancel()
	wg.Wait()
	checkSubscribers(t, subs)
	for _, s := range subs {
		for _, ch := range s.channels {
			if s.last[ch] != want[ch] {
				t.Errorf("%s: channel %s ends at message %d, want %d", s.name, ch, s.last[ch], want[ch])
			}
		}
	}
	// Exactly perChannel messages per channel, message k carrying
	// {"i": k-1}: no retry appended twice, none lost.
	for _, ch := range channels {
		checkHistory(t, nodes[0].url(), ch, perChannel)
	}
}

// checkHistory reads the whole history of ch by paging GET /poll (100
// messages an answer) and fails unless it holds exactly n messages, ids 1..n
// in order, message k carrying {"i": k-1}.
func checkHistory(t *testing.T, base, ch string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cursor := startCursor(ch)
	got := 0
	for {
		r, err := pushclient.PollOnce(ctx, base, []string{ch}, cursor, "", 0)
		if err != nil {
			t.Fatalf("history of %s after %d messages: %v", ch, got, err)
		}
		if r.Reset != nil { // from the start: the first message was trimmed, so more than the history size (1000) was appended
			t.Fatalf("history of %s after %d messages: reset %+v", ch, got, *r.Reset)
		}
		if len(r.Messages) == 0 {
			break
		}
		for _, m := range r.Messages {
			got++
			var d struct{ I *int }
			if err := json.Unmarshal(m.Data, &d); err != nil || d.I == nil || m.ID != itoa(got) || *d.I != got-1 {
				t.Fatalf("history of %s: message %d is id %s, data %s; want id %d, data {\"i\":%d}", ch, got, m.ID, m.Data, got, got-1)
			}
		}
		cursor = r.Cursor
	}
	if got != n {
		t.Fatalf("history of %s: %d messages, want %d", ch, got, n)
	}
}

// startCursor names the start of channels (before any message), so a feed
// from it delivers everything they will ever hold.
func startCursor(channels ...string) string {
	ps := make(map[string]pubsub.Position, len(channels))
	for _, ch := range channels {
		ps[ch] = pubsub.Position{}
	}
	return pubsub.NewCursor(ps).String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
