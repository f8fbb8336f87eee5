package server

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/pushgate/pushgate/pubsub"
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

// TestWSFeedEncoderFrames: each event the feed encoder appends is one
// WebSocket text frame whose header fits its length, whatever its size
// (2-byte header up to 125 bytes, 4 up to 65,535, 10 beyond: the 4-byte
// guess moved either way), and events appended one after another in a
// batch stay whole.
func TestWSFeedEncoderFrames(t *testing.T) {
	plan := newFeedPlans().intern([]planField{{key: "data", field: fData}}, nil)
	enc := &wsFeedEncoder{plan: plan, head: []byte(`{"id":"1","type":"next","payload":{"data":{"feed":`)}
	batch := []byte("prefix")
	var want []byte
	want = append(want, "prefix"...)
	for i, n := range []int{1, 60, 200, 70000, 3} {
		m := &pubsub.Message{Channel: "c", Offset: uint64(i + 1), Data: []byte(strconv.Quote(strings.Repeat("x", n)))}
		ev := pubsub.Event{Message: m}
		batch = enc.AppendEvent(batch, ev)
		payload := append(append([]byte(nil), enc.head...), plan.appendEvent(nil, ev)...)
		payload = append(payload, "}}}"...)
		var hdr [10]byte
		want = append(want, textFrameHeader(&hdr, len(payload))...)
		want = append(want, payload...)
	}
	if !bytes.Equal(batch, want) {
		t.Fatalf("batch of %d bytes differs from its frames (%d bytes)", len(batch), len(want))
	}
}
