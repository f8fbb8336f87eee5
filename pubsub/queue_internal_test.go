package pubsub

import "testing"

// TestEventQueue: first in, first out across the ring's wrap and growth;
// full at max; a drained queue keeps only idleQueue slots; every push
// leaves a token on ready and every pop one on space.
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
	if q.push(msg(next)) {
		t.Fatal("push beyond max accepted")
	}
	select {
	case <-q.ready:
	default:
		t.Fatal("no ready token after a push")
	}
	for popped < next {
		it, ok := q.pop()
		if !ok || it.msg.Offset != uint64(popped) {
			t.Fatalf("pop: %v %v, want %d", it.msg, ok, popped)
		}
		popped++
	}
	if _, ok := q.pop(); ok {
		t.Fatal("pop from an empty queue")
	}
	select {
	case <-q.space:
	default:
		t.Fatal("no space token after a pop")
	}
	if len(q.ring) > idleQueue {
		t.Fatalf("a drained queue keeps %d slots, want at most %d", len(q.ring), idleQueue)
	}
}
