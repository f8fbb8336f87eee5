package pubsubtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
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

// testHistoryMaxBytes: a page whose data is over HistoryRequest.MaxBytes
// is refused with ErrTooLarge, in both directions; one within it is served
// whole.
func testHistoryMaxBytes(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{})
	ctx := ctxT(t)
	item := `"` + strings.Repeat("x", 998) + `"` // 1000 bytes of data
	for range 10 {
		if _, err := b.Publish(ctx, pubsub.PublishRequest{Channel: "big", Data: json.RawMessage(item)}); err != nil {
			t.Fatal(err)
		}
	}
	zero := pubsub.Position{}
	for _, tc := range []struct {
		name     string
		req      pubsub.HistoryRequest
		want     int // messages; -1: ErrTooLarge
		wantMore bool
	}{
		{"forward over", pubsub.HistoryRequest{After: &zero, Limit: 10, MaxBytes: 9999}, -1, false},
		{"forward exact", pubsub.HistoryRequest{After: &zero, Limit: 10, MaxBytes: 10000}, 10, false},
		{"forward page within", pubsub.HistoryRequest{After: &zero, Limit: 4, MaxBytes: 4000}, 4, true},
		{"backward over", pubsub.HistoryRequest{Limit: 10, MaxBytes: 5000}, -1, false},
		{"backward page within", pubsub.HistoryRequest{Limit: 5, MaxBytes: 5000}, 5, true},
		{"no bound", pubsub.HistoryRequest{Limit: 10}, 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page, err := b.History(ctx, "big", tc.req)
			if tc.want < 0 {
				if !errors.Is(err, pubsub.ErrTooLarge) {
					t.Fatalf("%d messages, err %v; want ErrTooLarge", len(page.Messages), err)
				}
				return
			}
			if err != nil || len(page.Messages) != tc.want || page.More != tc.wantMore {
				t.Fatalf("%d messages (more %v), err %v; want %d (more %v)", len(page.Messages), page.More, err, tc.want, tc.wantMore)
			}
		})
	}
}

// testCatchUpLargeMessages: a catch-up over more data than one store read
// takes (the reads are bounded by bytes as well as by count) delivers
// every message, in order, then live ones.
func testCatchUpLargeMessages(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{})
	ctx := ctxT(t)
	big := strings.Repeat("y", 100<<10)
	var first pubsub.Message
	for i := range 40 { // 4 MB
		r, err := b.Publish(ctx, pubsub.PublishRequest{Channel: "large", Data: json.RawMessage(fmt.Sprintf(`{"n":%d,"pad":%q}`, i+1, big))})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = r.Message
		}
	}
	s := subscribe(t, b, pubsub.NewCursor(map[string]pubsub.Position{"large": {Epoch: first.Epoch}}), "large")
	expectNums(t, messages(t, s, 40), seq(1, 40)...)
	publish(t, b, "large", 41, 1)
	expectNums(t, messages(t, s, 1), 41)
}
