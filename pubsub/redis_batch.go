package pubsub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// publishBatcher sends the publish scripts of concurrent sends to Redis
// together: the commands queued while a pipeline is on its way go in the
// next one, one write and one read for all of them, on both sides, instead
// of a round trip, a wake-up of redis-server and of the caller each. The
// first caller to find fewer than maxBatchLeaders pipelines in flight
// leads: it sends what is queued, its own command included, from its own
// goroutine, and goes on while its command is queued; once it is done, a
// goroutine of its own takes over what is left. Each command keeps its own
// reply and error. Commands of one caller stay in order (it waits for each),
// and concurrent sends have no order to keep.
type publishBatcher struct {
	client  redis.Cmdable
	timeout time.Duration // of one pipeline
	mu      sync.Mutex
	queue   []*batchCall
	leaders int
}

type batchCall struct {
	cmd  redis.Cmder
	done chan struct{} // closed once cmd has its reply or error
}

const (
	// maxBatchLeaders is how many pipelines may be in flight at once: one
	// on its way while Redis runs the other keeps Redis busy.
	maxBatchLeaders = 2
	// maxBatch bounds the commands of one pipeline.
	maxBatch = 64
)

// errNotSent: ctx ended while the command was still queued; it was taken
// out of the queue and never sent.
var errNotSent = errors.New("publish not sent: timed out waiting for a pipeline")

// do runs cmd in a pipeline. It returns errNotSent (wrapping ctx's error)
// when ctx ends while cmd is still queued, and ctx's error when ctx ends
// while a pipeline led by another caller carries cmd: cmd's outcome is
// then unknown, as when a reply is lost, and cmd must not be read.
//
// The caller leads a pipeline when fewer than maxBatchLeaders are in
// flight and its command goes in the first one it sends, which it sends
// from its own goroutine within b.timeout and ctx's deadline (the
// leader's own wait is bounded as the others'); the commands queued
// meanwhile are left to a goroutine of its own.
func (b *publishBatcher) do(ctx context.Context, cmd redis.Cmder) error {
	c := &batchCall{cmd: cmd, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	lead := b.leaders < maxBatchLeaders
	if lead {
		b.leaders++
	}
	first := len(b.queue) <= maxBatch // c goes in the next pipeline
	b.mu.Unlock()
	if lead {
		if !first {
			go b.lead(ctx, nil)
		} else if b.lead(ctx, c); isDone(c) {
			return nil
		}
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		if b.unqueue(c) {
			return fmt.Errorf("%w: %w", errNotSent, ctx.Err())
		}
		return ctx.Err()
	}
}

// unqueue takes c out of the queue; false: a pipeline has taken it.
func (b *publishBatcher) unqueue(c *batchCall) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, q := range b.queue {
		if q == c {
			b.queue = append(b.queue[:i], b.queue[i+1:]...)
			return true
		}
	}
	return false
}

// lead sends the queue's commands, a pipeline at a time, until the queue is
// empty, or until own is done: then a goroutine goes on in its place.
func (b *publishBatcher) lead(ctx context.Context, own *batchCall) {
	var batch []*batchCall
	for {
		b.mu.Lock()
		n := min(len(b.queue), maxBatch)
		if n == 0 {
			b.leaders--
			b.mu.Unlock()
			return
		}
		if own != nil && isDone(own) {
			b.mu.Unlock()
			go b.lead(ctx, nil)
			return
		}
		batch = append(batch[:0], b.queue[:n]...)
		rest := copy(b.queue, b.queue[n:])
		clear(b.queue[rest:])
		b.queue = b.queue[:rest]
		if cap(b.queue) > 1024 && rest == 0 {
			b.queue = nil // a burst's
		}
		b.mu.Unlock()
		b.exec(ctx, batch, own != nil)
		clear(batch)
	}
}

func isDone(c *batchCall) bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// exec sends batch as one pipeline, within the batcher's timeout whatever
// ctx allows (it is one caller's of many), and, when the leader's own
// command is in it (mine), within ctx's deadline too; each command gets
// its reply or error.
func (b *publishBatcher) exec(ctx context.Context, batch []*batchCall, mine bool) {
	deadline := time.Now().Add(b.timeout)
	if d, ok := ctx.Deadline(); ok && mine && d.Before(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	cmds := make([]redis.Cmder, len(batch))
	for i, c := range batch {
		cmds[i] = c.cmd
	}
	_, _ = b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, cmd := range cmds {
			_ = p.Process(ctx, cmd)
		}
		return nil
	})
	for _, c := range batch {
		close(c.done)
	}
}
