package wechat

import (
	"math/rand/v2"
	"time"
)

// Clock tells the time. The Service reads every time it compares (a
// notification's due time and age, an access token's expiry, a push's
// timestamp) from its Clock, so tests move time forward without waiting.
// Redis's own timers (key TTLs, the idle time of a claimed delivery) run on
// Redis's clock.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Backoff returns how long to wait before attempt (1 for the first retry).
type Backoff func(attempt int) time.Duration

// Backoff bounds of DefaultBackoff.
const (
	backoffBase = 2 * time.Second
	backoffMax  = 5 * time.Minute
)

// DefaultBackoff is exponential with full jitter: a random wait in
// [d/2, d) where d = 2 s × 2^(attempt-1), at most 5 minutes. Half the wait
// is kept so that a burst of retries after an outage does not come back at
// once, and a retry never comes sooner than half the nominal wait.
func DefaultBackoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := backoffMax
	if attempt < 20 {
		if e := backoffBase << (attempt - 1); e < backoffMax {
			d = e
		}
	}
	half := d / 2
	return half + rand.N(half)
}
