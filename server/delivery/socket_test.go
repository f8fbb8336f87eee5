package delivery

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/loopback"
)

// TestSocketCongested: a write the socket cannot take at once
// returns without waiting, and the connection is congested: later writes
// join what is left, a goroutine writes it all in order as the client
// reads, then wait returns and the connection resumes. A client that reads
// nothing within the write timeout is disconnected, as a slow client.
func TestSocketCongested(t *testing.T) {
	raw, client := loopback.TCPPair(t)
	resumed := make(chan struct{}, 1)
	c := NewSocket(raw, time.Minute)
	c.OnResume(func() { resumed <- struct{}{} })

	// More than the socket buffers hold (a small receive buffer would
	// stall loopback TCP on its persist timer instead).
	big := make([]byte, 32<<20)
	for i := range big {
		big[i] = byte(i % 251)
	}
	start := time.Now()
	if n, err := c.Write(big); err != nil || n != len(big) {
		t.Fatalf("write: %d %v", n, err)
	}
	if !c.Congested() {
		t.Fatal("not congested after a write the socket could not take")
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("the write waited %v for the socket", waited)
	}
	got := make([]byte, len(big)+len("tail"))
	read := make(chan error, 1)
	go func() {
		_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := io.ReadFull(client, got)
		read <- err
	}()
	c.Cork()
	_, _ = c.Write([]byte("tail"))
	if err := c.Uncork(); err != nil {
		t.Fatal(err)
	}
	if err := <-read; err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got[:len(big)], big) {
		t.Fatal("the backlog was not written as it was given")
	}
	if string(got[len(big):]) != "tail" {
		t.Fatalf("after the backlog: %q", got[len(big):])
	}
	c.Wait() // returns once the backlog is written
	if c.Congested() {
		t.Fatal("still congested after wait")
	}
	select {
	case <-resumed:
	case <-time.After(10 * time.Second):
		t.Fatal("not resumed once the backlog was written")
	}

	// A client that stops reading: after the timeout, the connection is
	// closed, later writes fail, and it counts as timed out.
	raw2, _ := loopback.TCPPair(t)
	c2 := NewSocket(raw2, 200*time.Millisecond)
	c2.resume = func() { t.Error("resumed a failed connection") }
	if _, err := c2.Write(big); err != nil {
		t.Fatalf("write: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c2.Write([]byte("x"))
		if err != nil {
			if !c2.TimedOut() {
				t.Fatalf("failed with %v, not as timed out", err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a client that reads nothing was not disconnected")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSocketBacklogBounded: a congested connection holds at most
// maxBacklog (and a write's worth); a writer past it waits for the socket.
func TestSocketBacklogBounded(t *testing.T) {
	raw, client := loopback.TCPPair(t)
	c := NewSocket(raw, time.Minute)
	chunk := make([]byte, 64<<10)
	const total = 32 << 20 // more than the socket buffers hold
	wrote := make(chan int, 1)
	go func() {
		n := 0
		for n < total {
			if _, err := c.Write(chunk); err != nil {
				break
			}
			n += len(chunk)
		}
		wrote <- n
	}()
	// The writer blocks once the backlog is full...
	for full := false; !full; {
		c.mu.Lock()
		full = c.slow.Load() && c.inflight+len(c.backlog) >= maxBacklog
		c.mu.Unlock()
		select {
		case n := <-wrote:
			t.Fatalf("the writer ended before the backlog filled: %d bytes", n)
		case <-time.After(time.Millisecond):
		}
	}
	select {
	case n := <-wrote:
		t.Fatalf("the writer did not wait: %d bytes taken", n)
	case <-time.After(100 * time.Millisecond):
	}
	c.mu.Lock()
	held := c.inflight + len(c.backlog)
	c.mu.Unlock()
	if held > maxBacklog+len(chunk) {
		t.Fatalf("backlog %d bytes, over %d", held, maxBacklog+len(chunk))
	}
	// ...and goes on as the client reads.
	go func() { _, _ = io.Copy(io.Discard, client) }()
	select {
	case n := <-wrote:
		if n != total {
			t.Fatalf("wrote %d", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the writer did not go on once the client read")
	}
}

// TestSocketCork: corked writes are gathered and go out in one write
// at the last uncork, in order; once a write failed, every later write and
// uncork reports it.
func TestSocketCork(t *testing.T) {
	raw, client := loopback.TCPPair(t)
	c := NewSocket(raw, time.Second)

	c.Cork()
	c.Cork()
	for _, p := range []string{"one,", "two,"} {
		if n, err := c.Write([]byte(p)); err != nil || n != len(p) {
			t.Fatalf("corked write: %d %v", n, err)
		}
	}
	if err := c.Uncork(); err != nil {
		t.Fatal(err)
	}
	if c.pending == nil || len(*c.pending) != 8 {
		t.Fatalf("after the inner uncork, pending %v", c.pending)
	}
	if _, err := c.Write([]byte("three")); err != nil {
		t.Fatal(err)
	}
	if err := c.Uncork(); err != nil {
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

	// A write to a closed socket fails; what follows fails too.
	_ = c.Close()
	c.Cork()
	_, _ = c.Write([]byte("lost"))
	if err := c.Uncork(); err == nil {
		t.Fatal("uncork on a closed socket succeeded")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after a failure: %v", err)
	}
}
