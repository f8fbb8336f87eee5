package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return server, client
}

// TestDeadlineConnCongested: a write the socket cannot take at once
// returns without waiting, and the connection is congested: later writes
// join what is left, a goroutine writes it all in order as the client
// reads, then wait returns and the connection resumes. A client that reads
// nothing within the write timeout is disconnected, as a slow client.
func TestDeadlineConnCongested(t *testing.T) {
	raw, client := tcpPair(t)
	resumed := make(chan struct{}, 1)
	c := newDeadlineConn(raw, time.Minute)
	c.resume = func() { resumed <- struct{}{} }

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
	if !c.congested() {
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
	c.cork()
	_, _ = c.Write([]byte("tail"))
	if err := c.uncork(); err != nil {
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
	c.wait() // returns once the backlog is written
	if c.congested() {
		t.Fatal("still congested after wait")
	}
	select {
	case <-resumed:
	case <-time.After(10 * time.Second):
		t.Fatal("not resumed once the backlog was written")
	}

	// A client that stops reading: after the timeout, the connection is
	// closed, later writes fail, and it counts as timed out.
	raw2, _ := tcpPair(t)
	c2 := newDeadlineConn(raw2, 200*time.Millisecond)
	c2.resume = func() { t.Error("resumed a failed connection") }
	if _, err := c2.Write(big); err != nil {
		t.Fatalf("write: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c2.Write([]byte("x"))
		if err != nil {
			if !c2.timedOut.Load() {
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

// TestDeadlineConnBacklogBounded: a congested connection holds at most
// maxBacklog (and a write's worth); a writer past it waits for the socket.
func TestDeadlineConnBacklogBounded(t *testing.T) {
	raw, client := tcpPair(t)
	c := newDeadlineConn(raw, time.Minute)
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

// TestDeadlineConnCork: corked writes are gathered and go out in one write
// at the last uncork, in order; once a write failed, every later write and
// uncork reports it.
func TestDeadlineConnCork(t *testing.T) {
	raw, client := tcpPair(t)
	c := newDeadlineConn(raw, time.Second)

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
	if c.pending == nil || len(*c.pending) != 8 {
		t.Fatalf("after the inner uncork, pending %v", c.pending)
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

	// A write to a closed socket fails; what follows fails too.
	_ = c.Close()
	c.cork()
	_, _ = c.Write([]byte("lost"))
	if err := c.uncork(); err == nil {
		t.Fatal("uncork on a closed socket succeeded")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after a failure: %v", err)
	}
}

// TestWSNothingAfterClose: once the close frame is next (closeWrites), a
// message is refused and nothing reaches the socket; before, a message goes
// out as one unmasked text frame.
func TestWSNothingAfterClose(t *testing.T) {
	raw, client := tcpPair(t)
	c := &wsConn{dconn: newDeadlineConn(raw, time.Minute)}
	if err := c.write([]byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	want := append([]byte{0x81, 15}, `{"type":"ping"}`...)
	got := make([]byte, len(want))
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("frame %q %v, want %q", got, err, want)
	}
	c.closeWrites()
	if err := c.write([]byte(`{"type":"next"}`)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a message after closeWrites: %v, want net.ErrClosed", err)
	}
	// What reaches the socket next is the close frame, here a marker.
	if _, err := c.dconn.Write([]byte("CLOSE")); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, 5)
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "CLOSE" {
		t.Fatalf("after closeWrites the socket got %q %v", got, err)
	}
}

// countFlusher counts its flushes; the first ones push more streams, as a
// fan-out does while the writers work.
type countFlusher struct {
	n    *atomic.Int64
	more func()
}

func (f countFlusher) flush() {
	f.n.Add(1)
	if f.more != nil {
		f.more()
	}
}

// TestStreamWriters: every stream handed to the writers is flushed once, on
// at most max goroutines that end when the queue is empty, whether the
// streams come before or while the writers work.
func TestStreamWriters(t *testing.T) {
	for _, max := range []int{1, 2, 3} {
		ws := &streamWriters{max: max, delay: time.Millisecond}
		var flushed atomic.Int64
		var running, peak atomic.Int64
		const n = 1000
		for i := range n {
			var more func()
			if i%10 == 0 {
				more = func() { ws.push(countFlusher{n: &flushed}, false) } // one more each
			}
			ws.push(countFlusher{n: &flushed, more: func() {
				if r := running.Add(1); r > peak.Load() {
					peak.Store(r)
				}
				if more != nil {
					more()
				}
				running.Add(-1)
			}}, i%3 == 0) // a third wait out the delay first
		}
		want := int64(n + n/10)
		deadline := time.Now().Add(10 * time.Second)
		for flushed.Load() < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		for {
			ws.mu.Lock()
			active := ws.active
			ws.mu.Unlock()
			if active == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		ws.mu.Lock()
		active, queued := ws.active, len(ws.queue)+len(ws.later)
		ws.mu.Unlock()
		if got := flushed.Load(); got != want || active != 0 || queued != 0 {
			t.Fatalf("max %d: %d flushes of %d, %d writers left, %d queued", max, got, want, active, queued)
		}
		if p := peak.Load(); p > int64(max) {
			t.Fatalf("max %d: %d writers at once", max, p)
		}
	}
}

// TestWriteTurnDelay: a stream handed again within the writers' delay of
// its last turn waits in later until the delay is out, then is flushed
// once; one whose last turn is older, or with half a write pending, is
// queued at once.
func TestWriteTurnDelay(t *testing.T) {
	ws := &streamWriters{max: 1, delay: time.Hour}
	var turn writeTurn
	var flushed atomic.Int64
	f := countFlusher{n: &flushed}
	turn.hand(ws, f, 0) // never taken: at once
	waitFor(t, func() bool { return flushed.Load() == 1 })
	if !turn.take() {
		t.Fatal("take failed")
	}
	turn.mu.Unlock()
	turn.hand(ws, f, 0) // just taken: later
	turn.hand(ws, f, 0) // queued already: nothing
	ws.mu.Lock()
	later, queued := len(ws.later), len(ws.queue)
	ws.mu.Unlock()
	if later != 1 || queued != 0 || flushed.Load() != 1 {
		t.Fatalf("handed within the delay: %d later, %d queued, %d flushed; want 1, 0, 1", later, queued, flushed.Load())
	}
	ws.timer.Reset(0) // the delay is out
	waitFor(t, func() bool { return flushed.Load() == 2 })
	ws.mu.Lock()
	later = len(ws.later)
	ws.mu.Unlock()
	if later != 0 {
		t.Fatalf("%d still later after the delay", later)
	}
	turn.take()
	turn.mu.Unlock()
	turn.last.Add(-int64(2 * time.Hour)) // the last turn is older than the delay
	turn.hand(ws, f, 0)
	waitFor(t, func() bool { return flushed.Load() == 3 })

	// Half a write pending: no waiting, neither handed anew nor when
	// waiting already.
	turn.take()
	turn.mu.Unlock()
	turn.hand(ws, f, maxCoalesce/2)
	waitFor(t, func() bool { return flushed.Load() == 4 })
	turn.take()
	turn.mu.Unlock()
	turn.hand(ws, f, 1) // waits
	ws.mu.Lock()
	later = len(ws.later)
	ws.mu.Unlock()
	if later != 1 {
		t.Fatalf("%d later, want 1", later)
	}
	turn.hand(ws, f, maxCoalesce/2) // the queue filled meanwhile
	waitFor(t, func() bool { return flushed.Load() == 5 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRequestStateDropsWriter: a request's state, which a stream's
// context keeps after its handler returned (SSE), keeps neither net/http's
// response nor its buffers.
func TestRequestStateDropsWriter(t *testing.T) {
	var ctx context.Context
	h := requestContext(zerolog.Nop(), NewMetrics(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx = r.Context()
		w.WriteHeader(http.StatusAccepted)
		if st := requestOf(ctx); st == nil || st.w.ResponseWriter == nil {
			t.Fatal("no request state while the handler runs")
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/events", nil))
	st := requestOf(ctx)
	if st == nil || st.w.ResponseWriter != nil || st.w.req != nil {
		t.Fatalf("after the handler: %+v", st)
	}
}
