package main

import "testing"

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
