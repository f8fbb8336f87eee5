package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The WebSocket subscriber speaks graphql-transport-ws: connection_init
// (with {token} when it has one), connection_ack, one subscribe of feed,
// then next messages; it answers the server's pings with pongs.

// feedQuery asks for what a real client asks for: the fields SSE and
// long-poll carry, and the cursor to resume from.
const feedQuery = `subscription($channels: [String!]!) { feed(channels: $channels) { __typename ` +
	`... on Message { channel id event data createdAt cursor } ... on Reset { channel reason cursor } } }`

// wsDialer dials WebSockets; *websocket.Dialer in production.
type wsDialer interface {
	DialContext(ctx context.Context, url string, h http.Header) (*websocket.Conn, *http.Response, error)
}

// newWSDialer returns a dialer for many mostly idle connections: small
// read buffers and write buffers taken from a pool only while writing.
func newWSDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *websocket.Dialer {
	return &websocket.Dialer{
		NetDialContext:  dial,
		Subprotocols:    []string{"graphql-transport-ws"},
		ReadBufferSize:  4096,
		WriteBufferPool: &sync.Pool{},
	}
}

type wsFrame struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func (s *subscriber) runWS(ctx, cctx context.Context, env *subEnv, connected func()) error {
	conn, res, err := env.path(s).wsDialer.DialContext(cctx, env.wsURL, nil)
	if err != nil {
		if res != nil {
			body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
			return httpError("ws handshake", res.StatusCode, body)
		}
		return fmt.Errorf("ws dial: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if got := conn.Subprotocol(); got != "graphql-transport-ws" {
		return fmt.Errorf("ws: the server chose subprotocol %q", got)
	}
	conn.SetReadLimit(4 << 20)

	deadline, _ := cctx.Deadline()
	_ = conn.SetWriteDeadline(deadline)
	_ = conn.SetReadDeadline(deadline)
	hello := wsFrame{Type: "connection_init"}
	if s.token != "" {
		hello.Payload, _ = json.Marshal(map[string]string{"token": s.token})
	}
	if err := conn.WriteJSON(hello); err != nil {
		return fmt.Errorf("ws connection_init: %w", err)
	}
	buf := make([]byte, 0, 1024)
	for acked := false; !acked; {
		if buf, err = readWS(conn, buf); err != nil {
			return fmt.Errorf("ws waiting for connection_ack: %w", err)
		}
		var f wsFrame
		if err := json.Unmarshal(buf, &f); err != nil {
			return fmt.Errorf("ws: bad frame %.100q: %w", buf, err)
		}
		switch f.Type {
		case "connection_ack":
			acked = true
		case "ping":
			if err := conn.WriteMessage(websocket.TextMessage, pongFrame); err != nil {
				return fmt.Errorf("ws pong: %w", err)
			}
		case "pong":
		default:
			return fmt.Errorf("ws: want connection_ack, got %.200s", buf)
		}
	}
	payload, _ := json.Marshal(map[string]any{"query": feedQuery, "variables": map[string]any{"channels": s.channels}})
	if err := conn.WriteJSON(wsFrame{ID: "1", Type: "subscribe", Payload: payload}); err != nil {
		return fmt.Errorf("ws subscribe: %w", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	_ = conn.SetWriteDeadline(time.Time{})
	connected()

	var d delivery
	for {
		if buf, err = readWS(conn, buf); err != nil {
			return fmt.Errorf("ws read: %w", err)
		}
		now := time.Now()
		typ, id, payload, ok := wsEnvelope(buf)
		if !ok {
			s.tr.stats.parseErrs++
			continue
		}
		switch string(typ) {
		case "next":
			if string(id) != "1" {
				continue
			}
			if err := s.wsNext(payload, &d, now); err != nil {
				return err
			}
		case "ping":
			_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := conn.WriteMessage(websocket.TextMessage, pongFrame); err != nil {
				return fmt.Errorf("ws pong: %w", err)
			}
		case "pong":
		case "error":
			return &statusError{op: "ws subscribe", code: graphqlErrorCode(payload), msg: string(payload)}
		case "complete":
			return errors.New("ws: the server completed the subscription")
		default:
			s.tr.stats.parseErrs++
		}
	}
}

var pongFrame = []byte(`{"type":"pong"}`)

// readWS reads the next message into buf, reusing its storage.
func readWS(conn *websocket.Conn, buf []byte) ([]byte, error) {
	_, r, err := conn.NextReader()
	if err != nil {
		return buf, err
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// wsEnvelope returns a frame's type, id and payload.
func wsEnvelope(b []byte) (typ, id, payload []byte, ok bool) {
	ok = eachMember(b, func(key, value []byte) bool {
		switch string(key) {
		case "type":
			typ = unquote(value)
		case "id":
			id = unquote(value)
		case "payload":
			payload = value
		}
		return true
	})
	return typ, id, payload, ok && typ != nil
}

// wsNext handles the payload of a next frame: {"data":{"feed":{...}}}, or
// {"errors":[...]} when the subscription failed.
func (s *subscriber) wsNext(payload []byte, d *delivery, now time.Time) error {
	var feed, errs []byte
	eachMember(payload, func(key, value []byte) bool {
		switch string(key) {
		case "data":
			eachMember(value, func(key, value []byte) bool {
				if string(key) == "feed" {
					feed = value
				}
				return true
			})
		case "errors":
			errs = value
		}
		return true
	})
	if errs != nil && string(errs) != "null" {
		return &statusError{op: "ws feed", code: graphqlErrorCode(errs), msg: string(errs)}
	}
	var typename []byte
	eachMember(feed, func(key, value []byte) bool {
		if string(key) == "__typename" {
			typename = unquote(value)
			return false
		}
		return true
	})
	switch string(typename) {
	case "Message":
		if parseDelivery(feed, d) {
			s.tr.message(d, now)
			return nil
		}
	case "Reset":
		s.tr.reset()
		return nil
	}
	s.tr.stats.parseErrs++
	return nil
}
