package server

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestDeadlineConnCork: corked writes are gathered and go out in one write
// at the last uncork, in order; once a write failed, every later write and
// uncork reports it.
func TestDeadlineConnCork(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := &deadlineConn{Conn: raw, timeout: time.Second}

	c.cork()
	c.cork()
	for _, p := range []string{"one,", "two,"} {
		if n, err := c.Write([]byte(p)); err != nil || n != len(p) {
			t.Fatalf("corked write: %d %v", n, err)
		}
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	if len(c.pending) != 8 {
		t.Fatalf("after the inner uncork %d bytes went out", 8-len(c.pending))
	}
	if _, err := c.Write([]byte("three")); err != nil {
		t.Fatal(err)
	}
	if err := c.uncork(); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("one,two,three"))
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "one,two,three" {
		t.Fatalf("read %q %v", got, err)
	}
	// Uncorked, a write goes out at once.
	if _, err := c.Write([]byte("!")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, got[:1]); err != nil || got[0] != '!' {
		t.Fatalf("read %q %v", got[:1], err)
	}

	// A failed write closes the socket; what follows fails too.
	_ = raw.Close()
	c.cork()
	_, _ = c.Write([]byte("lost"))
	if err := c.uncork(); err == nil {
		t.Fatal("uncork on a closed socket succeeded")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after a failure: %v", err)
	}
}
