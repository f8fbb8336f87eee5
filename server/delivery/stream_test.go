package delivery

import (
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/logbuf"
	"github.com/pushgate/pushgate/server/observe"
)

// flushCounter counts its flushes.
type flushCounter struct{ n atomic.Int32 }

func (f *flushCounter) flush() { f.n.Add(1) }

// TestStreamWriterPanicEndsOnlyItsStream: a panic while the writers write
// one stream (here a stream without a subscription) is recovered inside
// that stream's turn: the stream ends (OnEnd closes its socket, its end
// says internal error, its writes stop), OnPanic sees the panic while its
// stack is there to log, and the writers, shared by every stream, go on
// writing the others. Without the recovery the panic kills the process.
func TestStreamWriterPanicEndsOnlyItsStream(t *testing.T) {
	var logs logbuf.Buffer
	srv, client := net.Pipe()
	defer client.Close()
	sock := NewSocket(srv, time.Second)
	var ends atomic.Int32
	s := New(Options{Conn: sock, Encoder: testEncoder{}, Writers: NewWriters(),
		OnEnd: func(observe.End) { ends.Add(1); _ = sock.Close() },
		OnPanic: func(v any) {
			fmt.Fprintf(&logs, "recovered a panic: %v\n%s", v, debug.Stack())
		},
	})
	s.o.Writers.push(s, false) // its flush dereferences the nil subscription

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
	if e := s.Ended(); e != InternalEnd {
		t.Fatalf("stream end %+v, want %+v", e, InternalEnd)
	}
	if !s.stopped.Load() || !s.turn.mu.TryLock() {
		t.Fatal("the panicked stream is not stopped, or its turn is still held")
	}
	s.turn.mu.Unlock()
	s.flush() // a later turn writes nothing and does not panic again

	other := &flushCounter{}
	s.o.Writers.push(other, false)
	waitFor(t, func() bool { return other.n.Load() > 0 })
	if l := logs.String(); strings.Count(l, "recovered a panic") != 1 || !strings.Contains(l, "drainLocked") {
		t.Fatalf("log %s: want one recovered panic, with the stack of the write", l)
	}
	if n := ends.Load(); n != 1 {
		t.Fatalf("OnEnd called %d times, want 1", n)
	}
}
