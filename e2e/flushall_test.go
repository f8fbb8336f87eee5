package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/pushclient"
	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
)

// flushSub follows a feed across a history loss: within a run of messages
// (from the start, or from a Reset) offsets follow each other; an offset
// that does not is a gap, one at or below the last is a message skipped
// as if it were a duplicate.
type flushSub struct {
	name      string
	transport pushclient.Transport
	channels  []string
	steady    bool

	mu     sync.Mutex
	last   map[string]uint64
	resets map[string][]string // reasons
	seen   map[string]bool     // payloads received
	err    error
}

func (s *flushSub) fail(format string, args ...any) {
	if s.err == nil {
		s.err = fmt.Errorf(s.name+": "+format, args...)
	}
}

func (s *flushSub) handle(ev pushclient.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := ev.Reset; r != nil {
		s.resets[r.Channel] = append(s.resets[r.Channel], r.Reason)
		c, err := pubsub.ParseCursor(r.Cursor)
		if err != nil {
			s.fail("reset with cursor %q: %v", r.Cursor, err)
			return
		}
		p, _ := c.Position(r.Channel)
		s.last[r.Channel] = p.Offset
		return
	}
	m := ev.Message
	off, data := m.Offset(), string(m.Data)
	switch last := s.last[m.Channel]; {
	case off == last+1:
		s.last[m.Channel] = off
		if s.seen[data] {
			s.fail("%s: %s received twice", m.Channel, data)
		}
		s.seen[data] = true
	case off <= last:
		s.fail("%s: message %d (%s) at or below offset %d without a reset: skipped as a duplicate", m.Channel, off, data, last)
	default:
		s.fail("%s: jumped from %d to %d without a reset", m.Channel, last, off)
	}
}

func (s *flushSub) run(ctx context.Context, nodes []*node, first int, rng *rand.Rand) {
	budget := func() int { return 20 + rng.IntN(60) }
	if s.steady {
		budget = nil
	}
	follow(ctx, s.transport, s.channels, nodes, first, startCursor(s.channels...), budget, s.handle, nil)
}

// TestFlushAllDuringRun: two nodes on one Redis, subscribers on every
// transport (some reconnecting all along with their cursor), senders
// through both nodes, and FLUSHALL in the middle. Every subscriber gets an
// epoch_changed Reset for every channel, never a gap nor a new message
// taken for one it had, and everything sent after the flush.
func TestFlushAllDuringRun(t *testing.T) {
	redis := redistest.Start(t)
	nodes := []*node{
		startNode(t, "a", "--redis-url", redis.URL(), "--allow-anonymous"),
		startNode(t, "b", "--redis-url", redis.URL(), "--allow-anonymous"),
	}
	channels := []string{"flush:1", "flush:2", "flush:3"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var subs []*flushSub
	var wg sync.WaitGroup
	for i, tr := range []pushclient.Transport{pushclient.WebSocket, pushclient.SSE, pushclient.Poll, pushclient.WebSocket, pushclient.SSE} {
		s := &flushSub{name: fmt.Sprintf("%s-%d", tr, i), transport: tr, channels: channels, steady: i < 3,
			last: map[string]uint64{}, resets: map[string][]string{}, seen: map[string]bool{}}
		subs = append(subs, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx, nodes, i, rand.New(rand.NewPCG(uint64(i), 3)))
		}()
	}

	var (
		mu        sync.Mutex
		flushed   bool
		before    int
		afterSent []string // payloads of sends begun after the flush and acknowledged
		sendErrs  []error
	)
	stop := make(chan struct{})
	var senders sync.WaitGroup
	var seq int
	for w := range 2 {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				seq++
				n, after := seq, flushed
				mu.Unlock()
				ch := channels[n%len(channels)]
				sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := sender.Send(sctx, nodes[(n+w)%2].url(), ch, map[string]int{"i": n}, "")
				scancel()
				mu.Lock()
				switch {
				case err != nil:
					sendErrs = append(sendErrs, err)
				case after:
					afterSent = append(afterSent, fmt.Sprintf(`{"i":%d}`, n))
				default:
					before++
				}
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	counts := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return before, len(afterSent)
	}
	waitFor(t, "sends before the flush", func() bool { n, _ := counts(); return n >= 150 })
	redis.FlushAll(t)
	mu.Lock()
	flushed = true
	mu.Unlock()
	waitFor(t, "sends after the flush", func() bool { _, n := counts(); return n >= 150 })
	close(stop)
	senders.Wait()

	mu.Lock()
	if len(sendErrs) > 0 {
		t.Fatalf("%d sends failed, first: %v", len(sendErrs), sendErrs[0])
	}
	want := append([]string(nil), afterSent...)
	mu.Unlock()
	ok := func(s *flushSub) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.err != nil {
			return true
		}
		for _, p := range want {
			if !s.seen[p] {
				return false
			}
		}
		return true
	}
	waitFor(t, "every message sent after the flush at every subscriber", func() bool {
		for _, s := range subs {
			if !ok(s) {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()
	for _, s := range subs {
		if s.err != nil {
			t.Error(s.err)
			continue
		}
		for _, ch := range channels {
			rs := s.resets[ch]
			if len(rs) == 0 {
				t.Errorf("%s: no reset on %s after the flush", s.name, ch)
			}
			for _, r := range rs {
				if r != string(pubsub.ResetEpochChanged) {
					t.Errorf("%s: %s reset %v, want epoch_changed", s.name, ch, rs)
					break
				}
			}
		}
	}
	if t.Failed() {
		return
	}
	// The last run of each channel is the history of its new epoch.
	for _, ch := range channels {
		r, err := pushclient.PollOnce(context.Background(), nodes[0].url(), []string{ch}, startCursor(ch), "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Messages) == 0 || r.Messages[0].ID != "1" {
			t.Fatalf("history of %s after the flush: %d messages from %v", ch, len(r.Messages), r.Messages[:min(1, len(r.Messages))])
		}
		top := r.Messages[len(r.Messages)-1].Offset()
		for _, s := range subs {
			if s.last[ch] != top {
				t.Errorf("%s: %s at offset %d, history ends at %d", s.name, ch, s.last[ch], top)
			}
		}
	}
	var n int
	for _, s := range subs {
		for _, rs := range s.resets {
			n += len(rs)
		}
	}
	t.Logf("%d sent before the flush, %d after; %d resets over %d subscribers", before, len(want), n, len(subs))
}
