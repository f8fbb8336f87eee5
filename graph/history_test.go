package graph

import (
	"testing"

	"github.com/pushgate/pushgate/pubsub"
)

func TestHistoryRequest(t *testing.T) {
	ch := "orders:1"
	cur := pubsub.NewCursor(map[string]pubsub.Position{ch: {Epoch: "e1", Offset: 7}}).String()
	other := pubsub.NewCursor(map[string]pubsub.Position{"orders:2": {Epoch: "e1", Offset: 7}}).String()
	n := func(v int) *int { return &v }
	s := func(v string) *string { return &v }
	tests := []struct {
		name                string
		first, last         *int
		after, before       *string
		limit               int
		after7, before7, ok bool
	}{
		{name: "default: newest 50", limit: 50, ok: true},
		{name: "after alone: 50 forward", after: s(cur), limit: 50, after7: true, ok: true},
		{name: "first", first: n(10), limit: 10, ok: true},
		{name: "first after", first: n(10), after: s(cur), limit: 10, after7: true, ok: true},
		{name: "last before", last: n(3), before: s(cur), limit: 3, before7: true, ok: true},
		{name: "before alone", before: s(cur), limit: 50, before7: true, ok: true},
		{name: "first 1000", first: n(1000), limit: 1000, ok: true},
		{name: "first 0", first: n(0)},
		{name: "last 1001", last: n(1001)},
		{name: "first and last", first: n(1), last: n(1)},
		{name: "first before", first: n(1), before: s(cur)},
		{name: "last after", last: n(1), after: s(cur)},
		{name: "cursor of another channel", after: s(other)},
		{name: "garbage cursor", before: s("!!")},
		{name: "empty cursor", after: s("")},
	}
	for _, tt := range tests {
		req, err := historyRequest(ch, tt.first, tt.after, tt.last, tt.before)
		if !tt.ok {
			if err == nil || Classify(err).Code != CodeBadUserInput {
				t.Errorf("%s: err %v, want BAD_USER_INPUT", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if req.Limit != tt.limit {
			t.Errorf("%s: limit %d, want %d", tt.name, req.Limit, tt.limit)
		}
		forward := tt.first != nil || tt.after != nil
		if (req.After != nil) != forward {
			t.Errorf("%s: After %v, forward %v", tt.name, req.After, forward)
		}
		if tt.after7 && (req.After == nil || *req.After != (pubsub.Position{Epoch: "e1", Offset: 7})) {
			t.Errorf("%s: After %v", tt.name, req.After)
		}
		if tt.before7 != (req.Before != nil) || tt.before7 && *req.Before != (pubsub.Position{Epoch: "e1", Offset: 7}) {
			t.Errorf("%s: Before %v", tt.name, req.Before)
		}
	}
}
