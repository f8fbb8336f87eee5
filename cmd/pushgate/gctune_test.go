package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// TestGCPercentFor: the goal the runtime derives from the percent is the
// minimum heap while the live heap is small, and the default percent
// stands once it is half of that.
func TestGCPercentFor(t *testing.T) {
	const mb = 1 << 20
	goal := func(live, scannable uint64, p int) uint64 {
		return max(live+scannable*uint64(p)/100, 4*mb*uint64(p)/100)
	}
	for _, c := range []struct {
		live, scannable, min uint64
		want                 int
	}{
		{1 * mb, 1*mb + 300<<10, 64 * mb, 1600},  // the floor term: 4 MB*16
		{10 * mb, 11 * mb, 64 * mb, 490},         // the live term: 10 + 11*4.9
		{32 * mb, 33 * mb, 64 * mb, 100},         // half the minimum: the default
		{500 * mb, 510 * mb, 64 * mb, 100},       // many connections
		{0, 0, 64 * mb, 1600},                    // before the first collection
		{1 * mb, 2 * mb, 8 << 30, gcPercentCeil}, // bounded
	} {
		got := gcPercentFor(c.live, c.scannable, c.min)
		if got != c.want {
			t.Errorf("live %d MB, min %d MB: GOGC %d, want %d", c.live/mb, c.min/mb, got, c.want)
		}
		if got > 100 && got < gcPercentCeil {
			if g := goal(c.live, c.scannable, got); g > c.min || g < c.min*9/10 {
				t.Errorf("live %d MB, min %d MB: GOGC %d makes a %d MB goal", c.live/mb, c.min/mb, got, g/mb)
			}
		}
	}
}

// TestGCTuner: a running tuner raises GOGC for the small heap of a test
// process and keeps it raised across collections; stop restores the GOGC
// from before, and a tuner for 0 bytes changes nothing.
func TestGCTuner(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(150))
	startGCTuner(0).stop()
	if p := debug.SetGCPercent(150); p != 150 {
		t.Fatalf("a tuner for 0 bytes set GOGC %d", p)
	}
	tu := startGCTuner(256 << 20)
	for range 3 {
		runtime.GC()
	}
	tu.mu.Lock()
	p := tu.percent
	tu.mu.Unlock()
	if p <= 100 {
		t.Fatalf("GOGC %d for a 256 MB minimum", p)
	}
	if got := debug.SetGCPercent(p); got != p {
		t.Fatalf("the runtime has GOGC %d, the tuner set %d", got, p)
	}
	tu.stop()
	if got := debug.SetGCPercent(150); got != 150 {
		t.Fatalf("after stop GOGC is %d, want the 150 from before", got)
	}
}
