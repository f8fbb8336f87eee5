package server

import (
	"strconv"
	"testing"
)

// TestFeedPlansBounded: past maxFeedPlans distinct selections, a new one
// gets a plan of its own that is not kept; known selections still share
// theirs.
func TestFeedPlansBounded(t *testing.T) {
	ps := newFeedPlans()
	sel := func(i int) []planField { return []planField{{key: "k" + strconv.Itoa(i), field: fID}} }
	first := ps.intern(sel(0), nil)
	for i := 1; i < maxFeedPlans+100; i++ {
		ps.intern(sel(i), nil)
	}
	if n := len(ps.plans); n != maxFeedPlans {
		t.Fatalf("%d plans kept, want %d", n, maxFeedPlans)
	}
	if ps.intern(sel(0), nil) != first {
		t.Fatal("a known selection got a new plan")
	}
	a, b := ps.intern(sel(maxFeedPlans+500), nil), ps.intern(sel(maxFeedPlans+500), nil)
	if a == b || len(a.message) != 1 || a.message[0].key != "k"+strconv.Itoa(maxFeedPlans+500) {
		t.Fatalf("a selection past the bound: %+v %+v", a, b)
	}
}
