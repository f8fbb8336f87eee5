package pubsub

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/redistest"
)

// BenchmarkRedisPresenceRefresh: the standing cost of presence, one
// refresh round of a node holding 1,000 distinct (channel, subject)
// entries (a round runs every TTL/3, 10 s by default); reported per entry.
func BenchmarkRedisPresenceRefresh(b *testing.B) {
	const entries = 1000
	srv := redistest.Start(b, redistest.WithArgs("--appendonly", "no"))
	client := srv.Client(b)
	p := NewRedisPresence(client, "bench:", time.Hour, nil).(*redisPresence)
	defer p.Close()
	ctx := context.Background()
	for i := range entries {
		if _, err := p.Join(ctx, fmt.Sprintf("user:%d", i), "s"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		p.refresh()
	}
	b.StopTimer()
	perRound := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(perRound.Nanoseconds())/entries/1000, "µs/entry")
}
