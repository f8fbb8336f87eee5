package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pushgate/pushgate/internal/logbuf"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
)

// panicBroker is a real memory broker whose Publish, History and State
// panic for channels under "panic:", standing in for a resolver bug (a
// hostile cursor once made one panic).
type panicBroker struct{ pubsub.Broker }

func panicsOn(channel string) {
	if strings.HasPrefix(channel, "panic:") {
		panic("resolver bug on " + channel)
	}
}

func (b panicBroker) Publish(ctx context.Context, req pubsub.PublishRequest) (pubsub.PublishResult, error) {
	panicsOn(req.Channel)
	return b.Broker.Publish(ctx, req)
}

func (b panicBroker) History(ctx context.Context, channel string, req pubsub.HistoryRequest) (pubsub.HistoryPage, error) {
	panicsOn(channel)
	return b.Broker.History(ctx, channel, req)
}

func (b panicBroker) State(ctx context.Context, channel string) (pubsub.ChannelState, error) {
	panicsOn(channel)
	return b.Broker.State(ctx, channel)
}

// TestResolverPanic: a resolver that panics costs its request an INTERNAL
// error that names nothing of the panic, the panic is logged with its
// stack, and the server keeps serving: over HTTP (queries, and sends on
// the fast path and through gqlgen, answered alike) and over WebSocket on
// both subprotocols, where the connection stays open.
func TestResolverPanic(t *testing.T) {
	var logs logbuf.Buffer
	e := startEnvLog(t, testConfig(), panicBroker{memoryBroker(t, pubsub.Options{})}, &logs)
	internal := func(t *testing.T, what string, res gqlResponse, raw []byte) {
		t.Helper()
		if res.code(t) != "INTERNAL" || res.Errors[0].Message != "internal error" || strings.Contains(string(raw), "resolver bug") {
			t.Fatalf("%s: %s, want one INTERNAL error that says nothing of the panic", what, raw)
		}
	}

	t.Run("http", func(t *testing.T) {
		for _, q := range []string{
			`{ history(channel: "panic:h") { nodes { id } } }`,
			`{ channel(name: "panic:c") { cursor } }`,
		} {
			body, _ := json.Marshal(map[string]any{"query": q})
			_, res, raw := postGraphQL(t, e.url+"/graphql", testKey, body)
			internal(t, q, res, raw)
		}
		// A send, on the fast path and through gqlgen: the same answer.
		c := sendCase{query: plainSend, variables: `{"in":{"channel":"panic:s","data":1}}`}
		before := server.SendFastServed()
		fs, _, fb := rawPost(t, e.url, c, false)
		if server.SendFastServed() == before {
			t.Fatal("the fast path did not answer the send")
		}
		rs, _, rb := rawPost(t, e.url, c, true)
		var fres gqlResponse
		if err := json.Unmarshal(fb, &fres); err != nil {
			t.Fatal(err)
		}
		internal(t, "send (fast path)", fres, fb)
		if fs != rs || string(fb) != string(rb) {
			t.Fatalf("send: fast path %d %s, gqlgen %d %s", fs, fb, rs, rb)
		}
		// Still serving.
		if m := e.send(t, "ok", "after the panics"); m.ID != "1" {
			t.Fatalf("send after the panics: %+v", m)
		}
	})

	t.Run("websocket", func(t *testing.T) {
		for _, proto := range protocols {
			t.Run(proto, func(t *testing.T) {
				c := e.dialWS(t, proto, "", nil)
				c.init(map[string]any{"token": testKey})
				c.start("q", `{ history(channel: "panic:ws") { nodes { id } } }`, nil)
				m := c.next()
				var res gqlResponse
				if (m.Type != "next" && m.Type != "data") || m.ID != "q" || json.Unmarshal(m.Payload, &res) != nil {
					t.Fatalf("want a result of q, got %+v", m)
				}
				internal(t, proto, res, m.Payload)
				if end := c.next(); end.Type != "complete" || end.ID != "q" {
					t.Fatalf("want complete of q, got %+v", end)
				}
				// The connection still serves.
				cursor := e.cursor(t, "ok:ws")
				c.subscribe("f", []string{"ok:ws"}, cursor)
				sent := e.send(t, "ok:ws", proto)
				if ev := c.event("f"); ev.ID != sent.ID {
					t.Fatalf("feed after the panic: %+v, want %+v", ev, sent)
				}
			})
		}
	})

	// Four over HTTP (two queries, the send on each path), two over
	// WebSocket.
	eventually(t, "the panics logged", func() bool {
		return strings.Count(logs.String(), `"graphql resolver panicked"`) == 6
	})
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, `"graphql resolver panicked"`) &&
			(!strings.Contains(line, "resolver bug on panic:") || !strings.Contains(line, "goroutine ")) {
			t.Errorf("panic logged without its value or stack: %.300s", line)
		}
	}
}

// start sends a subscribe (legacy: start) message for any operation.
func (c *wsClient) start(id, query string, vars map[string]any) {
	raw, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	typ := "subscribe"
	if c.proto == legacyWS {
		typ = "start"
	}
	c.write(wsMsg{Type: typ, ID: id, Payload: raw})
}
