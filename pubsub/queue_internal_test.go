package pubsub

import "testing"

// TestEventQueue: first in, first out across the ring's wrap and growth;
// full at max; a drained queue keeps only idleQueue slots; a push or pop
// leaves a token on ready or space only when a consumer or producer waits
// there.
func TestEventQueue(t *testing.T) {
	const max = 16
	q := newEventQueue(max)
	if len(q.ring) != 0 {
		t.Fatalf("a new queue holds %d slots", len(q.ring))
	}
	msg := func(i int) item { return item{msg: &Message{Offset: uint64(i)}} }
	next, popped := 0, 0
	// Interleaved, so that the ring wraps before it grows.
	for round := range 3 {
		for range 3 {
			if !q.push(msg(next)) {
				t.Fatalf("round %d: push %d refused", round, next)
			}
			next++
		}
		for range 2 {
			it, ok := q.pop()
			if !ok || it.msg.Offset != uint64(popped) {
				t.Fatalf("pop: %v %v, want %d", it.msg, ok, popped)
			}
			popped++
		}
	}
	for q.len() < max {
		if !q.push(msg(next)) {
			t.Fatalf("push refused at %d of %d", q.len(), max)
		}
		next++
	}
	select {
	case <-q.ready:
		t.Fatal("a ready token, with no consumer waiting")
	default:
	}
	if q.put(msg(next), true) {
		t.Fatal("push beyond max accepted")
	}
	if q.writers != 1 {
		t.Fatalf("a producer to wait on a full queue: %d writers", q.writers)
	}
	for popped < next {
		it, ok := q.pop()
		if !ok || it.msg.Offset != uint64(popped) {
			t.Fatalf("pop: %v %v, want %d", it.msg, ok, popped)
		}
		popped++
	}
	select {
	case <-q.space:
	default:
		t.Fatal("no space token after a pop, with a producer waiting")
	}
	q.waited(&q.writers)
	if _, ok := q.take(true); ok {
		t.Fatal("pop from an empty queue")
	}
	if q.readers != 1 {
		t.Fatalf("a consumer to wait on an empty queue: %d readers", q.readers)
	}
	q.push(msg(next))
	select {
	case <-q.ready:
	default:
		t.Fatal("no ready token after a push, with a consumer waiting")
	}
	q.waited(&q.readers)
	q.pop()
	q.push(msg(next))
	select {
	case <-q.ready:
		t.Fatal("a ready token, with no consumer waiting any more")
	default:
	}
	q.pop()
	if len(q.ring) > idleQueue {
		t.Fatalf("a drained queue keeps %d slots, want at most %d", len(q.ring), idleQueue)
	}
}
