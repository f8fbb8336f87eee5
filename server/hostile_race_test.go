//go:build race

package server_test

// raceEnabled: the race detector's runtime allocates on its own account
// and drops a quarter of what sync.Pool is given, so allocation bounds are
// measured without it.
const raceEnabled = true
