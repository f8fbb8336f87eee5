package server

import (
	"testing"
	"time"
)

// TestAppendTime: the cached formatting equals time.Format, on a miss, on a
// hit, and when another millisecond shares the slot.
func TestAppendTime(t *testing.T) {
	base := time.UnixMilli(1764150000123).In(time.FixedZone("CST", 8*3600))
	for _, at := range []time.Time{
		base, base, base.Add(time.Millisecond), base,
		base.Add(time.Duration(len(timeCache)) * time.Millisecond), base, // same slot, other ms
	} {
		want := at.UTC().Format(timeFormat)
		if got := string(appendTime([]byte("x"), at)); got != "x"+want {
			t.Fatalf("appendTime(%v) = %q, want %q", at, got, "x"+want)
		}
	}
}
