package pubsub

import "time"

// ForgetAll makes a memory broker lose every channel's history and metadata,
// as a flushed store would; the contract suite uses it for resets.
func ForgetAll(b Broker) {
	m := b.(*broker).st.(*memStore)
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, c := range m.chans {
		c.mu.Lock()
		c.dead = true
		m.chans[name] = &memChan{watchers: c.watchers}
		c.mu.Unlock()
	}
}

// SetKeepWatchedEvery shortens how often the Redis store keeps watched
// channels' metadata alive; it returns a function restoring the default.
func SetKeepWatchedEvery(d time.Duration) (restore func()) {
	old := keepWatchedEvery
	keepWatchedEvery = d
	return func() { keepWatchedEvery = old }
}

// Sweep runs one round of a memory broker's janitor as if the clock read
// now, so tests control time instead of waiting for it.
func Sweep(b Broker, now time.Time) {
	b.(*broker).st.(*memStore).sweep(now)
}

// ResyncPending reports whether a Redis broker holds resyncs to retry
// (channels whose state could not be read when they were subscribed again).
func ResyncPending(b Broker) bool {
	return b.(*broker).st.(*redisStore).hasPending()
}
