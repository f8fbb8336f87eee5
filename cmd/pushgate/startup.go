package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/internal/httperr"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
)

// gate is the listener's handler from the moment pushgate listens: until
// open installs the server, it answers /healthz 200 (the process is alive:
// an orchestrator must not restart it for waiting) and everything else,
// /readyz included, 503 UNAVAILABLE with why. Listening before the store
// is open lets pushgate start before its Redis, as orchestrators often
// start them, instead of exiting and being restarted in a loop.
type gate struct {
	next    atomic.Pointer[http.Handler]
	waiting atomic.Pointer[string] // why it is not ready yet
}

func newGate() *gate {
	g := new(gate)
	g.wait("pushgate is starting")
	return g
}

// wait sets the message of the 503 answers.
func (g *gate) wait(why string) { g.waiting.Store(&why) }

// open hands every request from now on to h.
func (g *gate) open(h http.Handler) { g.next.Store(&h) }

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := g.next.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	if r.URL.Path == "/healthz" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok")
		return
	}
	w.Header().Set("Retry-After", "1")
	httperr.Write(w, http.StatusServiceUnavailable, graph.CodeUnavailable, *g.waiting.Load())
}

// store is what openBroker opens.
type store struct {
	broker   pubsub.Broker
	desc     string
	close    func()
	presence func(pubsub.PresenceChange) pubsub.Presence
	client   redis.UniversalClient
}

// waitForStore opens the store the configuration names. A Redis that does
// not answer is tried again, backing off to one try a second, until
// --redis-wait has passed (a try then in progress, bounded by openBroker,
// still runs to its end): then the error names --redis-url and
// --redis-wait, with the last failure. Meanwhile g answers 503 saying so,
// and the log says it every 5 seconds. It returns ctx's error when ctx
// ends first (pushgate was stopped while waiting).
func waitForStore(ctx context.Context, cfg config, metrics *server.Metrics, log zerolog.Logger, g *gate, addr string) (store, error) {
	deadline := time.Now().Add(cfg.RedisWait)
	// go-redis logs each failed dial (three a try): while waiting, the
	// line every 5 seconds below says it. Once open, its logs (dial
	// failures during an outage, Sentinel switches) become JSON lines
	// like the rest.
	redis.SetLogger(redisLog{zerolog.Nop()})
	defer redis.SetLogger(redisLog{log.With().Str("component", "redis").Logger()})
	var logged time.Time
	backoff := 50 * time.Millisecond
	for {
		var s store
		var err error
		s.broker, s.desc, s.close, s.presence, s.client, err = openBroker(ctx, cfg, metrics, log)
		switch {
		case err == nil:
			return s, nil
		case ctx.Err() != nil:
			return store{}, ctx.Err()
		case cfg.Redis == nil:
			return store{}, err
		case cfg.RedisWait == 0:
			return store{}, fmt.Errorf("%w (--redis-wait 0s: tried once)", err)
		case !time.Now().Before(deadline):
			return store{}, fmt.Errorf("gave up after --redis-wait %v: %w", cfg.RedisWait, err)
		}
		g.wait("waiting for Redis to answer: " + err.Error())
		if time.Since(logged) >= 5*time.Second {
			logged = time.Now()
			log.Warn().Err(err).Str("addr", addr).Str("redis_wait", cfg.RedisWait.String()).
				Msg("waiting for Redis: /healthz answers 200, /readyz 503 until it answers")
		}
		select {
		case <-time.After(min(backoff, time.Until(deadline))):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, time.Second)
	}
}
