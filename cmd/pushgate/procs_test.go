package main

import (
	"runtime"
	"runtime/metrics"
	"testing"
)

// TestGoMaxProcs: auto adds two processors where the process may use
// every CPU and keeps Go's default under a quota; a number is taken as it
// is, and 0 is Go's default.
func TestGoMaxProcs(t *testing.T) {
	for _, c := range []struct{ setting, goDefault, cpus, want int }{
		{-1, 2, 2, 4},
		{-1, 64, 64, 66},
		{-1, 2, 64, 2}, // a 2-CPU quota on a 64-CPU machine
		{0, 2, 2, 2},
		{3, 2, 2, 3},
		{1, 8, 8, 1},
	} {
		if got := goMaxProcs(c.setting, c.goDefault, c.cpus); got != c.want {
			t.Errorf("setting %d, Go's default %d, %d CPUs: %d, want %d", c.setting, c.goDefault, c.cpus, got, c.want)
		}
	}
}

// TestRunSetsProcessorsAndGC: run applies --gomaxprocs and the collector's
// minimum heap while it serves, and restores both when it returns.
func TestRunSetsProcessorsAndGC(t *testing.T) {
	gogc := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	procs, percent := runtime.GOMAXPROCS(0), gogc()
	p := start(t, "--gomaxprocs", "3", "--gc-min-heap-mb", "256")
	runtime.GC() // the tuner sets GOGC after a collection
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("GOMAXPROCS %d while serving, want 3", got)
	}
	if got := gogc(); got <= 100 {
		t.Errorf("GOGC %d while serving with a 256 MB minimum heap", got)
	}
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS %d after run, want %d", got, procs)
	}
	if got := gogc(); got != percent {
		t.Errorf("GOGC %d after run, want %d", got, percent)
	}
}
