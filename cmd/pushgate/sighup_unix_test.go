//go:build unix

package main

import (
	"os"
	"syscall"
	"testing"
)

// sighup sends this process SIGHUP, as an operator's kill -HUP does.
func sighup(*testing.T) error { return syscall.Kill(os.Getpid(), syscall.SIGHUP) }
