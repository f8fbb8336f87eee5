package limits

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// counter counts open connections per key, up to limit each.
type counter struct {
	limit int
	mu    sync.Mutex
	n     map[string]int
}

func newCounter(limit int) *counter {
	return &counter{limit: limit, n: make(map[string]int)}
}

// acquire takes a slot of key; release (idempotent) gives it back.
func (c *counter) acquire(key string) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[key] >= c.limit {
		return nil, false
	}
	c.n[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.n[key]--; c.n[key] <= 0 {
				delete(c.n, key)
			}
		})
	}, true
}

// open returns the slots taken for key.
func (c *counter) open(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// buckets are token buckets by key, each created full. A bucket that has
// refilled is the same as a new one, so sweeps drop those; the table holds
// at most max buckets.
type buckets struct {
	rate  Rate
	max   int
	every time.Duration // between sweeps: the time to refill

	mu    sync.Mutex
	m     map[string]*rate.Limiter
	swept time.Time
}

// newBuckets returns the table of r, nil when r is off.
func newBuckets(r Rate, size int) *buckets {
	if r.off() {
		return nil
	}
	every := time.Duration(float64(r.Burst) / r.PerSecond * float64(time.Second))
	return &buckets{rate: r, max: size, every: max(every, time.Second), m: make(map[string]*rate.Limiter)}
}

// take takes n tokens of key's bucket at now; when there are not enough,
// it takes none and returns how long until there are. A nil table takes
// nothing and allows everything.
func (b *buckets) take(key string, n int, now time.Time) (ok bool, wait time.Duration) {
	if b == nil {
		return true, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.swept) >= b.every {
		b.sweep(now)
	}
	lim := b.m[key]
	if lim == nil {
		if len(b.m) >= b.max {
			if now.Sub(b.swept) >= time.Second {
				b.sweep(now)
			}
			for k := range b.m {
				if len(b.m) < b.max {
					break
				}
				delete(b.m, k)
			}
		}
		lim = rate.NewLimiter(rate.Limit(b.rate.PerSecond), b.rate.Burst)
		b.m[key] = lim
	}
	if lim.AllowN(now, n) {
		return true, 0
	}
	missing := float64(n) - lim.TokensAt(now)
	return false, time.Duration(missing / b.rate.PerSecond * float64(time.Second))
}

// sweep drops the buckets that are full again.
func (b *buckets) sweep(now time.Time) {
	b.swept = now
	for k, lim := range b.m {
		if lim.TokensAt(now) >= float64(b.rate.Burst) {
			delete(b.m, k)
		}
	}
}

// size returns the number of buckets held.
func (b *buckets) size() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}
