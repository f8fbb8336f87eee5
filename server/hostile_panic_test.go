package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/pushgate/pushgate/internal/logbuf"
	"github.com/pushgate/pushgate/pubsub"
)

// panickyBroker panics in Subscribe for the channel "boom", on whatever
// goroutine serves the client: a WebSocket operation's, an SSE or
// long-poll handler's, gqlgen's for graphql-sse.
type panickyBroker struct{ pubsub.Broker }

func (b panickyBroker) Subscribe(ctx context.Context, channels []string, cursor pubsub.Cursor) (*pubsub.Subscription, error) {
	for _, ch := range channels {
		if ch == "boom" {
			panic("deliberate panic in Subscribe")
		}
	}
	return b.Broker.Subscribe(ctx, channels, cursor)
}

// TestPanickingClientGoroutineDoesNotKillTheServer: a panic on a goroutine
// that serves one client ends that client only, on every transport: the
// WebSocket connection is closed with 1011 (both protocols) while another
// connection goes on receiving, SSE and long-poll answer 500 INTERNAL,
// graphql-sse an INTERNAL error; each panic is logged with its stack, and
// the server serves the next request. Without the recovery, the panic in
// the WebSocket operation's goroutine kills the test binary.
func TestPanickingClientGoroutineDoesNotKillTheServer(t *testing.T) {
	var logs logbuf.Buffer
	e := startEnvLog(t, anonConfig(), panickyBroker{memoryBroker(t, pubsub.Options{})}, &logs)

	// A bystander on its own connection must not notice anything.
	other := e.dialWS(t, transportWS, "", nil)
	other.init(nil)
	other.subscribe("calm", []string{"calm"}, "")
	waitSubscribed(t, e, other, "calm", "calm")

	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			ws := e.dialWS(t, proto, "", nil)
			ws.init(nil)
			ws.subscribe("b", []string{"boom"}, "")
			err := ws.waitClosed()
			if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.CloseInternalServerErr {
				t.Fatalf("connection ended with %v, want close 1011", err)
			}
		})
	}
	t.Run("sse", func(t *testing.T) {
		status, body := hostileGet(t, e.url+"/events?channel=boom")
		if status != http.StatusInternalServerError || !strings.Contains(body, `"code":"INTERNAL"`) {
			t.Fatalf("GET /events: %d %s", status, body)
		}
	})
	t.Run("poll", func(t *testing.T) {
		status, body := hostileGet(t, e.url+"/poll?channel=boom&timeout=0&cursor=")
		if status != http.StatusInternalServerError || !strings.Contains(body, `"code":"INTERNAL"`) {
			t.Fatalf("GET /poll: %d %s", status, body)
		}
	})
	t.Run("graphql-sse", func(t *testing.T) {
		body, _ := json.Marshal(map[string]any{"query": feedQuery, "variables": map[string]any{"channels": []string{"boom"}}})
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/graphql", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "text/event-stream")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if data := hostileSSEData(t, res.Body, "next"); !strings.Contains(data, `"code":"INTERNAL"`) {
			t.Fatalf("graphql-sse answered %s, want an INTERNAL error", data)
		}
	})

	// The server goes on: the bystander still receives, a send works.
	e.send(t, "calm", map[string]any{"still": "here"})
	if ev := other.event("calm"); ev.Typename != "Message" || string(ev.Data) != `{"still":"here"}` {
		t.Fatalf("bystander got %+v", ev)
	}
	hostileWait(t, "every panic logged with its stack", func() bool {
		s := logs.String()
		return strings.Count(s, "deliberate panic in Subscribe") >= 5 && strings.Contains(s, "panickyBroker.Subscribe")
	})
}

// hostileGet GETs u and returns the status and body.
func hostileGet(t *testing.T, u string) (int, string) {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(res.Body)
	return res.StatusCode, b.String()
}
