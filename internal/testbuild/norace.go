//go:build !race

package testbuild

// Race reports whether this binary was built with the race detector.
const Race = false
