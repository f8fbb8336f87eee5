package pubsub_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
)

// TestRedisSentinelFailover: two nodes on a Sentinel deployment (a master,
// a replica, three sentinels) with subscribers connected. Replication is
// cut, so the master acknowledges messages the replica never gets; the
// subscribers receive them; the master dies and the sentinels promote the
// replica, which lacks them. Publishing goes on through the new master.
// Fencing (on by default for a Sentinel client) must make the new master
// start a new epoch instead of handing out the lost offsets again. Then the
// old master comes back as a replica and a switchover promotes it while
// the current master stays up. Every subscriber receives every
// acknowledged message as acknowledged, an epoch_changed Reset at each
// failover (then what the new master kept, renumbered), never a silent gap,
// and no (epoch, offset) pair names two messages in what anyone was told.
func TestRedisSentinelFailover(t *testing.T) {
	testSentinelFailover(t, pubsub.FencingAuto)
}

func testSentinelFailover(t *testing.T, fencing pubsub.Fencing) {
	const perPhase = 8
	st := redistest.StartSentinel(t)
	nodes := []pubsub.Broker{
		newURLBroker(t, st.URL(), pubsub.RedisOptions{Fencing: fencing}),
		newURLBroker(t, st.URL(), pubsub.RedisOptions{Fencing: fencing}),
	}
	// A node that waits for the replica: its publishes are confirmed while
	// replication works, and reported as unavailable when it does not.
	waiting := newURLBroker(t, st.URL(), pubsub.RedisOptions{Fencing: fencing, WaitReplicas: 1, WaitTimeout: 200 * time.Millisecond})
	channels := []string{"fo:a", "fo:b"}
	ctx := testCtx(t)
	if _, err := waiting.Publish(ctx, pubsub.PublishRequest{Channel: "fo:wait", Data: numData(1)}); err != nil {
		t.Fatalf("publish waiting for the replica: %v", err)
	}

	type record struct {
		mu     sync.Mutex
		events []pubsub.Event
	}
	var records []*record
	for _, node := range nodes {
		for range 2 {
			s := subscribeRedis(t, node, pubsub.Cursor{}, channels...)
			r := &record{}
			records = append(records, r)
			go func() {
				for {
					ev, err := s.Next(ctx)
					if err != nil {
						return
					}
					r.mu.Lock()
					r.events = append(r.events, ev)
					r.mu.Unlock()
				}
			}()
		}
	}
	// received counts the messages of phase (by data) each record holds.
	received := func(r *record, phase int) int {
		r.mu.Lock()
		defer r.mu.Unlock()
		n := 0
		for _, ev := range r.events {
			if ev.Message != nil && numOf(t, ev.Message)/1000 == phase {
				n++
			}
		}
		return n
	}
	everyoneHas := func(phase int) func() bool {
		return func() bool {
			for _, r := range records {
				if received(r, phase) != perPhase*len(channels) {
					return false
				}
			}
			return true
		}
	}

	// acked: what publishers were told, per channel, in order. Message
	// numbers are phase*1000 + i.
	acked := map[string][]pubsub.Message{}
	publishPhase := func(phase int, retry bool) {
		t.Helper()
		for i := 1; i <= perPhase; i++ {
			for c, ch := range channels {
				n := phase*1000 + i
				req := pubsub.PublishRequest{Channel: ch, Data: numData(n), IdempotencyKey: "m" + strconv.Itoa(n)}
				var res pubsub.PublishResult
				var err error
				deadline := time.Now().Add(redisWait)
				for {
					res, err = nodes[(i+c)%2].Publish(ctx, req)
					if err == nil || !retry || time.Now().After(deadline) || !errors.Is(err, pubsub.ErrUnavailable) {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				if err != nil {
					t.Fatalf("phase %d: publish %d to %s: %v", phase, n, ch, err)
				}
				acked[ch] = append(acked[ch], res.Message)
			}
		}
	}

	// Phase 1: replicated. Phase 2: acknowledged by the master only.
	publishPhase(1, false)
	st.WaitReplicated(t)
	eventually(t, "phase 1 to reach every subscriber", everyoneHas(1))
	st.DetachReplica(t)
	publishPhase(2, false)
	// Promptly: WAIT answers that no replica confirmed it within
	// WaitTimeout, rather than the publish waiting for its context.
	_, err := waiting.Publish(ctx, pubsub.PublishRequest{Channel: "fo:wait", Data: numData(2)})
	if !errors.Is(err, pubsub.ErrUnavailable) || !strings.Contains(err.Error(), "only 0 of 1 replicas confirmed it") {
		t.Fatalf("publish waiting for a detached replica: %v, want ErrUnavailable as WAIT answers 0 replicas", err)
	}
	if s, err := waiting.State(ctx, "fo:wait"); err != nil || s.Top != 2 {
		t.Fatalf("state after an unconfirmed publish: %+v, %v; want it stored on the master", s, err)
	}
	eventually(t, "phase 2 to reach every subscriber", everyoneHas(2))
	oldEpoch := acked[channels[0]][0].Epoch

	st.Master.Kill(t)
	st.Failover(t)

	// The new master lacks phase 2: the scenario is real.
	eventually(t, "the new master to answer", func() bool {
		s, err := nodes[0].State(ctx, channels[0])
		return err == nil && s.Epoch == oldEpoch && s.Top == perPhase
	})
	publishPhase(3, true)
	for _, ch := range channels {
		if m := acked[ch][2*perPhase]; m.Epoch == oldEpoch || m.Offset != perPhase+1 {
			t.Fatalf("%s after the failover: %s/%d, want offset %d of a new epoch (after the %d kept)", ch, m.Epoch, m.Offset, perPhase+1, perPhase)
		}
	}
	// Without fencing, subscribers would take phase 3 for duplicates and
	// never get it: wait, but let the checks below say what went wrong.
	for deadline := time.Now().Add(redisWait); !everyoneHas(3)() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}

	// A switchover back to the old master, restarted as a replica, with
	// the current master alive: it keeps its clients, and receives no
	// notifications, until the sentinels convert it to a replica (at least
	// 8 s later, Redis's SENTINEL_PUBLISH_PERIOD*4), so nodes must notice
	// the new master themselves: phase 4 must reach every subscriber while
	// the old master still says it is one. (Role is read after delivery is
	// seen, and a conversion is for good, so delivery came before it.)
	st.Rejoin(t)
	st.Failover(t)
	old := st.Replica // swapped by Failover
	publishPhase(4, true)
	start := time.Now()
	for deadline := start.Add(redisWait); !everyoneHas(4)() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if everyoneHas(4)() {
		if role := roleOf(t, old); role != "master" {
			t.Errorf("phase 4 reached every subscriber (after %v) only once the sentinels had made the old master a %s: the nodes did not move by themselves", time.Since(start), role)
		}
	}

	// No (channel, epoch, offset) names two messages, in what publishers
	// were told and what any subscriber received.
	type pos struct {
		channel, epoch string
		offset         uint64
	}
	names := map[pos]string{}
	claim := func(who string, m *pubsub.Message) {
		t.Helper()
		p := pos{m.Channel, m.Epoch, m.Offset}
		if prev, ok := names[p]; ok && prev != string(m.Data) {
			t.Fatalf("%s: %s epoch %s offset %d names both %s and %s", who, m.Channel, m.Epoch, m.Offset, prev, m.Data)
		}
		names[p] = string(m.Data)
	}
	for _, ch := range channels {
		for i := range acked[ch] {
			claim("publishers", &acked[ch][i])
		}
	}
	for _, ch := range channels {
		// What the last master holds: phases 1, 3 and 4, renumbered.
		page, err := nodes[0].History(ctx, ch, pubsub.HistoryRequest{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		var kept []string
		for _, phase := range []int{1, 3, 4} {
			for _, m := range acked[ch] {
				if numOf(t, &m)/1000 == phase {
					kept = append(kept, string(m.Data))
				}
			}
		}
		if len(page.Messages) != len(kept) {
			t.Fatalf("%s: history has %d messages, want %d", ch, len(page.Messages), len(kept))
		}
		for k := range page.Messages {
			m := &page.Messages[k]
			claim("history", m)
			if string(m.Data) != kept[k] || m.Offset != uint64(k+1) {
				t.Fatalf("%s: history message %d is %d %s, want %d %s", ch, k, m.Offset, m.Data, k+1, kept[k])
			}
		}
		for i, r := range records {
			who := fmt.Sprintf("subscriber %d", i)
			r.mu.Lock()
			evs := append([]pubsub.Event(nil), r.events...)
			r.mu.Unlock()
			// Messages continue the position exactly, an epoch changes
			// only after a Reset, and every acknowledged message arrives
			// as acknowledged; the last epoch holds the final history.
			var at pubsub.Position
			got := map[pubsub.Position]string{}
			var last []pubsub.Message
			resets := 0
			for _, ev := range evs {
				switch {
				case ev.Reset != nil && ev.Reset.Channel == ch:
					if ev.Reset.Reason != pubsub.ResetEpochChanged {
						t.Fatalf("%s: %s reset %+v, want epoch_changed", who, ch, *ev.Reset)
					}
					resets++
					at = ev.Reset.Position
					last = nil
				case ev.Message != nil && ev.Message.Channel == ch:
					m := ev.Message
					claim(who, m)
					if (at.Epoch != "" && m.Epoch != at.Epoch) || m.Offset != at.Offset+1 {
						t.Fatalf("%s: %s message %s/%d after position %s/%d: a silent gap or epoch change", who, ch, m.Epoch, m.Offset, at.Epoch, at.Offset)
					}
					at = m.Position()
					got[at] = string(m.Data)
					last = append(last, *m)
				}
			}
			if resets != 2 {
				t.Fatalf("%s: %s had %d resets, want 2 (epoch_changed after each failover)", who, ch, resets)
			}
			for _, m := range acked[ch] {
				if got[m.Position()] != string(m.Data) {
					t.Fatalf("%s: %s never received acknowledged %s/%d %s", who, ch, m.Epoch, m.Offset, m.Data)
				}
			}
			if len(last) != len(page.Messages) {
				t.Fatalf("%s: %s received %d messages in the last epoch, history has %d", who, ch, len(last), len(page.Messages))
			}
		}
	}
}

// roleOf returns a server's replication role ("master" or "slave").
func roleOf(t *testing.T, srv *redistest.Server) string {
	t.Helper()
	info, err := srv.Client(t).Info(testCtx(t), "replication").Result()
	if err != nil {
		t.Fatalf("INFO replication on %s: %v", srv.Addr(), err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "role:"); ok {
			return v
		}
	}
	t.Fatalf("INFO replication on %s without a role: %q", srv.Addr(), info)
	return ""
}
