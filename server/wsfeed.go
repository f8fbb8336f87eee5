package server

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/graph/model"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/delivery"
	"github.com/pushgate/pushgate/server/limits"
	"github.com/pushgate/pushgate/server/observe"
)

// The WebSocket fast path of feed subscriptions. The selection of a feed
// is fixed for its whole life, and every field of Message and Reset is a
// scalar, so a feed's events are rendered by a flat plan instead of
// gqlgen's executor. The plan is shared by every subscription with the
// same selection (same response keys and fields, whatever the query's
// text), and each message is rendered once per plan: subscribers copy the
// shared bytes and add only their operation id and their cursor, which
// names all the channels of their subscription.

// feedField is a Message or Reset field the fast path renders.
type feedField uint8

const (
	fTypename feedField = iota
	fChannel
	fID
	fEvent
	fData
	fCreatedAt
	fCursor
	fReason
)

var messageFields = map[string]feedField{
	"__typename": fTypename, "channel": fChannel, "id": fID, "event": fEvent,
	"data": fData, "createdAt": fCreatedAt, "cursor": fCursor,
}

var resetFields = map[string]feedField{
	"__typename": fTypename, "channel": fChannel, "reason": fReason, "cursor": fCursor,
}

type planField struct {
	key   string // the response key (alias or name)
	field feedField
}

// feedPlan renders the events of feeds with one selection.
type feedPlan struct {
	message, reset []planField
	// rendered holds recent messages rendered by this plan, indexed by
	// offset: the subscribers of a message look it up by pointer.
	rendered [64]atomic.Pointer[renderedMessage]
}

// renderedMessage is a message's JSON with holes where cursors go.
type renderedMessage struct {
	msg   *pubsub.Message
	parts [][]byte // the JSON between cursor holes: len(parts)-1 holes
}

// feedOp is one feed subscription on the fast path.
type feedOp struct {
	plan     *feedPlan
	alias    string // the feed field's response key
	channels []string
	cursor   *string
}

// feedPlans interns plans by selection.
type feedPlans struct {
	mu    sync.Mutex
	plans map[string]*feedPlan
}

// maxFeedPlans bounds the plans kept; past it, a new selection gets a plan
// of its own that is not shared.
const maxFeedPlans = 1024

func newFeedPlans() *feedPlans { return &feedPlans{plans: make(map[string]*feedPlan)} }

// of returns the fast path of rc, or nil when rc is not a feed subscription
// the fast path can render (gqlgen's executor then runs it).
func (ps *feedPlans) of(rc *graphql.OperationContext) *feedOp {
	if rc.Operation == nil || rc.Operation.Operation != ast.Subscription {
		return nil
	}
	roots := graphql.CollectFields(rc, rc.Operation.SelectionSet, []string{"Subscription"})
	if len(roots) != 1 || roots[0].Name != "feed" {
		return nil
	}
	root := roots[0]
	args := root.ArgumentMap(rc.Variables)
	list, ok := args["channels"].([]any)
	if !ok {
		return nil
	}
	op := &feedOp{alias: root.Alias, channels: make([]string, len(list))}
	for i, v := range list {
		if op.channels[i], ok = v.(string); !ok {
			return nil
		}
	}
	switch c := args["cursor"].(type) {
	case nil:
	case string:
		op.cursor = &c
	default:
		return nil
	}
	msg, ok := planFields(rc, root.Selections, "Message", messageFields)
	if !ok {
		return nil
	}
	reset, ok := planFields(rc, root.Selections, "Reset", resetFields)
	if !ok {
		return nil
	}
	op.plan = ps.intern(msg, reset)
	return op
}

func planFields(rc *graphql.OperationContext, sel ast.SelectionSet, typ string, known map[string]feedField) ([]planField, bool) {
	var out []planField
	for _, f := range graphql.CollectFields(rc, sel, []string{typ, "FeedEvent"}) {
		ff, ok := known[f.Name]
		if !ok || len(f.Selections) > 0 || !plainKey(f.Alias) {
			return nil, false
		}
		out = append(out, planField{key: f.Alias, field: ff})
	}
	return out, true
}

// plainKey reports whether a response key needs no JSON escaping (GraphQL
// names never do; this guards the assumption).
func plainKey(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return false
		}
	}
	return s != ""
}

func (ps *feedPlans) intern(msg, reset []planField) *feedPlan {
	var key strings.Builder
	for _, f := range msg {
		key.WriteString(f.key)
		key.WriteByte(byte('0' + f.field))
	}
	key.WriteByte('|')
	for _, f := range reset {
		key.WriteString(f.key)
		key.WriteByte(byte('0' + f.field))
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.plans[key.String()]; p != nil {
		return p
	}
	p := &feedPlan{message: msg, reset: reset}
	if len(ps.plans) < maxFeedPlans {
		ps.plans[key.String()] = p
	}
	return p
}

// render returns m rendered by the plan, from the cache when another
// subscriber rendered it already.
func (p *feedPlan) render(m *pubsub.Message) *renderedMessage {
	slot := &p.rendered[m.Offset%uint64(len(p.rendered))]
	if r := slot.Load(); r != nil && r.msg == m {
		return r
	}
	r := &renderedMessage{msg: m}
	// A hole for the cursor, which names the subscriber's channels.
	b := appendMessage(nil, p.message, graph.MessageOf(m, ""), func(b []byte) []byte {
		r.parts = append(r.parts, append(b, '"'))
		return []byte{'"'}
	})
	r.parts = append(r.parts, b)
	slot.Store(r)
	return r
}

// appendMessage appends m as fields select it, quoted and escaped as
// gqlgen's marshalers and encoder write it. cursor appends the value of a
// cursor field; nil: m.Cursor.
func appendMessage(b []byte, fields []planField, m *model.Message, cursor func([]byte) []byte) []byte {
	b = append(b, '{')
	for i, f := range fields {
		b = appendKey(b, i, f.key)
		switch f.field {
		case fTypename:
			b = append(b, `"Message"`...)
		case fChannel:
			b = appendGQLString(b, m.Channel)
		case fID:
			b = appendGQLString(b, m.ID)
		case fEvent:
			if m.Event == nil {
				b = append(b, "null"...)
			} else {
				b = appendGQLString(b, *m.Event)
			}
		case fData:
			b = appendGQLJSON(b, m.Data)
		case fCreatedAt:
			b = append(b, '"')
			b = appendTime(b, m.CreatedAt)
			b = append(b, '"')
		case fCursor:
			if cursor != nil {
				b = cursor(b)
			} else {
				b = appendGQLString(b, m.Cursor)
			}
		}
	}
	return append(b, '}')
}

// appendKey appends the key of the i-th field of an object.
func appendKey(b []byte, i int, key string) []byte {
	if i > 0 {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, key...)
	return append(b, `":`...)
}

// appendEvent appends the JSON of ev as the plan selects it.
func (p *feedPlan) appendEvent(b []byte, ev pubsub.Event) []byte {
	if ev.Message != nil {
		r := p.render(ev.Message)
		for i, part := range r.parts {
			if i > 0 {
				b, _ = ev.Cursor.AppendText(b)
			}
			b = append(b, part...)
		}
		return b
	}
	b = append(b, '{')
	for i, f := range p.reset {
		b = appendKey(b, i, f.key)
		switch f.field {
		case fTypename:
			b = append(b, `"Reset"`...)
		case fChannel:
			b = append(b, '"')
			b = append(b, ev.Reset.Channel...)
			b = append(b, '"')
		case fReason:
			b = append(b, '"')
			b = append(b, ev.Reset.Reason...)
			b = append(b, '"')
		case fCursor:
			b = append(b, '"')
			b, _ = ev.Cursor.AppendText(b)
			b = append(b, '"')
		}
	}
	return append(b, '}')
}

// wsFeed is a feed subscription on the fast path: a delivery.Stream over
// the connection (wsFeedConn), with an encoder that frames each event as
// one WebSocket message (wsFeedEncoder). It has no goroutine: the
// server's writers write it when its subscription queues events, all of
// them in one system call. A congested connection holds its feeds until
// it has written what it holds (resumeFeeds).
type wsFeed struct {
	stream *delivery.Stream
}

// runFeed starts a feed on the fast path; done is called when it ends.
// ctx is the operation's, without gqlgen's operation context, which the
// feed does not keep. It returns false, having done nothing, when the feed cannot be opened: the
// caller then dispatches the operation to gqlgen, whose resolver reports
// the error as on every other transport.
func (c *wsConn) runFeed(ctx context.Context, cancel context.CancelFunc, id string, rc *graphql.OperationContext, op *feedOp, done func()) bool {
	sub, leave, err := c.t.resolver.OpenFeed(ctx, op.channels, op.cursor)
	if err != nil {
		return false
	}
	var ends cleanups
	ends.add(done)
	ends.add(func() { c.completeUnlessClosed(id) })
	ends.add(leave)
	ends.add(sub.Close)
	// What gqlgen's interceptors would do: give the WebSocket's operation
	// slot back, count the subscription.
	if ws, ok := rc.Stats.GetExtension(limits.WebSocketSlot).(*limits.WebSocket); ok {
		ends.add(ws.Release)
	}
	var acct *observe.Stream
	if c.acct != nil {
		ends.add(c.t.metrics.Subscribed(observe.WebSocket))
		acct = c.acct.Stream
	}

	typ := "next"
	if c.legacy {
		typ = "data"
	}
	quoted, _ := json.Marshal(id)
	head := append([]byte(`{"id":`), quoted...)
	head = append(head, `,"type":"`...)
	head = append(head, typ...)
	head = append(head, `","payload":{"data":{"`...)
	head = append(head, op.alias...)
	head = append(head, `":`...)
	f := &wsFeed{}
	f.stream = delivery.New(delivery.Options{
		Sub: sub, Conn: wsFeedConn{c}, Encoder: &wsFeedEncoder{plan: op.plan, head: head},
		Writers: c.t.writers, Account: acct, Ctx: ctx,
		// A failed write closed the connection, which ends the operation;
		// an ended subscription ends it here.
		OnEnd:   func(observe.End) { cancel() },
		OnPanic: func(v any) { logPanic(c.req, "websocket feed write", v); c.closeInternalError() },
	})
	c.mu.Lock()
	c.feeds[f] = struct{}{}
	c.mu.Unlock()
	// The feed ends with its operation: stopped by the client, the
	// connection's end, or its subscription's. Its last event is written
	// before its complete.
	context.AfterFunc(ctx, func() {
		defer recoverClient(c.req, "websocket feed end", nil)
		f.stream.Stop()
		c.mu.Lock()
		delete(c.feeds, f)
		c.mu.Unlock()
		ends.run()
	})
	f.stream.Start()
	return true
}

// wsFeedEncoder frames a feed's events as next (data) messages, each one
// WebSocket text frame: head, the event as the plan renders it, "}}}".
// The frame's header, whose size depends on the message's, is assumed to
// take 4 bytes (126 to 65,535 bytes of message, as nearly every event's);
// an event of another size is moved into place.
type wsFeedEncoder struct {
	plan *feedPlan
	head []byte // {"id":<id>,"type":"next","payload":{"data":{<alias>:
}

func (e *wsFeedEncoder) AppendEvent(b []byte, ev pubsub.Event) []byte {
	const guess = 4
	start := len(b)
	b = append(b, 0, 0, 0, 0)
	b = append(b, e.head...)
	b = e.plan.appendEvent(b, ev)
	b = append(b, "}}}"...)
	var hdr [10]byte
	h := textFrameHeader(&hdr, len(b)-start-guess)
	if len(h) != guess {
		n := len(b)
		for range len(h) - guess {
			b = append(b, 0)
		}
		copy(b[start+len(h):], b[start+guess:n])
		b = b[:n+len(h)-guess]
	}
	copy(b[start:], h)
	return b
}

// A WebSocket connection is kept alive by its pings, not its feeds'.
func (e *wsFeedEncoder) AppendHeartbeat(b []byte) []byte { return b }

// A feed that ends is completed by the connection (complete), or the
// connection closes.
func (e *wsFeedEncoder) AppendEnd(b []byte, _ observe.End, _ pubsub.Cursor) []byte { return b }

// wsFeedConn writes a feed's frames among the connection's other
// messages (write): nothing after the close frame, and a failed write
// noted in the connection's account.
type wsFeedConn struct{ c *wsConn }

func (fc wsFeedConn) Write(p []byte) (int, error) {
	c := fc.c
	c.wmu.Lock()
	var err error
	n := 0
	if c.writesClosed {
		err = net.ErrClosed
	} else {
		n, err = c.dconn.Write(p)
	}
	c.wmu.Unlock()
	return n, c.writeFailed(err)
}

func (fc wsFeedConn) Congested() bool { return fc.c.dconn.Congested() }
func (fc wsFeedConn) Wait()           { fc.c.dconn.Wait() }
func (fc wsFeedConn) TimedOut() bool  { return fc.c.dconn.TimedOut() }

// Close does nothing: the connection closes itself (a failed write), or
// with the operation.
func (fc wsFeedConn) Close() error { return nil }

// resumeFeeds hands the connection's feeds to the writers: the
// connection is no longer congested.
func (c *wsConn) resumeFeeds() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for f := range c.feeds {
		f.stream.Kick()
	}
}
