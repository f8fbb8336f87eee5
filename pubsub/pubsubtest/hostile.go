package pubsubtest

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/pushgate/pushgate/pubsub"
)

// HostileOffsets are cursor offsets a client can forge that no store ever
// reaches: they overflow any arithmetic done on them (2^63 turns negative
// as an int, 2^64-1 wraps to 0 when one is added).
var HostileOffsets = []uint64{1 << 63, math.MaxUint64 - 1, math.MaxUint64}

// testCursorBeyondTop: a position beyond the channel's newest message, up
// to 2^64-1, gives subscribers a Reset with ResetUnknownPosition (then
// every retained message) and History ErrInvalidCursor, in both
// directions; it never panics nor wraps round to the channel's start.
func testCursorBeyondTop(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{HistorySize: 5})
	msgs := publish(t, b, "far", 1, 8) // retained: 4..8
	epoch := msgs[0].Epoch
	offsets := append([]uint64{9, 100}, HostileOffsets...)
	for _, off := range offsets {
		t.Run(fmt.Sprint(off), func(t *testing.T) {
			pos := pubsub.Position{Epoch: epoch, Offset: off}
			s := subscribe(t, b, pubsub.NewCursor(map[string]pubsub.Position{"far": pos}), "far")
			ev := next(t, s)
			if ev.Reset == nil || ev.Reset.Reason != pubsub.ResetUnknownPosition || ev.Reset.Position != (pubsub.Position{Epoch: epoch, Offset: 3}) {
				t.Fatalf("first event = %+v, want an unknown-position reset to offset 3", ev)
			}
			expectNums(t, messages(t, s, 5), seq(4, 8)...)
			for _, req := range []pubsub.HistoryRequest{
				{After: &pos, Limit: 10},
				{After: &pos, Limit: pubsub.MaxHistoryLimit},
				{Before: &pos, Limit: 10},
			} {
				page, err := b.History(ctxT(t), "far", req)
				if !errors.Is(err, pubsub.ErrInvalidCursor) {
					t.Fatalf("history %+v: %d messages, err %v; want ErrInvalidCursor", req, len(page.Messages), err)
				}
			}
		})
	}
	// The broker goes on: the subscription above caught up to live.
	s := subscribe(t, b, pubsub.Cursor{}, "far")
	publish(t, b, "far", 9, 1)
	expectNums(t, messages(t, s, 1), 9)
}
