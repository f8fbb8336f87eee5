package server

import (
	"context"
	"errors"
	"net"
	"os"

	"github.com/pushgate/pushgate/server/observe"
)

// Metrics are pushgate's Prometheus metrics (package observe): one serves
// one server, and cmd/pushgate hands the same one to the broker
// (Observer), to the Redis client (RedisHook) and to New (Config.Metrics).
type Metrics = observe.Metrics

// NewMetrics returns a fresh set of metrics in its own registry.
func NewMetrics() *Metrics { return observe.NewMetrics() }

// isTimeout reports whether a write failed for its deadline: the client
// did not take it in time.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// shuttingDown reports whether ctx ended because the node shuts down.
func shuttingDown(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), ErrShutdown)
}
