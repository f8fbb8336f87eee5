package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
)

const idempotentSend = `mutation($in: SendInput!) { send(input: $in) { duplicate message { id data } } }`

type sendAnswer struct {
	Data struct {
		Send *struct {
			Duplicate bool `json:"duplicate"`
			Message   struct {
				ID   string          `json:"id"`
				Data json.RawMessage `json:"data"`
			} `json:"message"`
		} `json:"send"`
	} `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

func (e *env) idempotentSend(t *testing.T, channel, key string, data any) sendAnswer {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": idempotentSend, "variables": map[string]any{
		"in": map[string]any{"channel": channel, "data": data, "idempotencyKey": key}}})
	_, _, raw := postRaw(t, e.url+"/graphql", testKey, nil, body)
	var out sendAnswer
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return out
}

// TestRedisStalledSendsFailWithinTimeoutStoredUnknown: while Redis is
// stalled (DEBUG SLEEP on the test's own redis-server), 41 concurrent sends
// all answer UNAVAILABLE before Redis wakes (PublishTimeout 300 ms, through
// a client made by ParseRedisURL as pushgate makes it): none hangs. Those
// whose script was sent say extensions.stored "unknown"; those still
// queued for a pipeline were never sent and say nothing more. Redis then
// runs the scripts it had received: the "unknown" messages are stored
// after all, and a retry with the same idempotencyKey returns each of them
// (the stored message, its id, duplicate true), while the others are
// stored by their retry: one copy of each.
func TestRedisStalledSendsFailWithinTimeoutStoredUnknown(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs("--enable-debug-command", "yes"))
	opts, err := pubsub.ParseRedisURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewUniversalClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	admin := srv.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	b, err := pubsub.NewRedis(ctx, client, pubsub.RedisOptions{Options: pubsub.Options{PublishTimeout: 300 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	e := startEnv(t, testConfig(), b)
	if a := e.idempotentSend(t, "stalled", "warm", "warm"); len(a.Errors) != 0 {
		t.Fatalf("warm-up: %+v", a.Errors)
	}

	asleep := make(chan error, 1)
	go func() { asleep <- admin.Do(context.Background(), "DEBUG", "SLEEP", 3).Err() }()
	// DEBUG SLEEP answers nothing until it ends: wait for Redis to stop
	// answering instead.
	hostileWait(t, "Redis asleep", func() bool {
		pctx, pcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer pcancel()
		return client.Ping(pctx).Err() != nil
	})

	const n = 40
	answers := make([]sendAnswer, n+1)
	took := make([]time.Duration, n+1)
	var wg sync.WaitGroup
	for i := range n + 1 {
		wg.Go(func() {
			start := time.Now()
			answers[i] = e.idempotentSend(t, "stalled", fmt.Sprintf("key-%d", i), i)
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	select {
	case err := <-asleep:
		t.Fatalf("Redis woke (%v) before every send answered: the sleep is too short for this machine", err)
	default:
	}
	var slowest time.Duration
	unknown := map[int]bool{}
	for i, a := range answers {
		slowest = max(slowest, took[i])
		if a.Data.Send != nil || len(a.Errors) != 1 || a.Errors[0].Extensions["code"] != "UNAVAILABLE" {
			t.Fatalf("send %d while Redis sleeps: %+v", i, a)
		}
		switch a.Errors[0].Extensions["stored"] {
		case "unknown":
			unknown[i] = true
		case nil: // never sent: queued behind the pipelines Redis held
		default:
			t.Fatalf("send %d while Redis sleeps: %+v", i, a)
		}
	}
	if len(unknown) == 0 {
		t.Fatal("no send reached the sleeping Redis")
	}
	t.Logf("%d concurrent sends into a sleeping Redis answered UNAVAILABLE, %d of them stored unknown, the slowest in %v (publish timeout 300ms)",
		n+1, len(unknown), slowest)

	if err := <-asleep; err != nil {
		t.Fatal(err)
	}
	// Redis runs what it had received: the messages of the sends that said
	// "unknown" (and only those) may be stored now.
	stored := map[string]string{} // data -> id
	for _, m := range e.history(t, "stalled") {
		stored[string(m.Data)] = m.ID
	}
	for i := range n + 1 {
		if _, ok := stored[fmt.Sprint(i)]; ok && !unknown[i] {
			t.Fatalf("send %d said it was not stored, and it was", i)
		}
	}
	t.Logf("%d of the %d sends whose outcome was unknown were stored after all", len(stored)-1, len(unknown))
	for i := range n + 1 {
		a := e.idempotentSend(t, "stalled", fmt.Sprintf("key-%d", i), i)
		id, wasStored := stored[fmt.Sprint(i)]
		if len(a.Errors) != 0 || a.Data.Send == nil || a.Data.Send.Duplicate != wasStored || string(a.Data.Send.Message.Data) != fmt.Sprint(i) ||
			(wasStored && a.Data.Send.Message.ID != id) {
			t.Fatalf("retry of send %d (stored unknown: %v, stored as %q): %+v", i, unknown[i], id, a)
		}
	}
	if ids := e.ids(t, "stalled"); len(ids) != n+2 {
		t.Fatalf("after the retries: %d messages, want %d (each once)", len(ids), n+2)
	}
}

// history returns channel's newest 1000 messages, read with the test key.
func (e *env) history(t *testing.T, channel string) []message {
	t.Helper()
	var out struct {
		History struct {
			Nodes []message `json:"nodes"`
		} `json:"history"`
	}
	e.do(t, testKey, `query($ch: String!) { history(channel: $ch, last: 1000) { nodes { id data } } }`,
		map[string]any{"ch": channel}).decode(t, &out)
	return out.History.Nodes
}
