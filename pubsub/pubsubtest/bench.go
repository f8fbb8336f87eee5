package pubsubtest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/pushgate/pushgate/pubsub"
)

// Bench runs the Broker benchmarks: publish (one and parallel publishers)
// and fan-out to many subscribers of one channel, reported per delivery.
func Bench(b *testing.B, newBroker func(b *testing.B, opts pubsub.Options) pubsub.Broker) {
	payload := json.RawMessage(`{"type":"order.updated","id":"a1b2c3d4","status":"shipped","items":3,"total":12999}`)
	b.Run("Publish", func(b *testing.B) {
		br := newBroker(b, pubsub.Options{})
		ctx := context.Background()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := br.Publish(ctx, pubsub.PublishRequest{Channel: "bench", Data: payload}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("PublishParallel", func(b *testing.B) {
		br := newBroker(b, pubsub.Options{})
		ctx := context.Background()
		var n sync.Mutex
		id := 0
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			n.Lock()
			ch := fmt.Sprintf("bench:%d", id)
			id++
			n.Unlock()
			for pb.Next() {
				if _, err := br.Publish(ctx, pubsub.PublishRequest{Channel: ch, Data: payload}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	for _, subs := range []int{100, 1000} {
		b.Run(fmt.Sprintf("Fanout%d", subs), func(b *testing.B) {
			// Every message retained: a subscriber that falls behind
			// catches up from the store instead of getting a reset.
			br := newBroker(b, pubsub.Options{QueueSize: 1024, HistorySize: max(b.N, pubsub.DefaultHistorySize)})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			ready := make([]*pubsub.Subscription, subs)
			for i := range ready {
				s, err := br.Subscribe(ctx, []string{"fan"}, pubsub.Cursor{})
				if err != nil {
					b.Fatal(err)
				}
				ready[i] = s
			}
			b.ReportAllocs()
			b.ResetTimer()
			for _, s := range ready {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for got := 0; got < b.N; {
						ev, err := s.Next(ctx)
						if err != nil {
							b.Error(err)
							return
						}
						if ev.Message != nil {
							got++
						}
					}
				}()
			}
			for i := 0; i < b.N; i++ {
				if _, err := br.Publish(ctx, pubsub.PublishRequest{Channel: "fan", Data: payload}); err != nil {
					b.Fatal(err)
				}
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subs), "ns/delivery")
		})
	}
}
