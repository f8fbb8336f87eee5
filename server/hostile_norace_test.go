//go:build !race

package server_test

// raceEnabled: see hostile_race_test.go.
const raceEnabled = false
