//go:build unix

package delivery

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/loopback"
)

// TestSocketDirectWrites: on a TCP socket, Socket writes to
// the descriptor itself, and once closed it never writes again, though the
// kernel hands the same descriptor number to the next connection.
func TestSocketDirectWrites(t *testing.T) {
	raw, client := loopback.TCPPair(t)
	c := NewSocket(raw, time.Minute)
	if c.fd < 0 {
		t.Fatal("a TCP socket is not written to directly")
	}
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v", got, err)
	}

	fd := c.fd
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// A new connection with the closed one's descriptor number, and its
	// peer.
	var reused, peer net.Conn
	for i := 0; i < 20 && reused == nil; i++ {
		s, cl := loopback.TCPPair(t)
		switch fd {
		case socketFD(s):
			reused, peer = s, cl
		case socketFD(cl):
			reused, peer = cl, s
		}
	}
	if reused == nil {
		t.Fatalf("no new connection took descriptor %d", fd)
	}
	if _, err := c.Write([]byte("leak")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v, want net.ErrClosed", err)
	}
	if _, err := reused.Write([]byte("mine")); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, 4)
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(peer, got); err != nil || string(got) != "mine" {
		t.Fatalf("the new connection's peer read %q, %v: the closed one wrote to it", got, err)
	}
}

// TestSocketDirectWriteFails: a write to a socket the client reset
// fails as net's own write does, and the connection is closed.
func TestSocketDirectWriteFails(t *testing.T) {
	raw, client := loopback.TCPPair(t)
	c := NewSocket(raw, time.Minute)
	_ = client.(*net.TCPConn).SetLinger(0)
	_ = client.Close() // RST
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = c.Write([]byte("x"))
		time.Sleep(time.Millisecond)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "write" {
		t.Fatalf("write to a reset socket: %v, want a *net.OpError", err)
	}
	if c.TimedOut() {
		t.Fatal("a reset counts as a slow client")
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("a failed connection still writes")
	}
}
