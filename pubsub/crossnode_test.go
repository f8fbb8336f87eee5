package pubsub_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
)

// BenchmarkRedisCrossNodeLatency: a message published on node A reaches a
// subscriber on node B (one Redis between them); reports the latency from
// Publish to delivery, one message at a time.
func BenchmarkRedisCrossNodeLatency(b *testing.B) {
	srv := redistest.Start(b, redistest.WithArgs("--appendonly", "no"))
	a := newRedisBroker(b, srv, pubsub.Options{})
	nodeB := newRedisBroker(b, srv, pubsub.Options{})
	ctx := context.Background()
	sub, err := nodeB.Subscribe(ctx, []string{"xnode"}, pubsub.Cursor{})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	lat := make([]time.Duration, 0, b.N)
	data := []byte(`{"type":"order.updated","id":"a1b2c3d4"}`)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := a.Publish(ctx, pubsub.PublishRequest{Channel: "xnode", Data: data}); err != nil {
			b.Fatal(err)
		}
		if _, err := sub.Next(ctx); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
