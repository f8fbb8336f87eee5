package pubsub

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushgate/pushgate/internal/redistest"
)

// TestPublishBatcher: commands from many goroutines at once are sent in
// pipelines of several, each gets its own reply (in order per goroutine),
// every caller returns, and a caller whose context ends returns its error
// while the others go on.
func TestPublishBatcher(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	ctx := context.Background()
	var calls, batches int
	var mu sync.Mutex
	client.AddHook(pipelineCounter{func(n int) { mu.Lock(); batches++; calls += n; mu.Unlock() }})
	b := &publishBatcher{client: client, timeout: 10 * time.Second}

	const goroutines, each = 32, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			key := "batch:" + strconv.Itoa(g)
			for i := 1; i <= each; i++ {
				cmd := redis.NewIntCmd(ctx, "incr", key)
				if err := b.do(ctx, cmd); err != nil {
					errs <- err
					return
				}
				if n, err := cmd.Result(); err != nil || n != int64(i) {
					errs <- errors.New(key + ": INCR " + strconv.FormatInt(n, 10) + " at call " + strconv.Itoa(i))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	mu.Lock()
	if calls < goroutines*each || batches > calls/2 {
		t.Errorf("%d commands in %d pipelines", calls, batches)
	}
	mu.Unlock()
	b.mu.Lock()
	if b.leaders != 0 || len(b.queue) != 0 {
		t.Errorf("%d leaders, %d queued after the last reply", b.leaders, len(b.queue))
	}
	b.mu.Unlock()

	// A caller that gives up while others lead, its command still queued,
	// returns its context's error and errNotSent: its command is taken out
	// of the queue, never sent (the caller knows nothing was stored).
	b.mu.Lock()
	b.leaders = maxBatchLeaders // as if they were busy
	b.mu.Unlock()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.do(short, redis.NewIntCmd(ctx, "incr", "batch:late")); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, errNotSent) {
		t.Fatalf("a call past its deadline: %v", err)
	}
	b.mu.Lock()
	b.leaders = 0
	b.mu.Unlock()
	cmd := redis.NewIntCmd(ctx, "incr", "batch:late")
	if err := b.do(ctx, cmd); err != nil || cmd.Val() != 1 {
		t.Fatalf("the next call: %v, %d", err, cmd.Val())
	}
}

// pipelineCounter reports the size of every pipeline.
type pipelineCounter struct{ n func(int) }

func (pipelineCounter) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n(len(cmds))
		return next(ctx, cmds)
	}
}
