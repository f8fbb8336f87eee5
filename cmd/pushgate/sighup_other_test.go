//go:build !unix

package main

import "testing"

// sighup: a process cannot send itself SIGHUP here; the reload on a file
// change is tested instead.
func sighup(t *testing.T) error {
	t.Helper()
	t.Skip("no SIGHUP on this platform")
	return nil
}
