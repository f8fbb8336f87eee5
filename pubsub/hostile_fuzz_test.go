package pubsub_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/pushgate/pushgate/pubsub"
)

// FuzzCursorRead: a cursor as a client sends it, decoded and then read
// through the memory store, never panics and never wraps: it is refused
// (ErrInvalidCursor), or a subscription from it delivers messages that
// follow each other and Resets with a known reason, and History from each
// of its positions answers a page within the channel or an error
// (ErrInvalidCursor, ErrEpochMismatch). With sameEpoch, every position's
// epoch is replaced by its channel's real one, so that the offsets (up to
// 2^64-1) are compared with the channel's, not refused for their epoch.
func FuzzCursorRead(f *testing.F) {
	b := pubsub.NewMemory(pubsub.Options{HistorySize: 4})
	f.Cleanup(func() { _ = b.Close() })
	ctx := context.Background()
	epochs := map[string]string{}
	for ch, n := range map[string]int{"a": 6, "b:1": 2} {
		for range n {
			r, err := b.Publish(ctx, pubsub.PublishRequest{Channel: ch, Data: []byte(`1`)})
			if err != nil {
				f.Fatal(err)
			}
			epochs[ch] = r.Message.Epoch
		}
	}
	for _, off := range []uint64{0, 1, 2, 3, 6, 7, 1 << 63, math.MaxUint64 - 1, math.MaxUint64} {
		f.Add(pubsub.NewCursor(map[string]pubsub.Position{"a": {Epoch: "e", Offset: off}}).String(), true)
	}
	f.Add(pubsub.NewCursor(map[string]pubsub.Position{"a": {Epoch: "e", Offset: 3}, "b:1": {Epoch: "f", Offset: 1}, "c": {}}).String(), true)
	f.Add(pubsub.NewCursor(map[string]pubsub.Position{"a": {Epoch: "zz", Offset: 2}}).String(), false)
	f.Add("AQEBYQFlhQA", false)
	f.Add("", false)
	f.Fuzz(func(t *testing.T, s string, sameEpoch bool) {
		c, err := pubsub.ParseCursor(s)
		if err != nil {
			if !errors.Is(err, pubsub.ErrInvalidCursor) {
				t.Fatalf("error %v does not wrap ErrInvalidCursor", err)
			}
			return
		}
		positions := map[string]pubsub.Position{}
		channels := []string{}
		for _, p := range c.Positions() {
			if e, ok := epochs[p.Channel]; ok && sameEpoch && p.Epoch != "" {
				p.Epoch = e
			}
			positions[p.Channel] = p.Position
			channels = append(channels, p.Channel)
		}
		if len(channels) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sub, err := b.Subscribe(ctx, channels, pubsub.NewCursor(positions))
		if err != nil {
			t.Fatalf("subscribe %v: %v", positions, err)
		}
		defer sub.Close()
		last := map[string]pubsub.Position{}
		for {
			ev, ok := sub.TryNext()
			if !ok {
				if sub.CatchingUp() {
					ev, ok, err = sub.NextUntil(ctx, time.After(time.Millisecond))
					if err != nil {
						t.Fatalf("subscription from %v ended: %v", positions, err)
					}
					if !ok {
						continue
					}
				} else if ev, ok = sub.TryNext(); !ok {
					break
				}
			}
			switch {
			case ev.Reset != nil:
				switch ev.Reset.Reason {
				case pubsub.ResetEpochChanged, pubsub.ResetExpired, pubsub.ResetUnknownPosition:
				default:
					t.Fatalf("reset %+v", ev.Reset)
				}
				last[ev.Reset.Channel] = ev.Reset.Position
			case ev.Message != nil:
				p, seen := last[ev.Message.Channel]
				if seen && ev.Message.Offset != p.Offset+1 {
					t.Fatalf("from %v: message %d after %d", positions, ev.Message.Offset, p.Offset)
				}
				if !seen && ev.Message.Offset <= positions[ev.Message.Channel].Offset && positions[ev.Message.Channel].Epoch == ev.Message.Epoch {
					t.Fatalf("from %v: message %d again", positions, ev.Message.Offset)
				}
				last[ev.Message.Channel] = ev.Message.Position()
			default:
				t.Fatal("an event that is neither a message nor a reset")
			}
		}
		if err := sub.Err(); err != nil {
			t.Fatalf("subscription from %v: %v", positions, err)
		}
		for ch, p := range positions {
			for _, req := range []pubsub.HistoryRequest{{After: &p, Limit: 10}, {Before: &p, Limit: 10}} {
				page, err := b.History(ctx, ch, req)
				switch {
				case err == nil:
					if len(page.Messages) > page.State.Retained {
						t.Fatalf("history of %s from %+v: %d messages, %d retained", ch, p, len(page.Messages), page.State.Retained)
					}
				case errors.Is(err, pubsub.ErrInvalidCursor), errors.Is(err, pubsub.ErrEpochMismatch):
				default:
					t.Fatalf("history of %s from %+v: %v", ch, p, err)
				}
			}
		}
	})
}
