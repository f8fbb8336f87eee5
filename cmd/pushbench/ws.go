package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// The WebSocket subscriber speaks graphql-transport-ws: connection_init
// (with {token} when it has one), connection_ack, one subscribe of feed,
// then next messages; it answers the server's pings with pongs. It speaks
// the WebSocket protocol (RFC 6455) itself, so that once the subscription
// is live the socket can go to a feed loop.

// feedQuery asks for what a real client asks for: the fields SSE and
// long-poll carry, and the cursor to resume from.
const feedQuery = `subscription($channels: [String!]!) { feed(channels: $channels) { __typename ` +
	`... on Message { channel id event data createdAt cursor } ... on Reset { channel reason cursor } } }`

type wsFrame struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func (s *subscriber) runWS(ctx, cctx context.Context, env *subEnv, connected func()) error {
	req, err := http.NewRequest(http.MethodGet, env.base+"/graphql", nil)
	if err != nil {
		return err
	}
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	for k, v := range map[string]string{
		"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
		"Sec-WebSocket-Version": "13", "Sec-WebSocket-Protocol": "graphql-transport-ws",
	} {
		req.Header.Set(k, v)
	}
	conn, br, res, done, err := env.path(s).exchange(ctx, cctx, req, "ws handshake", http.StatusSwitchingProtocols)
	if err != nil {
		return err
	}
	defer done()
	if got, want := res.Header.Get("Sec-WebSocket-Accept"), wsAccept(key); got != want {
		return fmt.Errorf("ws handshake: Sec-WebSocket-Accept %q, want %q", got, want)
	}
	if got := res.Header.Get("Sec-WebSocket-Protocol"); got != "graphql-transport-ws" {
		return fmt.Errorf("ws: the server chose subprotocol %q", got)
	}

	var (
		frames wsParser
		acked  bool
		now    time.Time
		d      delivery
	)
	handle := func(msg []byte, w io.Writer) error {
		if !acked {
			var f wsFrame
			if err := json.Unmarshal(msg, &f); err != nil {
				return fmt.Errorf("ws: bad frame %.100q: %w", msg, err)
			}
			switch f.Type {
			case "connection_ack":
				acked = true
			case "ping":
				return writeWS(w, wsText, pongFrame)
			case "pong":
			default:
				return fmt.Errorf("ws: want connection_ack, got %.200s", msg)
			}
			return nil
		}
		typ, id, payload, ok := wsEnvelope(msg)
		if !ok {
			s.tr.stats.parseErrs++
			return nil
		}
		switch string(typ) {
		case "next":
			if string(id) == "1" {
				return s.feedResult(payload, &d, now)
			}
		case "ping":
			return writeWS(w, wsText, pongFrame)
		case "pong":
		case "error":
			return &statusError{op: "ws subscribe", code: graphqlErrorCode(payload), msg: string(payload)}
		case "complete":
			return errors.New("ws: the server completed the subscription")
		default:
			s.tr.stats.parseErrs++
		}
		return nil
	}
	consume := func(p []byte, at time.Time, w io.Writer) error {
		now = at
		return frames.feed(p, w, handle)
	}

	hello := wsFrame{Type: "connection_init"}
	if s.token != "" {
		hello.Payload, _ = json.Marshal(map[string]string{"token": s.token})
	}
	b, _ := json.Marshal(hello)
	if err := writeWS(conn, wsText, b); err != nil {
		return fmt.Errorf("ws connection_init: %w", err)
	}
	if err := readUntil(conn, br, consume, func() bool { return acked }); err != nil {
		return fmt.Errorf("ws waiting for connection_ack: %w", err)
	}
	payload, _ := json.Marshal(map[string]any{"query": feedQuery, "variables": map[string]any{"channels": s.channels}})
	b, _ = json.Marshal(wsFrame{ID: "1", Type: "subscribe", Payload: payload})
	if err := writeWS(conn, wsText, b); err != nil {
		return fmt.Errorf("ws subscribe: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	connected()
	if err := env.loops.serve(ctx, conn, consume); err != nil {
		return fmt.Errorf("ws read: %w", err)
	}
	return nil
}

var pongFrame = []byte(`{"type":"pong"}`)

// wsAccept is the Sec-WebSocket-Accept of a key (RFC 6455, 4.2.2).
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// WebSocket opcodes.
const (
	wsContinuation = 0x0
	wsText         = 0x1
	wsBinary       = 0x2
	wsClose        = 0x8
	wsPing         = 0x9
	wsPong         = 0xA
)

// maxWSMessage bounds a message from the server.
const maxWSMessage = 4 << 20

// writeWS writes one frame as a client does: final, masked.
func writeWS(w io.Writer, op byte, payload []byte) error {
	b := make([]byte, 0, 14+len(payload))
	b = append(b, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i&3])
	}
	_, err := w.Write(b)
	return err
}

// wsParser reads the frames a server sends (RFC 6455: unmasked) from the
// bytes it is fed, as they come off the socket. A message that arrives
// whole in one read is handed on where it lies; a fragmented or cut one is
// assembled first.
type wsParser struct {
	hdr  [14]byte
	nhdr int // of hdr, read so far
	// The frame being read, once its header is complete.
	inFrame bool
	op      byte
	fin     bool
	left    int    // of its payload
	msg     []byte // the message (or control payload) so far
	msgOp   byte   // of the message being assembled, 0 for none
	ctrl    []byte
}

// feed parses b, calling handle with each text or binary message; it
// answers pings with pongs on w and ends at a close frame.
func (p *wsParser) feed(b []byte, w io.Writer, handle func(msg []byte, w io.Writer) error) error {
	for len(b) > 0 {
		if !p.inFrame {
			n, err := p.header(b)
			if err != nil {
				return err
			}
			b = b[n:]
			if !p.inFrame {
				return nil // the header continues in the next read
			}
		}
		// The payload, or what of it b holds.
		control := p.op >= wsClose
		n := min(p.left, len(b))
		part := b[:n]
		b = b[n:]
		p.left -= n
		switch {
		case control:
			p.ctrl = append(p.ctrl, part...)
		case p.left == 0 && p.fin && p.msgOp == 0 && len(p.msg) == 0:
			// a whole message in this read: no copy
		default:
			if len(p.msg)+len(part) > maxWSMessage {
				return fmt.Errorf("ws: a message over %d bytes", maxWSMessage)
			}
			p.msg = append(p.msg, part...)
		}
		if p.left > 0 {
			return nil
		}
		p.inFrame = false
		switch {
		case control:
			err := p.control(w)
			p.ctrl = p.ctrl[:0]
			if err != nil {
				return err
			}
		case !p.fin:
		case p.msgOp == 0 && len(p.msg) == 0:
			if err := handle(part, w); err != nil {
				return err
			}
		default:
			err := handle(p.msg, w)
			p.msg, p.msgOp = p.msg[:0], 0
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// header reads a frame's header from b, reporting how much of b it took;
// p.inFrame says whether it is complete.
func (p *wsParser) header(b []byte) (int, error) {
	took := 0
	need := 2
	for {
		if p.nhdr >= 2 {
			switch p.hdr[1] & 0x7F {
			case 126:
				need = 4
			case 127:
				need = 10
			}
		}
		if p.nhdr >= need {
			break
		}
		if took == len(b) {
			return took, nil
		}
		c := copy(p.hdr[p.nhdr:need], b[took:])
		p.nhdr += c
		took += c
	}
	h := p.hdr[:p.nhdr]
	p.nhdr = 0
	if h[0]&0x70 != 0 {
		return took, errors.New("ws: a frame with reserved bits set")
	}
	if h[1]&0x80 != 0 {
		return took, errors.New("ws: a masked frame from the server")
	}
	var size uint64
	switch len(h) {
	case 2:
		size = uint64(h[1] & 0x7F)
	case 4:
		size = uint64(binary.BigEndian.Uint16(h[2:]))
	default:
		size = binary.BigEndian.Uint64(h[2:])
	}
	p.fin, p.op = h[0]&0x80 != 0, h[0]&0x0F
	switch p.op {
	case wsText, wsBinary:
		if p.msgOp != 0 || len(p.msg) > 0 {
			return took, errors.New("ws: a new message inside a fragmented one")
		}
		if !p.fin {
			p.msgOp = p.op
		}
	case wsContinuation:
		if p.msgOp == 0 {
			return took, errors.New("ws: a continuation frame outside a message")
		}
	case wsClose, wsPing, wsPong:
		if !p.fin || size > 125 {
			return took, errors.New("ws: a fragmented or oversized control frame")
		}
	default:
		return took, fmt.Errorf("ws: opcode %#x", p.op)
	}
	if size > maxWSMessage {
		return took, fmt.Errorf("ws: a frame of %d bytes", size)
	}
	p.left, p.inFrame = int(size), true
	return took, nil
}

func (p *wsParser) control(w io.Writer) error {
	switch p.op {
	case wsPing:
		return writeWS(w, wsPong, p.ctrl)
	case wsClose:
		code := 0
		if len(p.ctrl) >= 2 {
			code = int(binary.BigEndian.Uint16(p.ctrl))
		}
		reason := ""
		if len(p.ctrl) > 2 {
			reason = string(p.ctrl[2:])
		}
		return fmt.Errorf("ws: the server closed the connection: %d %s", code, reason)
	}
	return nil
}

// readUntil feeds consume what br holds, then what conn reads, until done
// (or an error, or conn's deadline).
func readUntil(conn net.Conn, br *bufio.Reader, consume consumeFunc, done func() bool) error {
	buffered, _ := br.Peek(br.Buffered())
	if err := consume(buffered, time.Now(), conn); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for !done() {
		n, err := conn.Read(buf)
		if n > 0 {
			if cerr := consume(buf[:n], time.Now(), conn); cerr != nil {
				return cerr
			}
		}
		if err != nil && !done() {
			return err
		}
	}
	return nil
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

// feedResult handles one execution result of the feed subscription (the
// payload of a graphql-transport-ws next message, the data of a graphql-sse
// next event): {"data":{"feed":{...}}}, or {"errors":[...]} when the
// subscription failed.
func (s *subscriber) feedResult(payload []byte, d *delivery, now time.Time) error {
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
		return &statusError{op: s.kind + " feed", code: graphqlErrorCode(errs), msg: string(errs)}
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
