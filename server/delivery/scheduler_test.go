package delivery

import (
	"sync/atomic"
	"testing"
	"time"
)

// countFlusher counts its flushes; the first ones push more streams, as a
// fan-out does while the writers work.
type countFlusher struct {
	n    *atomic.Int64
	more func()
}

func (f countFlusher) flush() {
	f.n.Add(1)
	if f.more != nil {
		f.more()
	}
}

// TestStreamWriters: every stream handed to the writers is flushed once, on
// at most max goroutines that end when the queue is empty, whether the
// streams come before or while the writers work.
func TestStreamWriters(t *testing.T) {
	for _, max := range []int{1, 2, 3} {
		ws := &Writers{max: max, delay: time.Millisecond}
		var flushed atomic.Int64
		var running, peak atomic.Int64
		const n = 1000
		for i := range n {
			var more func()
			if i%10 == 0 {
				more = func() { ws.push(countFlusher{n: &flushed}, false) } // one more each
			}
			ws.push(countFlusher{n: &flushed, more: func() {
				if r := running.Add(1); r > peak.Load() {
					peak.Store(r)
				}
				if more != nil {
					more()
				}
				running.Add(-1)
			}}, i%3 == 0) // a third wait out the delay first
		}
		want := int64(n + n/10)
		deadline := time.Now().Add(10 * time.Second)
		for flushed.Load() < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		for {
			ws.mu.Lock()
			active := ws.active
			ws.mu.Unlock()
			if active == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		ws.mu.Lock()
		active, queued := ws.active, len(ws.queue)+len(ws.later)
		ws.mu.Unlock()
		if got := flushed.Load(); got != want || active != 0 || queued != 0 {
			t.Fatalf("max %d: %d flushes of %d, %d writers left, %d queued", max, got, want, active, queued)
		}
		if p := peak.Load(); p > int64(max) {
			t.Fatalf("max %d: %d writers at once", max, p)
		}
	}
}

// TestWriteTurnDelay: a stream handed again within the writers' delay of
// its last turn waits in later until the delay is out, then is flushed
// once; one whose last turn is older, or with half a write pending, is
// queued at once.
func TestWriteTurnDelay(t *testing.T) {
	ws := &Writers{max: 1, delay: time.Hour}
	var turn writeTurn
	var flushed atomic.Int64
	f := countFlusher{n: &flushed}
	turn.hand(ws, f, 0) // never taken: at once
	waitFor(t, func() bool { return flushed.Load() == 1 })
	if !turn.take() {
		t.Fatal("take failed")
	}
	turn.mu.Unlock()
	turn.hand(ws, f, 0) // just taken: later
	turn.hand(ws, f, 0) // queued already: nothing
	ws.mu.Lock()
	later, queued := len(ws.later), len(ws.queue)
	ws.mu.Unlock()
	if later != 1 || queued != 0 || flushed.Load() != 1 {
		t.Fatalf("handed within the delay: %d later, %d queued, %d flushed; want 1, 0, 1", later, queued, flushed.Load())
	}
	ws.timer.Reset(0) // the delay is out
	waitFor(t, func() bool { return flushed.Load() == 2 })
	ws.mu.Lock()
	later = len(ws.later)
	ws.mu.Unlock()
	if later != 0 {
		t.Fatalf("%d still later after the delay", later)
	}
	turn.take()
	turn.mu.Unlock()
	turn.last.Add(-int64(2 * time.Hour)) // the last turn is older than the delay
	turn.hand(ws, f, 0)
	waitFor(t, func() bool { return flushed.Load() == 3 })

	// Half a write pending: no waiting, neither handed anew nor when
	// waiting already.
	turn.take()
	turn.mu.Unlock()
	turn.hand(ws, f, maxCoalesce/2)
	waitFor(t, func() bool { return flushed.Load() == 4 })
	turn.take()
	turn.mu.Unlock()
	turn.hand(ws, f, 1) // waits
	ws.mu.Lock()
	later = len(ws.later)
	ws.mu.Unlock()
	if later != 1 {
		t.Fatalf("%d later, want 1", later)
	}
	turn.hand(ws, f, maxCoalesce/2) // the queue filled meanwhile
	waitFor(t, func() bool { return flushed.Load() == 5 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}
