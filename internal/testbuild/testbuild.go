// Package testbuild serves the tests that build pushgate and spawn it as a
// process of its own (e2e, cmd/pushbench): a test binary built with the
// race detector builds those servers with it too, so `go test -race` (as
// `make test` runs it) checks the spawned servers as well as the test, and
// RaceReport finds what the detector wrote in a server's output. It is
// test support: no pushgate binary imports it.
package testbuild

import "strings"

// BuildFlags returns the flags to pass to `go build` for a server a test
// spawns: -race when the test itself runs with the race detector.
func BuildFlags() []string {
	if Race {
		return []string{"-race"}
	}
	return nil
}

// raceMarker opens every report of the race detector.
const raceMarker = "WARNING: DATA RACE"

// RaceReport returns the first race report in a spawned process's output
// (up to the next report or 8 KB), or "" when there is none.
func RaceReport(out string) string {
	i := strings.Index(out, raceMarker)
	if i < 0 {
		return ""
	}
	rest := out[i:]
	if j := strings.Index(rest[len(raceMarker):], raceMarker); j >= 0 {
		rest = rest[:len(raceMarker)+j]
	}
	if len(rest) > 8<<10 {
		rest = rest[:8<<10]
	}
	return rest
}
