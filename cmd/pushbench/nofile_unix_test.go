//go:build unix

package main

import "testing"

func TestRaiseNoFile(t *testing.T) {
	cur, err := raiseNoFile(64)
	if err != nil || cur < 64 {
		t.Fatalf("= %d, %v", cur, err)
	}
	if _, err := raiseNoFile(1 << 40); err == nil {
		t.Error("raised the limit to 2^40")
	}
}
