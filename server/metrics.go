package server

import "github.com/pushgate/pushgate/server/observe"

// Metrics are pushgate's Prometheus metrics (package observe): one serves
// one server, and cmd/pushgate hands the same one to the broker
// (Observer), to the Redis client (RedisHook) and to New (Config.Metrics).
type Metrics = observe.Metrics

// NewMetrics returns a fresh set of metrics in its own registry.
func NewMetrics() *Metrics { return observe.NewMetrics() }
