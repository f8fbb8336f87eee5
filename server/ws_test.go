package server_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushgate/pushgate/pubsub"
)

// TestWebSocketProtocolErrors: what the protocols do not allow closes the
// connection with the code graphql-transport-ws assigns (legacy graphql-ws:
// a connection_error, then 1002), and changes nothing.
func TestWebSocketProtocolErrors(t *testing.T) {
	cfg := testConfig()
	cfg.InitTimeout = 300 * time.Millisecond
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	sub := func(c *wsClient, id string) {
		c.subscribe(id, []string{"proto"}, "")
	}
	cases := []struct {
		name  string
		proto string
		run   func(c *wsClient)
		code  int
	}{
		{"not JSON", transportWS, func(c *wsClient) { c.init(nil); c.writeRaw("{nope") }, 4400},
		{"unknown type", transportWS, func(c *wsClient) { c.init(nil); c.write(wsMsg{Type: "hello"}) }, 4400},
		{"subscribe without id", transportWS, func(c *wsClient) { c.init(nil); sub(c, "") }, 4400},
		{"init payload not an object", transportWS, func(c *wsClient) { c.writeRaw(`{"type":"connection_init","payload":[1]}`) }, 4400},
		{"subscribe before init", transportWS, func(c *wsClient) { sub(c, "1") }, 4401},
		{"no init", transportWS, func(c *wsClient) {}, 4408},
		{"duplicate id", transportWS, func(c *wsClient) {
			c.init(map[string]any{"token": testKey})
			sub(c, "1")
			sub(c, "1")
		}, 4409},
		{"second init", transportWS, func(c *wsClient) { c.init(nil); c.write(wsMsg{Type: "connection_init"}) }, 4429},
		{"legacy: unknown type", legacyWS, func(c *wsClient) { c.init(nil); c.write(wsMsg{Type: "subscribe", ID: "1"}) }, 1002},
		{"legacy: no init", legacyWS, func(c *wsClient) {}, 1002},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dialWS(t, tc.proto, "", nil)
			tc.run(c)
			err := c.waitClosed()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Fatalf("closed with %v, want %d", err, tc.code)
			}
			if tc.proto == legacyWS && tc.name != "legacy: no init" {
				// The connection_error came first.
				var saw bool
				for len(c.msgs) > 0 {
					saw = saw || (<-c.msgs).Type == "connection_error"
				}
				if !saw {
					t.Fatal("no connection_error before the close")
				}
			}
		})
	}
	if got := e.ids(t, "proto"); len(got) != 0 {
		t.Fatalf("appended %v", got)
	}
}

// writeRaw sends text as one message.
func (c *wsClient) writeRaw(text string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(waitTimeout))
	_ = c.conn.WriteMessage(websocket.TextMessage, []byte(text))
}

// TestWebSocketPipelinedInit: a client that sends connection_init and more
// messages in the same packet as its upgrade request, before the 101, is
// served: what net/http read past the request is handed to the
// connection's reader, and messages the reader holds, or that wait in the
// socket beyond it, are handled without waiting for more.
func TestWebSocketPipelinedInit(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(waitTimeout))
	req := "GET /graphql HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
	out := append([]byte(req), maskedTextFrame(`{"type":"connection_init","payload":{"token":"`+testKey+`"}}`)...)
	// More pings than the connection's reader holds at once.
	const pings = 60
	for i := range pings {
		out = append(out, maskedTextFrame(`{"type":"ping","payload":{"n":`+strconv.Itoa(i)+`}}`)...)
	}
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	want := []string{`{"type":"connection_ack"}`}
	for i := range pings {
		want = append(want, `{"type":"pong","payload":{"n":`+strconv.Itoa(i)+`}}`)
	}
	for _, w := range want {
		var head [2]byte
		if _, err := io.ReadFull(br, head[:]); err != nil {
			t.Fatalf("waiting for %s: %v", w, err)
		}
		got := make([]byte, head[1]&0x7f)
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatal(err)
		}
		if head[0] != 0x81 || string(got) != w {
			t.Fatalf("got frame %x %s, want %s", head[0], got, w)
		}
	}
}

// maskedTextFrame is a client's text frame of payload (under 126 bytes).
func maskedTextFrame(payload string) []byte {
	mask := [4]byte{1, 2, 3, 4}
	frame := []byte{0x81, 0x80 | byte(len(payload))}
	frame = append(frame, mask[:]...)
	for i := 0; i < len(payload); i++ {
		frame = append(frame, payload[i]^mask[i%4])
	}
	return frame
}

// TestWebSocketFrameSizes: messages of every WebSocket length encoding
// (7-bit, 16-bit and 64-bit payload lengths) reach a real client whole,
// on both protocols.
func TestWebSocketFrameSizes(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	for _, proto := range []string{transportWS, "graphql-ws"} {
		t.Run(proto, func(t *testing.T) {
			ch := "frames:" + strings.ReplaceAll(proto, "-", "")
			c := e.dialWS(t, proto, "", nil)
			c.init(map[string]any{"token": testKey})
			c.subscribe("f", []string{ch}, e.cursor(t, ch))
			// Payloads of about 80 bytes, 300, 60,000 and 65,536 (the
			// largest data, whose frame is over 65,535 bytes).
			for _, n := range []int{1, 200, 60000, 65536 - 2} {
				data := strings.Repeat("x", n)
				e.send(t, ch, data)
				ev := c.event("f")
				var got string
				if err := json.Unmarshal(ev.Data, &got); err != nil || got != data {
					t.Fatalf("data of %d bytes: got %d bytes (%v)", n, len(got), err)
				}
			}
		})
	}
}
