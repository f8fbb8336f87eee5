package testbuild

import (
	"slices"
	"strings"
	"testing"
)

func TestBuildFlags(t *testing.T) {
	if got := BuildFlags(); slices.Contains(got, "-race") != Race {
		t.Fatalf("BuildFlags() = %v in a binary with Race = %v", got, Race)
	}
}

func TestRaceReport(t *testing.T) {
	first := "WARNING: DATA RACE\nWrite at 0x00c by goroutine 7:\n  main.f()\n"
	second := "WARNING: DATA RACE\nRead at 0x00d by goroutine 9:\n"
	for _, tc := range []struct{ out, want string }{
		{"", ""},
		{`{"level":"info","message":"pushgate listening"}` + "\n", ""},
		{"==================\n" + first + "==================\n", first + "==================\n"},
		{first + second, first},
		{first + strings.Repeat("x", 9000), (first + strings.Repeat("x", 9000))[:8<<10]},
	} {
		if got := RaceReport(tc.out); got != tc.want {
			t.Errorf("RaceReport(%.40q) = %.60q, want %.60q", tc.out, got, tc.want)
		}
	}
}
