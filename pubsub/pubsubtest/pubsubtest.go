// Package pubsubtest is the contract suite every pubsub backend passes:
// pubsubtest.Run(t, harness) holds every behavioural test of the Broker
// contract (ordering, resume without gap or duplicate, reset on lost
// history, fan-out, slow subscribers, concurrency). A backend is done when it
// passes the suite.
package pubsubtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushgate/pushgate/pubsub"
)

// Harness describes a backend under test.
type Harness struct {
	// New returns a broker; the harness closes it at the end of the test.
	// When SharedStore is set, every broker New returns within one test
	// shares one store, so two calls are two nodes of one deployment.
	New         func(t *testing.T, opts pubsub.Options) pubsub.Broker
	SharedStore bool
	// LoseHistory wipes every channel's history and metadata, as a flushed
	// or failed-over store would. Nil skips the tests that need it.
	LoseHistory func(t *testing.T)
}

// wait is how long a test waits for something that should happen promptly.
const wait = 20 * time.Second

// Run runs the contract suite.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"PublishAssignsContiguousOffsets", testPublishOffsets},
		{"PublishRejectsBadInput", testPublishBadInput},
		{"HistoryPaging", testHistoryPaging},
		{"HistoryBadInput", testHistoryBadInput},
		{"RetentionByCount", testRetentionByCount},
		{"RetentionByAge", testRetentionByAge},
		{"Idempotency", testIdempotency},
		{"TagReadWithTheMessage", testTag},
		{"SubscribeLive", testSubscribeLive},
		{"SubscribeBadInput", testSubscribeBadInput},
		{"SubscribeBeforeFirstPublish", testSubscribeBeforeFirstPublish},
		{"ResumeWithoutGapOrDuplicate", testResume},
		{"ResumeWhilePublishing", testResumeWhilePublishing},
		{"ResumeMultiChannel", testResumeMultiChannel},
		{"CursorNamesOtherChannels", testCursorOtherChannels},
		{"ResetWhenCursorExpired", testResetExpired},
		{"ResetWhenCursorAhead", testResetAhead},
		{"CursorBeyondTop", testCursorBeyondTop},
		{"HistoryMaxBytes", testHistoryMaxBytes},
		{"CatchUpLargeMessages", testCatchUpLargeMessages},
		{"ResetWhenHistoryLost", testResetHistoryLost},
		{"LiveResetWhenHistoryLost", testLiveResetHistoryLost},
		{"SlowSubscriberNeverBlocks", testSlowSubscriber},
		{"SlowSubscriberPastRetention", testSlowSubscriberPastRetention},
		{"ConcurrentPublishersManySubscribers", testConcurrent},
		{"CrossNode", testCrossNode},
		{"CloseEndsEverything", testClose},
		{"ContextEndsSubscription", testContextEnds},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

func newBroker(t *testing.T, h Harness, opts pubsub.Options) pubsub.Broker {
	t.Helper()
	b := h.New(t, opts)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	t.Cleanup(cancel)
	return ctx
}

// publish sends n messages {"n":i} numbered from start and returns them.
func publish(t *testing.T, b pubsub.Broker, channel string, start, n int) []pubsub.Message {
	t.Helper()
	out := make([]pubsub.Message, 0, n)
	for i := start; i < start+n; i++ {
		r, err := b.Publish(ctxT(t), pubsub.PublishRequest{Channel: channel, Data: data(i)})
		if err != nil {
			t.Fatalf("publish %s #%d: %v", channel, i, err)
		}
		out = append(out, r.Message)
	}
	return out
}

func data(i int) json.RawMessage { return json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)) }

func num(t *testing.T, m *pubsub.Message) int {
	t.Helper()
	var v struct{ N int }
	if err := json.Unmarshal(m.Data, &v); err != nil {
		t.Fatalf("message data %s: %v", m.Data, err)
	}
	return v.N
}

func subscribe(t *testing.T, b pubsub.Broker, cursor pubsub.Cursor, channels ...string) *pubsub.Subscription {
	t.Helper()
	s, err := b.Subscribe(ctxT(t), channels, cursor)
	if err != nil {
		t.Fatalf("subscribe %v: %v", channels, err)
	}
	t.Cleanup(s.Close)
	return s
}

// next returns the next event or fails the test after the deadline.
func next(t *testing.T, s *pubsub.Subscription) pubsub.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ev, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("next event: %v", err)
	}
	return ev
}

// messages reads n events, failing on a Reset.
func messages(t *testing.T, s *pubsub.Subscription, n int) []pubsub.Event {
	t.Helper()
	out := make([]pubsub.Event, 0, n)
	for len(out) < n {
		ev := next(t, s)
		if ev.Reset != nil {
			t.Fatalf("unexpected reset after %d messages: %+v", len(out), *ev.Reset)
		}
		out = append(out, ev)
	}
	return out
}

// expectNums checks the events carry the numbers want, in order.
func expectNums(t *testing.T, evs []pubsub.Event, want ...int) {
	t.Helper()
	got := make([]int, len(evs))
	for i := range evs {
		got[i] = num(t, evs[i].Message)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got messages %v, want %v", got, want)
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// expectQuiet checks nothing more arrives for a short while.
func expectQuiet(t *testing.T, s *pubsub.Subscription) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if ev, err := s.Next(ctx); err == nil {
		t.Fatalf("unexpected event: %+v", ev)
	}
}

func state(t *testing.T, b pubsub.Broker, ch string) pubsub.ChannelState {
	t.Helper()
	st, err := b.State(ctxT(t), ch)
	if err != nil {
		t.Fatalf("state %s: %v", ch, err)
	}
	return st
}

func testPublishOffsets(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{})
	ctx := ctxT(t)
	before := time.Now().Add(-time.Second)
	r, err := b.Publish(ctx, pubsub.PublishRequest{Channel: "orders:1", Event: "created", Data: json.RawMessage(" { \"a\" : [1, 2] } ")})
	if err != nil {
		t.Fatal(err)
	}
	m := r.Message
	if m.Channel != "orders:1" || m.Offset != 1 || m.Epoch == "" || m.Event != "created" || string(m.Data) != `{"a":[1,2]}` || r.Duplicate {
		t.Fatalf("first message = %+v", r)
	}
	if m.Time.Before(before) || m.Time.After(time.Now().Add(time.Second)) {
		t.Fatalf("message time %v is not now", m.Time)
	}
	msgs := publish(t, b, "orders:1", 2, 4)
	for i, m2 := range msgs {
		if m2.Offset != uint64(i+2) || m2.Epoch != m.Epoch || m2.Event != "" {
			t.Fatalf("message %d = %+v, want offset %d in epoch %s", i, m2, i+2, m.Epoch)
		}
	}
	st := state(t, b, "orders:1")
	if st.Epoch != m.Epoch || st.Top != 5 || st.First != 1 || st.Retained != 5 || st.LastTime.IsZero() {
		t.Fatalf("state = %+v", st)
	}
	// Another channel has its own offsets and epoch.
	other := publish(t, b, "orders:2", 1, 1)[0]
	if other.Offset != 1 {
		t.Fatalf("other channel offset = %d, want 1", other.Offset)
	}
	empty := state(t, b, "never:published")
	if empty.Epoch != "" || empty.Top != 0 || empty.First != 1 || empty.Retained != 0 {
		t.Fatalf("state of an unused channel = %+v", empty)
	}
}

func testPublishBadInput(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{})
	publish(t, b, "ok", 1, 1)
	tests := []struct {
		name string
		req  pubsub.PublishRequest
		want error
	}{
		{"empty channel", pubsub.PublishRequest{Channel: "", Data: data(1)}, pubsub.ErrInvalidChannel},
		{"channel too long", pubsub.PublishRequest{Channel: strings.Repeat("a", 129), Data: data(1)}, pubsub.ErrInvalidChannel},
		{"channel with space", pubsub.PublishRequest{Channel: "a b", Data: data(1)}, pubsub.ErrInvalidChannel},
		{"channel with slash", pubsub.PublishRequest{Channel: "a/b", Data: data(1)}, pubsub.ErrInvalidChannel},
		{"channel unicode", pubsub.PublishRequest{Channel: "订单", Data: data(1)}, pubsub.ErrInvalidChannel},
		{"channel with brace", pubsub.PublishRequest{Channel: "a{b}", Data: data(1)}, pubsub.ErrInvalidChannel},
		{"event with newline", pubsub.PublishRequest{Channel: "ok", Event: "a\nb", Data: data(1)}, pubsub.ErrInvalidEvent},
		{"event too long", pubsub.PublishRequest{Channel: "ok", Event: strings.Repeat("e", 65), Data: data(1)}, pubsub.ErrInvalidEvent},
		{"data not JSON", pubsub.PublishRequest{Channel: "ok", Data: json.RawMessage(`{"a":`)}, pubsub.ErrInvalidData},
		{"data empty", pubsub.PublishRequest{Channel: "ok", Data: nil}, pubsub.ErrInvalidData},
		{"data two values", pubsub.PublishRequest{Channel: "ok", Data: json.RawMessage(`1 2`)}, pubsub.ErrInvalidData},
		{"idempotency key too long", pubsub.PublishRequest{Channel: "ok", Data: data(1), IdempotencyKey: strings.Repeat("k", 129)}, pubsub.ErrInvalidIdempotencyKey},
		{"idempotency key control char", pubsub.PublishRequest{Channel: "ok", Data: data(1), IdempotencyKey: "a\x00b"}, pubsub.ErrInvalidIdempotencyKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.Publish(ctxT(t), tc.req)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if st := state(t, b, "ok"); st.Top != 1 || st.Retained != 1 {
		t.Fatalf("bad input changed the channel: %+v", st)
	}
}

func testHistoryPaging(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{})
	ctx := ctxT(t)
	msgs := publish(t, b, "h", 1, 10)
	epoch := msgs[0].Epoch
	nums := func(p pubsub.HistoryPage) []int {
		var out []int
		for i := range p.Messages {
			out = append(out, num(t, &p.Messages[i]))
		}
		return out
	}
	check := func(req pubsub.HistoryRequest, want []int, more bool) {
		t.Helper()
		p, err := b.History(ctx, "h", req)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(nums(p)) != fmt.Sprint(want) || p.More != more {
			t.Fatalf("history %+v = %v more=%v, want %v more=%v", req, nums(p), p.More, want, more)
		}
		if p.State.Top != 10 || p.State.Epoch != epoch {
			t.Fatalf("history state = %+v", p.State)
		}
	}
	at := func(off uint64) *pubsub.Position { return &pubsub.Position{Epoch: epoch, Offset: off} }
	check(pubsub.HistoryRequest{Limit: 3}, seq(8, 10), true)
	check(pubsub.HistoryRequest{Limit: 10}, seq(1, 10), false)
	check(pubsub.HistoryRequest{Limit: 100}, seq(1, 10), false)
	check(pubsub.HistoryRequest{Before: at(8), Limit: 3}, seq(5, 7), true)
	check(pubsub.HistoryRequest{Before: at(4), Limit: 3}, seq(1, 3), false)
	check(pubsub.HistoryRequest{Before: at(1), Limit: 3}, nil, false)
	check(pubsub.HistoryRequest{After: at(0), Limit: 4}, seq(1, 4), true)
	check(pubsub.HistoryRequest{After: at(4), Limit: 4}, seq(5, 8), true)
	check(pubsub.HistoryRequest{After: at(8), Limit: 4}, seq(9, 10), false)
	check(pubsub.HistoryRequest{After: at(10), Limit: 4}, nil, false)
	check(pubsub.HistoryRequest{After: &pubsub.Position{}, Limit: 2}, seq(1, 2), true)

	// Paging forward through everything visits each message once.
	var all []int
	after := at(0)
	for {
		p, err := b.History(ctx, "h", pubsub.HistoryRequest{After: after, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, nums(p)...)
		if !p.More {
			break
		}
		last := p.Messages[len(p.Messages)-1].Position()
		after = &last
	}
	if fmt.Sprint(all) != fmt.Sprint(seq(1, 10)) {
		t.Fatalf("forward paging = %v", all)
	}
	p, err := b.History(ctx, "never", pubsub.HistoryRequest{Limit: 5})
	if err != nil || len(p.Messages) != 0 || p.More || p.State.Epoch != "" {
		t.Fatalf("history of unused channel = %+v, %v", p, err)
	}
}

func testHistoryBadInput(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{})
	ctx := ctxT(t)
	publish(t, b, "h", 1, 2)
	for _, tc := range []struct {
		name    string
		channel string
		req     pubsub.HistoryRequest
		want    error
	}{
		{"limit 0", "h", pubsub.HistoryRequest{Limit: 0}, pubsub.ErrInvalidLimit},
		{"limit too big", "h", pubsub.HistoryRequest{Limit: pubsub.MaxHistoryLimit + 1}, pubsub.ErrInvalidLimit},
		{"bad channel", "h h", pubsub.HistoryRequest{Limit: 1}, pubsub.ErrInvalidChannel},
		{"other epoch", "h", pubsub.HistoryRequest{After: &pubsub.Position{Epoch: "zz", Offset: 1}, Limit: 1}, pubsub.ErrEpochMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.History(ctx, tc.channel, tc.req); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := b.State(ctx, ""); !errors.Is(err, pubsub.ErrInvalidChannel) {
		t.Fatalf("state of empty name: %v", err)
	}
}

func testRetentionByCount(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{HistorySize: 5})
	publish(t, b, "r", 1, 12)
	st := state(t, b, "r")
	if st.Top != 12 || st.First != 8 || st.Retained != 5 {
		t.Fatalf("state = %+v, want top 12 first 8 retained 5", st)
	}
	p, err := b.History(ctxT(t), "r", pubsub.HistoryRequest{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Messages) != 5 || p.Messages[0].Offset != 8 || p.More {
		t.Fatalf("history = %d messages from %d, more %v", len(p.Messages), p.Messages[0].Offset, p.More)
	}
	// Per-channel retention overrides the default.
	b2 := newBroker(t, h, pubsub.Options{HistorySize: 5, Retention: func(ch string) (int, time.Duration) {
		if strings.HasPrefix(ch, "big:") {
			return 8, 0
		}
		return 0, 0
	}})
	publish(t, b2, "big:1", 1, 12)
	if st := state(t, b2, "big:1"); st.Retained != 8 || st.First != 5 {
		t.Fatalf("per-channel retention: state = %+v", st)
	}
}

func testRetentionByAge(t *testing.T, h Harness) {
	ttl := 500 * time.Millisecond
	b := newBroker(t, h, pubsub.Options{HistoryTTL: ttl})
	old := publish(t, b, "age", 1, 3)
	waitFor(t, "old messages to age out", func() bool {
		return state(t, b, "age").Retained == 0
	})
	st := state(t, b, "age")
	if st.Top != 3 || st.First != 4 {
		t.Fatalf("state after ageing = %+v", st)
	}
	publish(t, b, "age", 4, 2)
	p, err := b.History(ctxT(t), "age", pubsub.HistoryRequest{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Messages) != 2 || p.Messages[0].Offset != 4 {
		t.Fatalf("history after ageing = %+v", p.Messages)
	}
	// A cursor before the aged-out messages gets a Reset, then what is left.
	cur := pubsub.NewCursor(map[string]pubsub.Position{"age": old[0].Position()})
	s := subscribe(t, b, cur, "age")
	ev := next(t, s)
	if ev.Reset == nil || ev.Reset.Reason != pubsub.ResetExpired || ev.Reset.Position.Offset != 3 {
		t.Fatalf("first event = %+v, want an expired reset to offset 3", ev)
	}
	expectNums(t, messages(t, s, 2), 4, 5)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testIdempotency(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{IdempotencyWindow: time.Second})
	ctx := ctxT(t)
	req := pubsub.PublishRequest{Channel: "i", Event: "e", Data: data(1), IdempotencyKey: "k-1"}
	first, err := b.Publish(ctx, req)
	if err != nil || first.Duplicate {
		t.Fatalf("first publish: %+v %v", first, err)
	}
	req.Data = data(2) // a retry may differ; the original wins
	again, err := b.Publish(ctx, req)
	if err != nil || !again.Duplicate {
		t.Fatalf("repeat: %+v %v", again, err)
	}
	if again.Message.Offset != first.Message.Offset || again.Message.Epoch != first.Message.Epoch || string(again.Message.Data) != `{"n":1}` || again.Message.Event != "e" {
		t.Fatalf("repeat returned %+v, want the original %+v", again.Message, first.Message)
	}
	if st := state(t, b, "i"); st.Top != 1 {
		t.Fatalf("repeat appended: %+v", st)
	}
	// The key is per channel.
	other, err := b.Publish(ctx, pubsub.PublishRequest{Channel: "i2", Data: data(1), IdempotencyKey: "k-1"})
	if err != nil || other.Duplicate {
		t.Fatalf("same key on another channel: %+v %v", other, err)
	}
	// After the window the key is forgotten.
	waitFor(t, "the idempotency window to pass", func() bool {
		r, err := b.Publish(ctx, pubsub.PublishRequest{Channel: "i", Data: data(3), IdempotencyKey: "k-1"})
		return err == nil && !r.Duplicate
	})
}

// testTag: a message's tag is read back with it by every reader, on every
// node: a live subscriber (of this node and of another, where the store is
// shared), history, a resume, and a duplicate publish; a message without
// one reads "" (an event beside the tag stays the event).
func testTag(t *testing.T, h Harness) {
	a := newBroker(t, h, pubsub.Options{})
	readers := []pubsub.Broker{a}
	if h.SharedStore {
		readers = append(readers, newBroker(t, h, pubsub.Options{}))
	}
	ctx := ctxT(t)
	var live []*pubsub.Subscription
	for _, b := range readers {
		live = append(live, subscribe(t, b, pubsub.Cursor{}, "tag"))
	}
	reqs := []pubsub.PublishRequest{
		{Channel: "tag", Data: data(1)},
		{Channel: "tag", Data: data(2), Tag: "notify", IdempotencyKey: "k"},
		{Channel: "tag", Data: data(3), Event: "ev", Tag: "t:2"},
	}
	want := []struct{ event, tag string }{{"", ""}, {"", "notify"}, {"ev", "t:2"}}
	check := func(where string, i int, m *pubsub.Message) {
		t.Helper()
		if m.Event != want[i].event || m.Tag != want[i].tag || num(t, m) != i+1 {
			t.Fatalf("%s: message %d has event %q tag %q, want %q %q", where, i+1, m.Event, m.Tag, want[i].event, want[i].tag)
		}
	}
	var first pubsub.Cursor
	for i, req := range reqs {
		res, err := a.Publish(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		check("publish result", i, &res.Message)
	}
	for n, s := range live {
		for i, ev := range messages(t, s, 3) {
			check(fmt.Sprintf("live on node %d", n), i, ev.Message)
			if i == 0 {
				first = ev.Cursor
			}
		}
	}
	for n, b := range readers {
		p, err := b.History(ctx, "tag", pubsub.HistoryRequest{Limit: 10})
		if err != nil || len(p.Messages) != 3 {
			t.Fatalf("history on node %d: %v %v", n, p.Messages, err)
		}
		for i := range p.Messages {
			check(fmt.Sprintf("history on node %d", n), i, &p.Messages[i])
		}
		s := subscribe(t, b, first, "tag")
		for i, ev := range messages(t, s, 2) {
			check(fmt.Sprintf("resume on node %d", n), i+1, ev.Message)
		}
	}
	dup, err := a.Publish(ctx, pubsub.PublishRequest{Channel: "tag", Data: data(9), IdempotencyKey: "k"})
	if err != nil || !dup.Duplicate {
		t.Fatalf("repeat: %+v %v", dup, err)
	}
	check("duplicate", 1, &dup.Message)
	if _, err := a.Publish(ctx, pubsub.PublishRequest{Channel: "tag", Data: data(4), Tag: "no space"}); !errors.Is(err, pubsub.ErrInvalidEvent) {
		t.Fatalf("a tag with a space: %v, want ErrInvalidEvent", err)
	}
}

func testSubscribeLive(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{})
	publish(t, b, "live", 1, 3) // before: not delivered
	s := subscribe(t, b, pubsub.Cursor{}, "live")
	if p, ok := s.Cursor().Position("live"); !ok || p.Offset != 3 {
		t.Fatalf("start cursor = %v", s.Cursor().Positions())
	}
	publish(t, b, "live", 4, 3)
	evs := messages(t, s, 3)
	expectNums(t, evs, 4, 5, 6)
	for i, ev := range evs {
		p, _ := ev.Cursor.Position("live")
		if p != ev.Message.Position() {
			t.Fatalf("event %d cursor %v does not match message %v", i, p, ev.Message.Position())
		}
	}
	expectQuiet(t, s)
}

func testSubscribeBadInput(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{})
	many := make([]string, pubsub.MaxChannelsPerSubscription+1)
	for i := range many {
		many[i] = fmt.Sprintf("c%d", i)
	}
	for _, tc := range []struct {
		name     string
		channels []string
		want     error
	}{
		{"none", nil, pubsub.ErrInvalidChannel},
		{"too many", many, pubsub.ErrTooManyChannels},
		{"invalid", []string{"ok", "not ok"}, pubsub.ErrInvalidChannel},
		{"twice", []string{"a", "a"}, pubsub.ErrInvalidChannel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.Subscribe(ctxT(t), tc.channels, pubsub.Cursor{}); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	// Exactly the maximum is fine.
	s := subscribe(t, b, pubsub.Cursor{}, many[:pubsub.MaxChannelsPerSubscription]...)
	s.Close()
}

func testSubscribeBeforeFirstPublish(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{})
	s := subscribe(t, b, pubsub.Cursor{}, "fresh")
	publish(t, b, "fresh", 1, 3)
	expectNums(t, messages(t, s, 3), 1, 2, 3)
	// The start cursor of a never-published channel resumes from its start.
	s2 := subscribe(t, b, pubsub.NewCursor(map[string]pubsub.Position{"fresh": {}}), "fresh")
	expectNums(t, messages(t, s2, 3), 1, 2, 3)
}

func testResume(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{})
	s := subscribe(t, b, pubsub.Cursor{}, "res")
	publish(t, b, "res", 1, 5)
	evs := messages(t, s, 3)
	cur := evs[2].Cursor
	s.Close()
	publish(t, b, "res", 6, 3)
	// Through its string form, as a client would carry it.
	parsed, err := pubsub.ParseCursor(cur.String())
	if err != nil {
		t.Fatal(err)
	}
	s2 := subscribe(t, b, parsed, "res")
	expectNums(t, messages(t, s2, 5), 4, 5, 6, 7, 8)
	publish(t, b, "res", 9, 2)
	expectNums(t, messages(t, s2, 2), 9, 10)
	expectQuiet(t, s2)
}

// testResumeWhilePublishing resumes repeatedly while a publisher runs: the
// union of what each subscription delivered is every message exactly once.
func testResumeWhilePublishing(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{HistorySize: 5000})
	const total = 2000
	done := make(chan error, 1)
	go func() {
		for i := 1; i <= total; i++ {
			if _, err := b.Publish(context.Background(), pubsub.PublishRequest{Channel: "rw", Data: data(i)}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	cur := pubsub.NewCursor(map[string]pubsub.Position{"rw": {}})
	want := 1
	for round := 0; want <= total; round++ {
		s := subscribe(t, b, cur, "rw")
		take := 1 + round*37%150
		for i := 0; i < take && want <= total; i++ {
			ev := next(t, s)
			if ev.Reset != nil {
				t.Fatalf("reset: %+v", ev.Reset)
			}
			if n := num(t, ev.Message); n != want {
				t.Fatalf("round %d: got message %d, want %d", round, n, want)
			}
			want++
			cur = ev.Cursor
		}
		s.Close()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func testResumeMultiChannel(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{})
	chans := []string{"m:a", "m:b", "m:c"}
	s := subscribe(t, b, pubsub.Cursor{}, chans...)
	for i := 1; i <= 3; i++ {
		for _, ch := range chans {
			publish(t, b, ch, i, 1)
		}
	}
	evs := messages(t, s, 5) // a1 b1 c1 a2 b2 in some interleaving
	cur := evs[4].Cursor
	seen := map[string]int{}
	for _, ev := range evs {
		seen[ev.Message.Channel] = num(t, ev.Message)
	}
	s.Close()
	publish(t, b, "m:a", 4, 1)
	s2 := subscribe(t, b, cur, chans...)
	got := map[string][]int{}
	for _, ev := range messages(t, s2, 10-5) {
		got[ev.Message.Channel] = append(got[ev.Message.Channel], num(t, ev.Message))
	}
	for _, ch := range chans {
		var want []int
		last := 4
		if ch != "m:a" {
			last = 3
		}
		for i := seen[ch] + 1; i <= last; i++ {
			want = append(want, i)
		}
		if fmt.Sprint(got[ch]) != fmt.Sprint(want) {
			t.Fatalf("channel %s after resume: got %v want %v (seen before %v)", ch, got[ch], want, seen)
		}
	}
	expectQuiet(t, s2)
}

func testCursorOtherChannels(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{})
	a := publish(t, b, "o:a", 1, 3)
	publish(t, b, "o:b", 1, 2)
	// The cursor names o:a (at 1) and o:z (not subscribed); o:b is absent,
	// so it starts at its top.
	cur := pubsub.NewCursor(map[string]pubsub.Position{"o:a": a[0].Position(), "o:z": {Epoch: "abc", Offset: 7}})
	s := subscribe(t, b, cur, "o:a", "o:b")
	publish(t, b, "o:b", 3, 1)
	got := map[string][]int{}
	for _, ev := range messages(t, s, 3) {
		got[ev.Message.Channel] = append(got[ev.Message.Channel], num(t, ev.Message))
	}
	if fmt.Sprint(got["o:a"]) != "[2 3]" || fmt.Sprint(got["o:b"]) != "[3]" {
		t.Fatalf("got %v", got)
	}
	last := s.Cursor()
	if _, ok := last.Position("o:z"); ok {
		t.Fatalf("cursor kept an unsubscribed channel: %v", last.Positions())
	}
	if p, _ := last.Position("o:b"); p.Offset != 3 {
		t.Fatalf("cursor for o:b = %v", p)
	}
}

func testResetExpired(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{HistorySize: 5})
	msgs := publish(t, b, "x", 1, 10)
	cur := pubsub.NewCursor(map[string]pubsub.Position{"x": msgs[1].Position()})
	s := subscribe(t, b, cur, "x")
	ev := next(t, s)
	if ev.Reset == nil || ev.Reset.Channel != "x" || ev.Reset.Reason != pubsub.ResetExpired {
		t.Fatalf("first event = %+v, want an expired reset", ev)
	}
	if want := (pubsub.Position{Epoch: msgs[0].Epoch, Offset: 5}); ev.Reset.Position != want {
		t.Fatalf("reset position = %+v, want %+v", ev.Reset.Position, want)
	}
	if p, _ := ev.Cursor.Position("x"); p.Offset != 5 {
		t.Fatalf("reset cursor = %v", p)
	}
	expectNums(t, messages(t, s, 5), seq(6, 10)...)
	// A cursor right at the edge of retention is still honoured.
	s2 := subscribe(t, b, pubsub.NewCursor(map[string]pubsub.Position{"x": msgs[4].Position()}), "x")
	expectNums(t, messages(t, s2, 5), seq(6, 10)...)
}

func testResetAhead(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{})
	msgs := publish(t, b, "ahead", 1, 3)
	cur := pubsub.NewCursor(map[string]pubsub.Position{"ahead": {Epoch: msgs[0].Epoch, Offset: 99}})
	s := subscribe(t, b, cur, "ahead")
	ev := next(t, s)
	if ev.Reset == nil || ev.Reset.Reason != pubsub.ResetUnknownPosition || ev.Reset.Position.Offset != 0 {
		t.Fatalf("first event = %+v, want an unknown-position reset to offset 0", ev)
	}
	expectNums(t, messages(t, s, 3), 1, 2, 3)
}

func testResetHistoryLost(t *testing.T, h Harness) {
	if h.LoseHistory == nil {
		t.Skip("backend cannot lose history on demand")
	}
	b := newBroker(t, h, pubsub.Options{})
	old := publish(t, b, "lost", 1, 5)
	h.LoseHistory(t)
	fresh := publish(t, b, "lost", 100, 2)
	if fresh[0].Epoch == old[0].Epoch || fresh[0].Offset != 1 {
		t.Fatalf("after losing history: %+v, want offset 1 in a new epoch (old %s)", fresh[0], old[0].Epoch)
	}
	// Every old cursor, even one "ahead" of the new stream, is reset.
	for _, m := range []pubsub.Message{old[0], old[4]} {
		s := subscribe(t, b, pubsub.NewCursor(map[string]pubsub.Position{"lost": m.Position()}), "lost")
		ev := next(t, s)
		if ev.Reset == nil || ev.Reset.Reason != pubsub.ResetEpochChanged || ev.Reset.Position != (pubsub.Position{Epoch: fresh[0].Epoch}) {
			t.Fatalf("first event = %+v, want an epoch reset", ev)
		}
		expectNums(t, messages(t, s, 2), 100, 101)
		s.Close()
	}
	if _, err := b.History(ctxT(t), "lost", pubsub.HistoryRequest{After: ptr(old[2].Position()), Limit: 5}); !errors.Is(err, pubsub.ErrEpochMismatch) {
		t.Fatalf("history with an old position: %v", err)
	}
}

func ptr[T any](v T) *T { return &v }

func testLiveResetHistoryLost(t *testing.T, h Harness) {
	if h.LoseHistory == nil {
		t.Skip("backend cannot lose history on demand")
	}
	b := newBroker(t, h, pubsub.Options{})
	s := subscribe(t, b, pubsub.Cursor{}, "flush")
	publish(t, b, "flush", 1, 3)
	expectNums(t, messages(t, s, 3), 1, 2, 3)
	h.LoseHistory(t)
	publish(t, b, "flush", 4, 3)
	ev := next(t, s)
	if ev.Reset == nil || ev.Reset.Reason != pubsub.ResetEpochChanged {
		t.Fatalf("event after losing history = %+v, want an epoch reset", ev)
	}
	expectNums(t, messages(t, s, 3), 4, 5, 6)
}

func testSlowSubscriber(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{QueueSize: 8, HistorySize: 5000})
	slow := subscribe(t, b, pubsub.Cursor{}, "slow")
	fast := subscribe(t, b, pubsub.Cursor{}, "slow")
	const total = 1500
	fastDone := make(chan []int, 1)
	go func() {
		var got []int
		for len(got) < total {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			ev, err := fast.Next(ctx)
			cancel()
			if err != nil || ev.Message == nil {
				break
			}
			var v struct{ N int }
			_ = json.Unmarshal(ev.Message.Data, &v)
			got = append(got, v.N)
		}
		fastDone <- got
	}()
	// Publishing completes although slow reads nothing.
	publish(t, b, "slow", 1, total)
	if got := <-fastDone; fmt.Sprint(got) != fmt.Sprint(seq(1, total)) {
		t.Fatalf("fast subscriber got %d messages, first %v", len(got), got[:min(len(got), 10)])
	}
	if slow.Pending() > 8 {
		t.Fatalf("slow subscriber holds %d queued events, more than its queue", slow.Pending())
	}
	// Then the slow one reads everything, from the store, in order.
	expectNums(t, messages(t, slow, total), seq(1, total)...)
	publish(t, b, "slow", total+1, 1)
	expectNums(t, messages(t, slow, 1), total+1)
}

func testSlowSubscriberPastRetention(t *testing.T, h Harness) {
	const total, kept = 1000, 20
	b := newBroker(t, h, pubsub.Options{QueueSize: 4, HistorySize: kept})
	s := subscribe(t, b, pubsub.Cursor{}, "slowr")
	publish(t, b, "slowr", 1, total)
	// The consumer falls behind retention: wherever messages are skipped, a
	// reset comes first and names the position right before the next
	// message; there is no silent gap and the stream ends at the top.
	last, resets := 0, 0
	var reset *pubsub.Reset
	for last != total {
		ev := next(t, s)
		if ev.Reset != nil {
			if ev.Reset.Reason != pubsub.ResetExpired {
				t.Fatalf("reset %+v, want reason expired", ev.Reset)
			}
			reset = ev.Reset
			resets++
			continue
		}
		n := num(t, ev.Message)
		switch {
		case reset != nil:
			if uint64(n) != reset.Position.Offset+1 || n <= last {
				t.Fatalf("after reset to %d got message %d (last %d)", reset.Position.Offset, n, last)
			}
			reset = nil
		case n != last+1:
			t.Fatalf("silent gap from %d to %d", last, n)
		}
		last = n
	}
	if resets == 0 {
		t.Fatal("no reset although retention moved past the consumer")
	}
}

// testConcurrent: 10,000 messages to one channel from concurrent publishers,
// with subscribers live from the start, one joining midway with a cursor and
// one resuming repeatedly: each sees every message once, in offset order.
func testConcurrent(t *testing.T, h Harness) {
	const total, publishers = 10000, 8
	b := newBroker(t, h, pubsub.Options{HistorySize: total})
	ctx := ctxT(t)
	subs := []*pubsub.Subscription{
		subscribe(t, b, pubsub.Cursor{}, "load"),
		subscribe(t, b, pubsub.Cursor{}, "load"),
	}
	start := subs[0].Cursor()
	var wg sync.WaitGroup
	errs := make(chan error, publishers)
	for p := 0; p < publishers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < total; i += publishers {
				if _, err := b.Publish(ctx, pubsub.PublishRequest{Channel: "load", Data: data(i)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// A late subscriber with the start cursor must catch up seamlessly.
	subs = append(subs, subscribe(t, b, start, "load"))
	type result struct {
		offsets []uint64
		nums    map[int]bool
		err     error
	}
	results := make(chan result, len(subs))
	for _, s := range subs {
		go func() {
			r := result{nums: make(map[int]bool, total)}
			for len(r.offsets) < total {
				ev, err := s.Next(ctx)
				if err != nil {
					r.err = err
					break
				}
				if ev.Reset != nil {
					r.err = fmt.Errorf("reset %+v", ev.Reset)
					break
				}
				var v struct{ N int }
				_ = json.Unmarshal(ev.Message.Data, &v)
				r.offsets = append(r.offsets, ev.Message.Offset)
				r.nums[v.N] = true
			}
			results <- r
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for range subs {
		r := <-results
		if r.err != nil {
			t.Fatalf("subscriber: %v after %d messages", r.err, len(r.offsets))
		}
		for i, off := range r.offsets {
			if off != uint64(i+1) {
				t.Fatalf("message %d has offset %d: lost, duplicated or reordered", i, off)
			}
		}
		if len(r.nums) != total {
			t.Fatalf("%d distinct messages, want %d", len(r.nums), total)
		}
	}
}

func testCrossNode(t *testing.T, h Harness) {
	if !h.SharedStore {
		t.Skip("backend is a single node")
	}
	a := newBroker(t, h, pubsub.Options{})
	b := newBroker(t, h, pubsub.Options{})
	sb := subscribe(t, b, pubsub.Cursor{}, "x:node")
	sa := subscribe(t, a, pubsub.Cursor{}, "x:node")
	publish(t, a, "x:node", 1, 3)
	publish(t, b, "x:node", 4, 3)
	expectNums(t, messages(t, sb, 6), seq(1, 6)...)
	evs := messages(t, sa, 4)
	expectNums(t, evs, seq(1, 4)...)
	// A cursor from node A resumes on node B.
	sa.Close()
	s := subscribe(t, b, evs[3].Cursor, "x:node")
	expectNums(t, messages(t, s, 2), 5, 6)
	// History agrees on both.
	pa, _ := a.History(ctxT(t), "x:node", pubsub.HistoryRequest{Limit: 10})
	pb, _ := b.History(ctxT(t), "x:node", pubsub.HistoryRequest{Limit: 10})
	if len(pa.Messages) != 6 || len(pb.Messages) != 6 || pa.State != pb.State {
		t.Fatalf("history differs between nodes: %+v / %+v", pa.State, pb.State)
	}
}

func testClose(t *testing.T, h Harness) {
	b := h.New(t, pubsub.Options{})
	s, err := b.Subscribe(ctxT(t), []string{"c"}, pubsub.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next(ctxT(t)); !errors.Is(err, pubsub.ErrClosed) {
		t.Fatalf("Next after broker close: %v", err)
	}
	if _, err := b.Publish(ctxT(t), pubsub.PublishRequest{Channel: "c", Data: data(1)}); !errors.Is(err, pubsub.ErrClosed) {
		t.Fatalf("Publish after close: %v", err)
	}
	if _, err := b.Subscribe(ctxT(t), []string{"c"}, pubsub.Cursor{}); !errors.Is(err, pubsub.ErrClosed) {
		t.Fatalf("Subscribe after close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func testContextEnds(t *testing.T, h Harness) {
	b := newBroker(t, h, pubsub.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	s, err := b.Subscribe(ctx, []string{"ctx"}, pubsub.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-s.Done():
	case <-time.After(wait):
		t.Fatal("subscription did not end with its context")
	}
	if _, err := s.Next(context.Background()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel: %v", err)
	}
	s2 := subscribe(t, b, pubsub.Cursor{}, "ctx")
	s2.Close()
	s2.Close()
	if _, err := s2.Next(context.Background()); !errors.Is(err, pubsub.ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
}
