package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// A push server's live heap is small next to what it allocates: sending
// 44k messages a second keeps about 1 MB live and allocates 130 MB/s,
// and with the runtime's default GOGC=100 (a 4 MB goal at that size) the
// collector ran 108 times a second, stopping the world twice each time.
// gcTuner keeps the heap goal at least minHeap: after each collection it
// sets GOGC so that the goal is minHeap while the live heap is below half
// of it, and back to 100 above. A server holding many connections (tens of
// MB live) collects exactly as before.

// gcTuner sets GOGC after each collection; stop ends it.
type gcTuner struct {
	minHeap uint64
	mu      sync.Mutex
	stopped bool
	prev    int // the GOGC before, for stop
	percent int // the GOGC set last
	sample  []metrics.Sample
}

const (
	gcPercentFloor = 100   // the runtime's default
	gcPercentCeil  = 25600 // a 1 GiB minimum (and 4 MB)
)

// startGCTuner starts tuning for minHeap bytes; 0 tunes nothing.
func startGCTuner(minHeap uint64) *gcTuner {
	t := &gcTuner{minHeap: minHeap, percent: gcPercentFloor,
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}}
	if minHeap == 0 {
		return t
	}
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(gogc)
	t.prev = int(gogc[0].Value.Uint64())
	t.tune()
	t.arm()
	return t
}

// arm has tune run after the next collection: a finalizer runs once the
// object it is set on was found unreachable, that is after a cycle.
func (t *gcTuner) arm() {
	sentinel := new([16]byte)
	runtime.SetFinalizer(sentinel, func(*[16]byte) {
		if t.tune() {
			t.arm()
		}
	})
}

// tune sets GOGC for the live heap measured by the last collection; false:
// the tuner was stopped.
func (t *gcTuner) tune() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	metrics.Read(t.sample)
	var v [3]uint64 // live heap, stacks, globals
	for i, smp := range t.sample {
		if smp.Value.Kind() == metrics.KindUint64 {
			v[i] = smp.Value.Uint64()
		}
	}
	p := gcPercentFor(v[0], v[0]+v[1]+v[2], t.minHeap)
	// Small changes are not worth a call into the runtime.
	if p != t.percent && (p == gcPercentFloor || p < t.percent*9/10 || p > t.percent*11/10) {
		debug.SetGCPercent(p)
		t.percent = p
	}
	return true
}

// gcPercentFor is the GOGC whose goal is minHeap, but never below the
// default. The runtime's goal is live + scannable*GOGC/100 (scannable: the
// live heap, the goroutine stacks and the globals), and at least
// 4 MB*GOGC/100.
func gcPercentFor(live, scannable, minHeap uint64) int {
	if live*2 >= minHeap {
		return gcPercentFloor
	}
	p := minHeap * 100 / (4 << 20)
	if scannable > 0 {
		p = min(p, (minHeap-live)*100/scannable)
	}
	return int(min(gcPercentCeil, max(gcPercentFloor, p)))
}

// stop ends the tuning and restores the GOGC from before.
func (t *gcTuner) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.minHeap == 0 || t.stopped {
		return
	}
	t.stopped = true
	debug.SetGCPercent(t.prev)
}
