package pubsub_test

import (
	"sync"
	"testing"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/pubsub/pubsubtest"
)

func TestMemoryContract(t *testing.T) {
	var (
		mu      sync.Mutex
		brokers []pubsub.Broker
	)
	pubsubtest.Run(t, pubsubtest.Harness{
		New: func(t *testing.T, opts pubsub.Options) pubsub.Broker {
			b := pubsub.NewMemory(opts)
			mu.Lock()
			brokers = append(brokers, b)
			mu.Unlock()
			return b
		},
		LoseHistory: func(t *testing.T) {
			mu.Lock()
			defer mu.Unlock()
			for _, b := range brokers {
				pubsub.ForgetAll(b)
			}
		},
	})
}

func BenchmarkMemory(b *testing.B) {
	pubsubtest.Bench(b, func(b *testing.B, opts pubsub.Options) pubsub.Broker {
		br := pubsub.NewMemory(opts)
		b.Cleanup(func() { _ = br.Close() })
		return br
	})
}
