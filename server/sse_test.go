package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"
	"gopkg.in/cenkalti/backoff.v1"

	"github.com/pushgate/pushgate/pubsub"
)

// streamMessage is the JSON of one message on SSE and long-poll.
type streamMessage struct {
	Channel   string          `json:"channel"`
	ID        string          `json:"id"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	CreatedAt time.Time       `json:"createdAt"`
}

func eventsURL(base string, channels []string, extra url.Values) string {
	q := url.Values{"channel": channels}
	for k, v := range extra {
		q[k] = v
	}
	return base + "/events?" + q.Encode()
}

// tally checks, per channel, that ids arrive contiguous from 1 without
// duplicates.
type tally struct {
	mu   sync.Mutex
	last map[string]uint64
	n    int
	err  error
}

func newTally() *tally { return &tally{last: map[string]uint64{}} }

func (t *tally) add(m streamMessage) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, _ := strconv.ParseUint(m.ID, 10, 64)
	if id != t.last[m.Channel]+1 && t.err == nil {
		t.err = fmt.Errorf("channel %s: got id %d after %d", m.Channel, id, t.last[m.Channel])
	}
	t.last[m.Channel] = id
	t.n++
}

func (t *tally) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

func (t *tally) check(tb testing.TB, want map[string]uint64) {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		tb.Fatal(t.err)
	}
	for ch, n := range want {
		if t.last[ch] != n {
			tb.Fatalf("channel %s: last id %d, want %d", ch, t.last[ch], n)
		}
	}
}

// sendConcurrently publishes total messages over channels from senders
// goroutines and returns how many each channel got.
func sendConcurrently(t *testing.T, b pubsub.Broker, channels []string, total, senders int) map[string]uint64 {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := s; i < total; i += senders {
				_, err := b.Publish(context.Background(), pubsub.PublishRequest{
					Channel: channels[i%len(channels)], Data: json.RawMessage(`{"i":` + strconv.Itoa(i) + `}`),
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := map[string]uint64{}
	for i := 0; i < total; i++ {
		want[channels[i%len(channels)]]++
	}
	return want
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSSEResumeUnderChurn: an independent SSE client (r3labs/sse/v2),
// disconnected at random points, receives all of 10,000 messages sent across
// 3 channels by concurrent senders: per-channel order kept, no duplicates.
func TestSSEResumeUnderChurn(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			const total = 10000
			b := be.new(t, pubsub.Options{HistorySize: total})
			e := startEnv(t, testConfig(), b)
			channels := []string{"churn:a", "churn:b", "churn:c"}
			tok := token(t, "u1", []string{"churn:*"}, time.Hour)
			client := sse.NewClient(eventsURL(e.url, channels, nil))
			client.Headers["Authorization"] = "Bearer " + tok
			got := newTally()
			started := make(chan struct{})
			done := make(chan struct{})
			var (
				idMu   sync.Mutex
				lastID []byte // of the last event handled
			)
			go func() {
				defer close(done)
				rng := rand.New(rand.NewPCG(1, 2))
				for reconnects := 0; got.count() < total; reconnects++ {
					ctx, cancel := context.WithCancel(context.Background())
					client.ReconnectStrategy = backoff.WithContext(backoff.NewConstantBackOff(10*time.Millisecond), ctx)
					idMu.Lock()
					if lastID != nil {
						client.LastEventID.Store(lastID)
					}
					idMu.Unlock()
					budget := 1 + rng.IntN(1500)
					_ = client.SubscribeRawWithContext(ctx, func(ev *sse.Event) {
						if ctx.Err() != nil || len(ev.Data) == 0 {
							// After our disconnect, or the id-only start
							// block (r3labs hands it over as an event).
							return
						}
						var m streamMessage
						if err := json.Unmarshal(ev.Data, &m); err != nil {
							got.mu.Lock()
							got.err = fmt.Errorf("event %q: %v", ev.Data, err)
							got.mu.Unlock()
							cancel()
							return
						}
						got.add(m)
						idMu.Lock()
						lastID = append([]byte(nil), ev.ID...)
						idMu.Unlock()
						if budget--; budget == 0 || got.count() == total {
							cancel() // disconnect here
						}
					})
					if reconnects == 0 {
						close(started)
					}
					cancel()
				}
			}()
			// The first connection's id-only block sets the start position;
			// wait for the stream to be open before sending.
			waitUntil(t, "the SSE stream to open", func() bool {
				id, _ := client.LastEventID.Load().([]byte)
				idMu.Lock()
				defer idMu.Unlock()
				if len(id) > 0 && lastID == nil {
					lastID = append([]byte(nil), id...)
					return true
				}
				return false
			})
			want := sendConcurrently(t, b, channels, total, 4)
			select {
			case <-done:
			case <-time.After(2 * time.Minute):
				t.Fatalf("received %d of %d", got.count(), total)
			}
			<-started
			got.check(t, want)
		})
	}
}
