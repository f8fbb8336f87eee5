package server

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// lockedLog is a log sink read while goroutines write it.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// flushCounter counts its flushes.
type flushCounter struct{ n atomic.Int32 }

func (f *flushCounter) flush() { f.n.Add(1) }

// TestStreamWriterPanicEndsOnlyItsStream: a panic while the stream writers
// write one SSE stream (here a stream without a subscription) is
// recovered inside that stream's turn: the stream ends (its socket is
// closed, its end says internal error, its writes stop), the panic is
// logged with its stack, and the writers, shared by every stream, go on
// writing the others. Without the recovery the panic kills the process.
func TestStreamWriterPanicEndsOnlyItsStream(t *testing.T) {
	var logs lockedLog
	ctx := zerolog.New(&logs).WithContext(context.Background())
	srv, client := net.Pipe()
	defer client.Close()
	c := &sseConn{ctx: ctx, conn: newDeadlineConn(srv, time.Second), writers: newStreamWriters()}
	c.writers.push(c, false) // its flush dereferences the nil subscription

	closed := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(client)
		closed <- err
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the panicked stream's socket is still open")
	}
	if e := c.endState(); e != internalEnd {
		t.Fatalf("stream end %+v, want %+v", e, internalEnd)
	}
	if !c.broken.Load() || !c.turn.mu.TryLock() {
		t.Fatal("the panicked stream is not marked broken, or its turn is still held")
	}
	c.turn.mu.Unlock()
	c.flush() // a later turn writes nothing and does not panic again

	other := &flushCounter{}
	c.writers.push(other, false)
	deadline := time.Now().Add(10 * time.Second)
	for other.n.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the writers stopped writing other streams")
		}
		time.Sleep(time.Millisecond)
	}
	if s := logs.String(); strings.Count(s, "recovered a panic") != 1 || !strings.Contains(s, "SSE write") || !strings.Contains(s, "drainLocked") {
		t.Fatalf("log %s: want one recovered panic of the SSE write, with its stack", s)
	}
}
