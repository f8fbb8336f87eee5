package main

import (
	"crypto/sha256"
	"testing"
	"time"
)

// TestSelfCPU: pushbench's own CPU time is positive and grows while it
// works (a broken reading stays at zero or stands still).
func TestSelfCPU(t *testing.T) {
	start, err := selfCPU()
	if err != nil {
		t.Fatal(err)
	}
	if start <= 0 {
		t.Fatalf("selfCPU = %v after starting up, want > 0", start)
	}
	var sum [32]byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		for range 10000 {
			sum = sha256.Sum256(sum[:])
		}
		now, err := selfCPU()
		if err != nil {
			t.Fatal(err)
		}
		if now > start {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("selfCPU stayed at %v for 10 s of hashing", start)
		}
	}
}
