package server_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/pushclient"
	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
)

// TestConnectionChurnRedisLeaksNothing: 10,000 connect/disconnect cycles
// over WebSocket, SSE and long-poll on a Redis broker with presence on,
// each cycle on a channel of its own (so per-channel state that is never
// released shows up). Afterwards goroutines and heap are back at their
// baseline, the node holds no PUB/SUB subscription to any of those
// channels, and no presence entry is left in Redis.
//
// TestConnectionChurnLeaksNothing churns 8 channels of a memory broker
// whose history fills up meanwhile, so its heap margin has to absorb the
// history; here history lives in Redis and the margin is tighter.
func TestConnectionChurnRedisLeaksNothing(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs("--appendonly", "no"))
	client := srv.Client(t)
	admin := srv.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	octx, ocancel := context.WithTimeout(ctx, waitTimeout)
	b, err := pubsub.NewRedis(octx, client, pubsub.RedisOptions{Options: pubsub.Options{HistorySize: 5}})
	ocancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	cfg := anonConfig()
	cfg.Namespaces = access.Namespaces{Named: map[string]access.Namespace{
		"churn": {Presence: true, AnonymousRead: true},
	}}
	// A TTL long enough that no refresh round runs during the test: the
	// entries left here are those a leave failed to remove (a refresh
	// racing with leaves is TestRedisPresenceRefreshRacesLeave's subject).
	var presences []pubsub.Presence
	cfg.Presence = func(on pubsub.PresenceChange) pubsub.Presence {
		p := pubsub.NewRedisPresence(client, "", 30*time.Minute, on)
		presences = append(presences, p)
		return p
	}
	e := startEnv(t, cfg, b)
	t.Cleanup(func() {
		for _, p := range presences {
			_ = p.Close()
		}
	})
	u, _ := url.Parse(e.url)

	cycle := func(i int) error {
		ch := fmt.Sprintf("churn:%d", i)
		switch i % 10 {
		case 0: // WebSocket, live once it delivers a message
			s, err := pushclient.OpenWS(ctx, e.url, []string{ch}, startCursorOf(ch), "")
			if err != nil {
				return err
			}
			defer s.Close()
			if _, err := b.Publish(ctx, pubsub.PublishRequest{Channel: ch, Data: []byte(`{"x":1}`)}); err != nil {
				return err
			}
			nctx, ncancel := context.WithTimeout(ctx, waitTimeout)
			defer ncancel()
			ev, err := s.Next(nctx)
			if err != nil || ev.Message == nil {
				return fmt.Errorf("ws on %s: %+v %v", ch, ev, err)
			}
			return nil
		case 1: // long-poll without and with a cursor
			r, err := pushclient.PollOnce(ctx, e.url, []string{ch}, "", "", 0)
			if err != nil {
				return err
			}
			_, err = pushclient.PollOnce(ctx, e.url, []string{ch}, r.Cursor, "", 0)
			return err
		default: // SSE on a raw connection, dropped once subscribed
			return rawSSEStart(u.Host, ch)
		}
	}
	const total, workers = 10000, 4
	churn := func(from, to int) { runCycles(t, from, to, workers, cycle) }
	// Warm up with the same concurrency: the Redis pool, buffers and the
	// HTTP client's idle connections reach their working size.
	churn(total+1, total+400)
	// Let the warm-up wind down before the baseline: no stream or
	// subscription left on the server, no PUB/SUB subscription or
	// presence entry left in Redis.
	waitMetrics(t, e.url, map[string]float64{
		`pushgate_connections{transport="websocket"}`:   0,
		`pushgate_connections{transport="sse"}`:         0,
		`pushgate_connections{transport="poll"}`:        0,
		`pushgate_subscriptions{transport="websocket"}`: 0,
		`pushgate_subscriptions{transport="sse"}`:       0,
	})
	eventually(t, "the warm-up to wind down", func() bool {
		n, err := admin.PubSubChannels(ctx, pubsub.DefaultRedisPrefix+"{churn:*").Result()
		keys, kerr := admin.Keys(ctx, pubsub.DefaultRedisPrefix+"{churn:*}:p").Result()
		return err == nil && len(n) == 0 && kerr == nil && len(keys) == 0
	})
	baseG, baseHeap := settle()

	began := time.Now()
	churn(1, total)
	took := time.Since(began)

	// Every channel's PUB/SUB subscription is released, and every
	// presence entry is gone (leaves are written when connections end).
	eventually(t, "the node to unsubscribe every churned channel", func() bool {
		n, err := admin.PubSubChannels(ctx, pubsub.DefaultRedisPrefix+"{churn:*").Result()
		return err == nil && len(n) == 0
	})
	eventually(t, "every presence entry to be removed", func() bool {
		keys, err := admin.Keys(ctx, pubsub.DefaultRedisPrefix+"{churn:*}:p").Result()
		return err == nil && len(keys) == 0
	})

	t.Logf("%d cycles in %v", total, took.Round(time.Millisecond))
	// 1 MiB over 10,000 cycles is about 100 bytes a cycle.
	backToBaseline(t, total, baseG, baseHeap, 1<<20)
}

// startCursorOf names the start of channels, before any message.
func startCursorOf(channels ...string) string {
	ps := make(map[string]pubsub.Position, len(channels))
	for _, ch := range channels {
		ps[ch] = pubsub.Position{}
	}
	return pubsub.NewCursor(ps).String()
}
