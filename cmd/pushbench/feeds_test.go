package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// splits feeds b to feed in pieces cut at random places.
func splits(r *rand.Rand, b []byte, feed func([]byte) error) error {
	for len(b) > 0 {
		n := min(1+r.IntN(40), len(b))
		if err := feed(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// TestChunkedDecoder decodes what net/http's chunked writer encodes, cut
// anywhere, and ends at the last chunk.
func TestChunkedDecoder(t *testing.T) {
	var body bytes.Buffer
	var want []byte
	w := httputil.NewChunkedWriter(&body)
	for i := range 50 {
		p := bytes.Repeat([]byte{byte('a' + i%26)}, 1+i*7)
		want = append(want, p...)
		_, _ = w.Write(p)
	}
	_ = w.Close()
	body.WriteString("\r\n") // the empty trailer
	r := rand.New(rand.NewPCG(3, 4))
	for iter := range 100 {
		var d chunkedDecoder
		var got []byte
		err := splits(r, body.Bytes(), func(b []byte) error {
			return d.feed(b, func(p []byte) error { got = append(got, p...); return nil })
		})
		if !errors.Is(err, errChunkedEnd) || !errors.Is(err, io.EOF) {
			t.Fatalf("iteration %d: %v, want the end of the body", iter, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("iteration %d: decoded %d bytes, want %d", iter, len(got), len(want))
		}
	}

	var d chunkedDecoder
	var got []byte
	if err := d.feed([]byte("3;name=value\r\nabc\r\n2\nde\n"), func(p []byte) error { got = append(got, p...); return nil }); err != nil || string(got) != "abcde" {
		t.Fatalf("extensions and bare LFs: %q %v", got, err)
	}
	for name, in := range map[string]string{
		"not hex":            "zz\r\nabc\r\n",
		"negative":           "-3\r\nabc\r\n",
		"no CRLF after data": "3\r\nabcX",
		"a long size line":   strings.Repeat("1", maxChunkLine+1),
	} {
		var d chunkedDecoder
		if err := d.feed([]byte(in), func([]byte) error { return nil }); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("%s: %v, want an error", name, err)
		}
	}
	stop := errors.New("stop")
	d = chunkedDecoder{}
	if err := d.feed([]byte("3\r\nabc\r\n"), func([]byte) error { return stop }); err != stop {
		t.Fatalf("the consumer's error: %v", err)
	}
}

// TestWSClientAgainstGorilla: the subscriber's handshake and frame parser
// against gorilla/websocket's server: messages of each length encoding,
// fragmented ones (a small write buffer), a ping answered with a pong,
// and the close frame ending the feed.
func TestWSClientAgainstGorilla(t *testing.T) {
	msgs := []string{"{}", strings.Repeat("m", 200), strings.Repeat("L", 70000), strings.Repeat("f", 3000)}
	pong := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{Subprotocols: []string{"graphql-transport-ws"}, WriteBufferSize: 256}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.SetPongHandler(func(s string) error { pong <- s; return nil })
		go func() { // reads, so that pongs are handled
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
		for _, m := range msgs {
			if err := c.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
				return
			}
		}
		_ = c.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second))
		select {
		case <-pong:
		case <-time.After(10 * time.Second):
			return
		}
		_ = c.WriteMessage(websocket.TextMessage, []byte("after the pong"))
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4400, "bye"), time.Now().Add(time.Second))
		time.Sleep(100 * time.Millisecond)
	}))
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", key)
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Protocol", "graphql-transport-ws")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := clientPath{dial: (&net.Dialer{}).DialContext}
	conn, br, res, done, err := p.exchange(ctx, ctx, req, "ws handshake", http.StatusSwitchingProtocols)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if res.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
		t.Fatalf("handshake: %v", res.Header)
	}
	var frames wsParser
	var got []string
	consume := func(b []byte, _ time.Time, w io.Writer) error {
		return frames.feed(b, w, func(m []byte, _ io.Writer) error { got = append(got, string(m)); return nil })
	}
	err = readUntil(conn, br, consume, func() bool { return false })
	if err == nil || !strings.Contains(err.Error(), "4400 bye") {
		t.Fatalf("the feed ended with %v, want the close frame", err)
	}
	want := append(msgs, "after the pong")
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("message %d: %d bytes %.20q, want %d bytes", i, len(got[i]), got[i], len(want[i]))
		}
	}
}

// TestWSParserRejects: frames a server must not send end the feed.
func TestWSParserRejects(t *testing.T) {
	frame := func(b0 byte, payload string, masked bool) []byte {
		b := []byte{b0, byte(len(payload))}
		if masked {
			b[1] |= 0x80
			b = append(b, 0, 0, 0, 0)
		}
		return append(b, payload...)
	}
	huge := []byte{0x81, 127}
	huge = binary.BigEndian.AppendUint64(huge, maxWSMessage+1)
	for name, in := range map[string][]byte{
		"masked":                     frame(0x81, "x", true),
		"reserved bits":              frame(0xC1, "x", false),
		"continuation without start": frame(0x80, "x", false),
		"fragmented ping":            frame(0x09, "x", false),
		"a new message inside one":   append(frame(0x01, "a", false), frame(0x81, "b", false)...),
		"unknown opcode":             frame(0x83, "x", false),
		"over the message bound":     huge,
		"oversized control frame":    append([]byte{0x89, 126, 0, 200}, make([]byte, 200)...),
	} {
		var p wsParser
		err := p.feed(in, io.Discard, func([]byte, io.Writer) error { return nil })
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestFeedLoops: a loop feeds what a socket reads to its consumer, ends the
// feed at the socket's end (io.EOF), at the consumer's error, or (nil) when
// the subscriber's context is done; close waits for the loops.
func TestFeedLoops(t *testing.T) {
	ls := &feedLoops{}
	pair := func() (net.Conn, net.Conn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); s.Close() })
		return c, s
	}
	type result struct {
		got string
		err error
	}
	serve := func(ctx context.Context, conn net.Conn, fail string) chan result {
		out := make(chan result, 1)
		var mu sync.Mutex
		var got []byte
		go func() {
			err := ls.serve(ctx, conn, func(b []byte, _ time.Time, w io.Writer) error {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, b...)
				if fail != "" && bytes.Contains(got, []byte(fail)) {
					return errors.New("consumer: " + fail)
				}
				_, err := w.Write([]byte("ok")) // back to the peer
				return err
			})
			mu.Lock()
			defer mu.Unlock()
			out <- result{string(got), err}
		}()
		return out
	}

	// The peer's end.
	c1, s1 := pair()
	r1 := serve(context.Background(), c1, "")
	_, _ = s1.Write([]byte("hello"))
	ack := make([]byte, 2)
	if _, err := io.ReadFull(s1, ack); err != nil || string(ack) != "ok" {
		t.Fatalf("the consumer's write: %q %v", ack, err)
	}
	_ = s1.Close()
	if r := <-r1; r.got != "hello" || !errors.Is(r.err, io.EOF) {
		t.Fatalf("peer closed: %q %v", r.got, r.err)
	}

	// The consumer's error.
	c2, s2 := pair()
	r2 := serve(context.Background(), c2, "bad")
	_, _ = s2.Write([]byte("a bad frame"))
	if r := <-r2; r.err == nil || !strings.Contains(r.err.Error(), "consumer: bad") {
		t.Fatalf("consumer failed: %q %v", r.got, r.err)
	}
	// The loop closed the socket: the peer reads its end.
	_ = s2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(s2); err != nil {
		t.Fatalf("the peer of an ended feed: %v", err)
	}

	// The subscriber stops.
	c3, _ := pair()
	ctx, cancel := context.WithCancel(context.Background())
	r3 := serve(ctx, c3, "")
	cancel()
	if r := <-r3; r.err != nil {
		t.Fatalf("stopped: %v, want nil", r.err)
	}

	done := make(chan struct{})
	go func() { ls.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("close did not return with every feed ended")
	}
}

// TestExchangeRefused: a refusal reads as the server's error code.
func TestExchangeRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"code":"UNAUTHENTICATED","message":"no token"}}`)
	}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/events", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := clientPath{dial: (&net.Dialer{}).DialContext}
	_, _, _, _, err := p.exchange(ctx, ctx, req, "sse", http.StatusOK)
	var se *statusError
	if !errors.As(err, &se) || se.status != http.StatusUnauthorized || se.code != "UNAUTHENTICATED" {
		t.Fatalf("%v, want a statusError 401 UNAUTHENTICATED", err)
	}
	if k := errorKind(err); k != "sse: UNAUTHENTICATED" {
		t.Fatalf("error kind %q", k)
	}
}
