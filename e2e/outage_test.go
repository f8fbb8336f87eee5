package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/pushclient"
	"github.com/pushgate/pushgate/internal/redistest"
)

// TestRedisOutage: Redis (with persistence) stops for 10 s and comes back
// during a run. Sends during the outage get UNAVAILABLE; nothing reported
// as sent is lost; subscribers, whose connections stay up, receive
// everything stored after recovery without reconnecting by hand.
func TestRedisOutage(t *testing.T) {
	redis := redistest.Start(t)
	nodes := []*node{
		startNode(t, "a", "--redis-url", redis.URL(), "--allow-anonymous"),
		startNode(t, "b", "--redis-url", redis.URL(), "--allow-anonymous"),
	}
	channels := []string{"out:1", "out:2", "out:3"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var subs []*subscriber
	var wg sync.WaitGroup
	for i, tr := range []pushclient.Transport{pushclient.WebSocket, pushclient.SSE, pushclient.Poll} {
		s := &subscriber{name: string(tr), transport: tr, channels: channels, steady: true,
			last: map[string]uint64{}, seen: map[string]bool{}}
		subs = append(subs, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(ctx, nodes, i, startCursor(channels...), rand.New(rand.NewPCG(7, uint64(i))))
		}()
	}

	var (
		mu          sync.Mutex
		acked       []string // "<channel>/<n>" of every send the server acknowledged
		unavailable int
		other       []error
	)
	stop := make(chan struct{})
	var senders sync.WaitGroup
	senders.Add(1)
	go func() {
		defer senders.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ch := channels[i%len(channels)]
			sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := sender.Send(sctx, nodes[i%len(nodes)].url(), ch, map[string]int{"i": i}, "")
			scancel()
			mu.Lock()
			switch {
			case err == nil:
				acked = append(acked, fmt.Sprintf("%s/%d", ch, i))
			case errors.Is(err, pushclient.ErrNotSent) && strings.Contains(err.Error(), "UNAVAILABLE"):
				unavailable++
			default:
				other = append(other, err)
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	count := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(acked), unavailable
	}
	waitFor(t, "sends before the outage", func() bool { n, _ := count(); return n >= 100 })
	redis.Stop(t)
	outage := time.Now()
	waitFor(t, "sends refused during the outage", func() bool { _, u := count(); return u >= 10 })
	time.Sleep(time.Until(outage.Add(10 * time.Second)))
	before, _ := count()
	redis.Start(t)
	waitFor(t, "sends after recovery", func() bool { n, _ := count(); return n >= before+100 })
	close(stop)
	senders.Wait()

	mu.Lock()
	if len(other) > 0 {
		t.Errorf("%d sends failed other than with UNAVAILABLE, first: %v", len(other), other[0])
	}
	t.Logf("%d sends acknowledged, %d refused with UNAVAILABLE", len(acked), unavailable)
	want := append([]string(nil), acked...)
	mu.Unlock()
	waitSubscribers(t, "every acknowledged message at every subscriber", subs, func(s *subscriber) bool {
		for _, k := range want {
			if !s.seen[k] {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()
	checkSubscribers(t, subs)
	for _, s := range subs {
		if s.transport != pushclient.Poll && s.reconnects > 1 {
			// The one reconnect is the end of the test.
			t.Errorf("%s reconnected %d times: its connection did not stay up", s.name, s.reconnects)
		}
	}
}
