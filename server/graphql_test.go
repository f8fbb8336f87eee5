package server_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/pubsub"
)

func TestSendThenHistory(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	var out struct {
		Send struct {
			Duplicate bool    `json:"duplicate"`
			Message   message `json:"message"`
		} `json:"send"`
	}
	e.do(t, testKey, sendMutation, map[string]any{"in": map[string]any{
		"channel": "orders:42", "event": "created", "data": map[string]any{"total": 12.5, "items": []int{1, 2}},
	}}).decode(t, &out)
	m := out.Send.Message
	if out.Send.Duplicate || m.Channel != "orders:42" || m.ID != "1" || m.Event == nil || *m.Event != "created" ||
		string(m.Data) != `{"items":[1,2],"total":12.5}` || m.Cursor == "" {
		t.Fatalf("send returned %+v", out.Send)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000Z", m.CreatedAt); err != nil {
		t.Fatalf("createdAt %q is not RFC 3339 UTC with milliseconds", m.CreatedAt)
	}

	var h struct {
		History struct {
			Nodes []message `json:"nodes"`
			Edges []struct {
				Cursor string  `json:"cursor"`
				Node   message `json:"node"`
			} `json:"edges"`
		} `json:"history"`
	}
	e.do(t, testKey, `query { history(channel: "orders:42") { nodes { `+messageFields+` } edges { cursor node { id } } } }`, nil).decode(t, &h)
	if len(h.History.Nodes) != 1 || !jsonEqual(h.History.Nodes[0], m) {
		t.Fatalf("history nodes %+v, want [%+v]", h.History.Nodes, m)
	}
	if len(h.History.Edges) != 1 || h.History.Edges[0].Cursor != m.Cursor || h.History.Edges[0].Node.ID != "1" {
		t.Fatalf("history edges %+v", h.History.Edges)
	}
}

func TestSendScalars(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	for i, data := range []string{`true`, `-1.5e3`, `"text"`, `[]`, `{"a":{"b":[1,"2",null]}}`, `12345678901234567890`} {
		var v any
		dec := json.NewDecoder(strings.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		m := e.send(t, "scalars", v)
		if string(m.Data) != data || m.ID != strconv.Itoa(i+1) {
			t.Errorf("sent %s, got data %s id %s", data, m.Data, m.ID)
		}
	}
	// An inline literal is a JSON value too.
	var out struct {
		Send struct {
			Message message `json:"message"`
		} `json:"send"`
	}
	e.do(t, testKey, `mutation { send(input: {channel: "scalars", data: {a: [1, "x", true, null]}}) { message { data } } }`, nil).decode(t, &out)
	if got := string(out.Send.Message.Data); got != `{"a":[1,"x",true,null]}` {
		t.Fatalf("inline literal stored as %s", got)
	}
}

func TestSendIdempotent(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	in := map[string]any{"in": map[string]any{"channel": "pay", "data": 1, "idempotencyKey": "k-1"}}
	var first, second struct {
		Send struct {
			Duplicate bool    `json:"duplicate"`
			Message   message `json:"message"`
		} `json:"send"`
	}
	e.do(t, testKey, sendMutation, in).decode(t, &first)
	e.do(t, testKey, sendMutation, in).decode(t, &second)
	if first.Send.Duplicate || !second.Send.Duplicate || second.Send.Message.ID != first.Send.Message.ID {
		t.Fatalf("first %+v, second %+v", first.Send, second.Send)
	}
	if got := e.ids(t, "pay"); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("history %v, want one message", got)
	}
}

const broadcastMutation = `mutation($in: BroadcastInput!) { broadcast(input: $in) { messages { ` + messageFields + ` } } }`

func TestBroadcast(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	e.send(t, "b", "before")
	var out struct {
		Broadcast struct {
			Messages []message `json:"messages"`
		} `json:"broadcast"`
	}
	e.do(t, testKey, broadcastMutation, map[string]any{"in": map[string]any{
		"channels": []string{"a", "b", "c"}, "data": map[string]any{"hello": "all"}, "event": "greet",
	}}).decode(t, &out)
	want := map[string]string{"a": "1", "b": "2", "c": "1"}
	if len(out.Broadcast.Messages) != 3 {
		t.Fatalf("messages %+v", out.Broadcast.Messages)
	}
	for i, ch := range []string{"a", "b", "c"} {
		m := out.Broadcast.Messages[i]
		if m.Channel != ch || m.ID != want[ch] || string(m.Data) != `{"hello":"all"}` || *m.Event != "greet" {
			t.Errorf("message %d: %+v", i, m)
		}
		if got := e.ids(t, ch); got[len(got)-1] != want[ch] {
			t.Errorf("history of %s: %v", ch, got)
		}
	}
}

// TestBadInput: every bad input gets its code and appends nothing.
func TestBadInput(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMessageSize = 1000
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	e.send(t, "ok", 0)
	valid := e.send(t, "ok", 1).Cursor

	many := func(n int) []string {
		chs := make([]string, n)
		for i := range chs {
			chs[i] = fmt.Sprintf("ch%d", i)
		}
		return chs
	}
	send := func(in map[string]any) (string, map[string]any) {
		full := map[string]any{"channel": "ok", "data": 1}
		for k, v := range in {
			full[k] = v
		}
		return sendMutation, map[string]any{"in": full}
	}
	history := func(args string) (string, map[string]any) {
		return `query { history(channel: "ok", ` + args + `) { nodes { id } } }`, nil
	}
	tests := []struct {
		name string
		op   func() (string, map[string]any)
		code string
	}{
		{"empty channel", func() (string, map[string]any) { return send(map[string]any{"channel": ""}) }, "BAD_USER_INPUT"},
		{"129-char channel", func() (string, map[string]any) { return send(map[string]any{"channel": strings.Repeat("x", 129)}) }, "BAD_USER_INPUT"},
		{"channel with a space", func() (string, map[string]any) { return send(map[string]any{"channel": "a b"}) }, "BAD_USER_INPUT"},
		{"unicode channel", func() (string, map[string]any) { return send(map[string]any{"channel": "订单"}) }, "BAD_USER_INPUT"},
		{"invalid event", func() (string, map[string]any) { return send(map[string]any{"event": "no spaces"}) }, "BAD_USER_INPUT"},
		{"65-char event", func() (string, map[string]any) { return send(map[string]any{"event": strings.Repeat("e", 65)}) }, "BAD_USER_INPUT"},
		{"idempotency key with control character", func() (string, map[string]any) { return send(map[string]any{"idempotencyKey": "a\nb"}) }, "BAD_USER_INPUT"},
		{"oversized data", func() (string, map[string]any) { return send(map[string]any{"data": strings.Repeat("x", 1000)}) }, "PAYLOAD_TOO_LARGE"},
		// Variables are JSON, so data is always JSON; a literal that is not
		// fails validation of the document.
		{"data not JSON (an inline number out of range)", func() (string, map[string]any) {
			return `mutation { send(input: {channel: "ok", data: {a: 1e999}}) { duplicate } }`, nil
		}, "GRAPHQL_VALIDATION_FAILED"},
		{"data null", func() (string, map[string]any) { return send(map[string]any{"data": nil}) }, "BAD_USER_INPUT"},
		{"data a bare word (not JSON)", func() (string, map[string]any) {
			return `mutation { send(input: {channel: "ok", data: {a: [hello]}}) { duplicate } }`, nil
		}, "BAD_USER_INPUT"},
		{"broadcast of 101 channels", func() (string, map[string]any) {
			return broadcastMutation, map[string]any{"in": map[string]any{"channels": many(101), "data": 1}}
		}, "BAD_USER_INPUT"},
		{"broadcast of 0 channels", func() (string, map[string]any) {
			return broadcastMutation, map[string]any{"in": map[string]any{"channels": []string{}, "data": 1}}
		}, "BAD_USER_INPUT"},
		{"broadcast with one bad channel", func() (string, map[string]any) {
			return broadcastMutation, map[string]any{"in": map[string]any{"channels": []string{"ok", "ch1", "bad channel"}, "data": 1}}
		}, "BAD_USER_INPUT"},
		{"broadcast naming a channel twice", func() (string, map[string]any) {
			return broadcastMutation, map[string]any{"in": map[string]any{"channels": []string{"ok", "ch1", "ok"}, "data": 1}}
		}, "BAD_USER_INPUT"},
		{"broadcast oversized", func() (string, map[string]any) {
			return broadcastMutation, map[string]any{"in": map[string]any{"channels": []string{"ok", "ch1"}, "data": strings.Repeat("x", 1000)}}
		}, "PAYLOAD_TOO_LARGE"},
		{"history first: 0", func() (string, map[string]any) { return history("first: 0") }, "BAD_USER_INPUT"},
		{"history first: 1001", func() (string, map[string]any) { return history("first: 1001") }, "BAD_USER_INPUT"},
		{"history last: -1", func() (string, map[string]any) { return history("last: -1") }, "BAD_USER_INPUT"},
		{"history first and last", func() (string, map[string]any) { return history("first: 1, last: 1") }, "BAD_USER_INPUT"},
		{"history garbage cursor", func() (string, map[string]any) { return history(`after: "not a cursor!"`) }, "BAD_USER_INPUT"},
		{"history truncated cursor", func() (string, map[string]any) { return history(`after: "` + valid[:len(valid)-3] + `"`) }, "BAD_USER_INPUT"},
		{"history base64 junk cursor", func() (string, map[string]any) { return history(`before: "aGVsbG8gd29ybGQ"`) }, "BAD_USER_INPUT"},
		{"history cursor of another channel", func() (string, map[string]any) {
			return `query($c: String) { history(channel: "other", after: $c) { nodes { id } } }`, map[string]any{"c": valid}
		}, "BAD_USER_INPUT"},
		{"history invalid channel", func() (string, map[string]any) {
			return `query { history(channel: "a/b") { nodes { id } } }`, nil
		}, "BAD_USER_INPUT"},
		{"channel invalid name", func() (string, map[string]any) {
			return `query { channel(name: "") { name } }`, nil
		}, "BAD_USER_INPUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, vars := tt.op()
			if got := e.do(t, testKey, q, vars).code(t); got != tt.code {
				t.Fatalf("code %s, want %s", got, tt.code)
			}
			if got := e.ids(t, "ok"); !slices.Equal(got, []string{"1", "2"}) {
				t.Fatalf("history of ok changed: %v", got)
			}
			for _, ch := range []string{"ch0", "ch1", "ch2"} {
				if got := e.ids(t, ch); len(got) != 0 {
					t.Fatalf("%s got messages %v", ch, got)
				}
			}
		})
	}

	// The feed's bad input, over a real WebSocket.
	c := e.dialWS(t, transportWS, "", nil)
	c.init(map[string]any{"token": testKey})
	for i, tt := range []struct {
		channels []string
		cursor   string
	}{
		{many(33), ""},
		{[]string{}, ""},
		{[]string{"ok", "ok"}, ""},
		{[]string{"bad channel"}, ""},
		{[]string{"ok"}, "garbage!"},
		{[]string{"ok"}, valid[:len(valid)-2]},
		{[]string{"ok"}, "aGVsbG8gd29ybGQ"},
	} {
		id := strconv.Itoa(i)
		c.subscribe(id, tt.channels, tt.cursor)
		if code := c.errorCode(id); code != "BAD_USER_INPUT" {
			t.Errorf("feed %v %q: code %s", tt.channels, tt.cursor, code)
		}
	}
}

func TestHistoryPaging(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	for i := 1; i <= 7; i++ {
		e.send(t, "p", i)
	}
	type page struct {
		ids                 []string
		next, prev          bool
		startCursor, endCur string
	}
	get := func(args string) page {
		t.Helper()
		var out struct {
			History struct {
				Nodes    []message `json:"nodes"`
				PageInfo struct {
					HasNextPage     bool    `json:"hasNextPage"`
					HasPreviousPage bool    `json:"hasPreviousPage"`
					StartCursor     *string `json:"startCursor"`
					EndCursor       *string `json:"endCursor"`
				} `json:"pageInfo"`
			} `json:"history"`
		}
		q := `query { history(channel: "p"` + args + `) { nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`
		e.do(t, testKey, q, nil).decode(t, &out)
		p := page{next: out.History.PageInfo.HasNextPage, prev: out.History.PageInfo.HasPreviousPage}
		for _, n := range out.History.Nodes {
			p.ids = append(p.ids, n.ID)
		}
		if s := out.History.PageInfo.StartCursor; s != nil {
			p.startCursor = *s
		}
		if s := out.History.PageInfo.EndCursor; s != nil {
			p.endCur = *s
		}
		return p
	}
	check := func(p page, ids string, next, prev bool) {
		t.Helper()
		if got := strings.Join(p.ids, ","); got != ids || p.next != next || p.prev != prev {
			t.Fatalf("page %s next %v prev %v, want %s next %v prev %v", got, p.next, p.prev, ids, next, prev)
		}
	}
	all := get("")
	check(all, "1,2,3,4,5,6,7", false, false)

	p1 := get(", first: 3")
	check(p1, "1,2,3", true, false)
	p2 := get(`, first: 3, after: "` + p1.endCur + `"`)
	check(p2, "4,5,6", true, true)
	p3 := get(`, first: 3, after: "` + p2.endCur + `"`)
	check(p3, "7", false, true)
	check(get(`, after: "`+p3.endCur+`"`), "", false, true)

	b1 := get(", last: 2")
	check(b1, "6,7", false, true)
	b2 := get(`, last: 3, before: "` + b1.startCursor + `"`)
	check(b2, "3,4,5", true, true)
	check(get(`, last: 5, before: "`+b2.startCursor+`"`), "1,2", true, false)

	// A feed cursor naming several channels works for each of them.
	var ch struct {
		Channel struct {
			Cursor string `json:"cursor"`
		} `json:"channel"`
	}
	e.do(t, testKey, `query { channel(name: "p") { cursor } }`, nil).decode(t, &ch)
	check(get(`, last: 2, before: "`+ch.Channel.Cursor+`"`), "5,6", true, true)
}

func TestChannelQuery(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{HistorySize: 3}))
	type channel struct {
		Name          string  `json:"name"`
		Epoch         string  `json:"epoch"`
		LastID        *string `json:"lastId"`
		Retained      int     `json:"retained"`
		FirstID       *string `json:"firstId"`
		LastMessageAt *string `json:"lastMessageAt"`
		Cursor        string  `json:"cursor"`
	}
	get := func() channel {
		var out struct {
			Channel channel `json:"channel"`
		}
		e.do(t, testKey, `query { channel(name: "c:1") { name epoch lastId retained firstId lastMessageAt cursor } }`, nil).decode(t, &out)
		return out.Channel
	}
	empty := get()
	if empty.Name != "c:1" || empty.Epoch != "" || empty.LastID != nil || empty.FirstID != nil || empty.Retained != 0 ||
		empty.LastMessageAt != nil || empty.Cursor == "" {
		t.Fatalf("never published: %+v", empty)
	}
	var last message
	for i := range 5 {
		last = e.send(t, "c:1", i)
	}
	st := get()
	if st.Epoch == "" || *st.LastID != "5" || *st.FirstID != "3" || st.Retained != 3 || *st.LastMessageAt != last.CreatedAt ||
		st.Cursor != last.Cursor {
		t.Fatalf("after 5 sends (retaining 3): %+v", st)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
