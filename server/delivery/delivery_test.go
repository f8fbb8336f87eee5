package delivery

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/loopback"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/observe"
)

// testEncoder frames an event as "E<offset>\n", a heartbeat as "H\n" and
// an end as "END <reason> <cursor>\n".
type testEncoder struct{}

func (testEncoder) AppendEvent(b []byte, ev pubsub.Event) []byte {
	b = append(b, 'E')
	b = strconv.AppendUint(b, ev.Message.Offset, 10)
	return append(b, '\n')
}

func (testEncoder) AppendHeartbeat(b []byte) []byte { return append(b, "H\n"...) }

func (testEncoder) AppendEnd(b []byte, e observe.End, cursor pubsub.Cursor) []byte {
	b = append(b, "END "...)
	b = append(b, e.Reason...)
	b = append(b, ' ')
	b, _ = cursor.AppendText(b)
	return append(b, '\n')
}

// recordingConn records how many events each write carried.
type recordingConn struct {
	Conn
	mu     sync.Mutex
	writes []int
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, strings.Count(string(p), "E"))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// fixture is a stream over a real loopback socket, fed by a memory broker.
type fixture struct {
	broker pubsub.Broker
	sub    *pubsub.Subscription
	sock   *Socket
	client net.Conn
	ends   chan observe.End
}

func newFixture(t *testing.T, timeout time.Duration) *fixture {
	t.Helper()
	b := pubsub.NewMemory(pubsub.Options{})
	t.Cleanup(func() { _ = b.Close() })
	sub, err := b.Subscribe(context.Background(), []string{"t"}, pubsub.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)
	raw, client := loopback.TCPPair(t)
	return &fixture{broker: b, sub: sub, sock: NewSocket(raw, timeout), client: client, ends: make(chan observe.End, 1)}
}

func (f *fixture) stream(conn Conn, o Options) *Stream {
	o.Sub, o.Conn, o.Encoder, o.Writers = f.sub, conn, testEncoder{}, NewWriters()
	o.OnEnd = func(e observe.End) {
		f.ends <- e
		_ = f.sock.Close()
	}
	s := New(o)
	f.sock.OnResume(s.Kick)
	return s
}

func (f *fixture) publish(t *testing.T, n int, data string) {
	t.Helper()
	raw, _ := json.Marshal(data)
	for range n {
		if _, err := f.broker.Publish(context.Background(), pubsub.PublishRequest{Channel: "t", Data: raw}); err != nil {
			t.Fatal(err)
		}
	}
}

// readLines reads n lines from r.
func readLines(t *testing.T, r *bufio.Reader, n int) []string {
	t.Helper()
	var lines []string
	for range n {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d lines: %v", len(lines), err)
		}
		lines = append(lines, strings.TrimSuffix(l, "\n"))
	}
	return lines
}

func (f *fixture) end(t *testing.T) observe.End {
	t.Helper()
	select {
	case e := <-f.ends:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end")
	}
	panic("unreachable")
}

// TestStreamCoalesces: events queued before a turn go out in writes of
// at most maxCoalesce events each, in order: 150 queued events, three
// writes.
func TestStreamCoalesces(t *testing.T) {
	f := newFixture(t, time.Minute)
	f.publish(t, 150, "x")
	rc := &recordingConn{Conn: f.sock}
	s := f.stream(rc, Options{})
	s.Start()
	_ = f.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	lines := readLines(t, bufio.NewReader(f.client), 150)
	for i, l := range lines {
		if want := fmt.Sprintf("E%d", i+1); l != want {
			t.Fatalf("event %d is %q, want %q", i, l, want)
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if fmt.Sprint(rc.writes) != "[64 64 22]" {
		t.Fatalf("events per write %v, want [64 64 22]", rc.writes)
	}
}

// TestStreamDropsSlowClient: a client that reads nothing is dropped once
// a write is not taken within the write timeout: the stream ends as
// SlowClient, and the socket is closed.
func TestStreamDropsSlowClient(t *testing.T) {
	f := newFixture(t, 200*time.Millisecond)
	_ = f.sock.Conn.(*net.TCPConn).SetWriteBuffer(4 << 10)
	_ = f.client.(*net.TCPConn).SetReadBuffer(4 << 10)
	s := f.stream(f.sock, Options{})
	s.Start()
	big := strings.Repeat("y", 16<<10)
	for {
		f.publish(t, 1, big) // each event kicks the stream; the client reads none
		select {
		case e := <-f.ends:
			if e != SlowClient || s.Ended() != SlowClient || !f.sock.TimedOut() {
				t.Fatalf("end %+v (%+v), timed out %v; want %+v", e, s.Ended(), f.sock.TimedOut(), SlowClient)
			}
			if _, err := f.sock.Write([]byte("x")); err == nil {
				t.Fatal("the slow client's socket still takes writes")
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestStreamFinishChunked: Finish writes the encoder's end (told why: the
// token expired, and the cursor after the last event written) as the last
// chunk of the body, then the body's end; the stream ends as Expired,
// once, and writes nothing more.
func TestStreamFinishChunked(t *testing.T) {
	f := newFixture(t, time.Minute)
	s := f.stream(f.sock, Options{Chunked: true})
	if !s.Send(func(b []byte) []byte { return append(b, "HELLO\n"...) }) {
		t.Fatal("Send failed")
	}
	s.Start()
	f.publish(t, 2, "x")
	_ = f.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	body := bufio.NewReader(httputil.NewChunkedReader(bufio.NewReader(f.client)))
	if got := readLines(t, body, 3); strings.Join(got, ",") != "HELLO,E1,E2" {
		t.Fatalf("read %q", got)
	}
	s.Finish(Expired)
	cursor, _ := f.sub.Cursor().AppendText(nil)
	rest, err := io.ReadAll(body) // to the body's end: the last chunk was written
	if err != nil {
		t.Fatalf("body: %q, %v", rest, err)
	}
	if want := "END token expired " + string(cursor) + "\n"; string(rest) != want {
		t.Fatalf("end %q, want %q", rest, want)
	}
	if e := f.end(t); e != Expired || s.Ended() != Expired {
		t.Fatalf("end %+v, want %+v", e, Expired)
	}
	s.End(ClientGone) // a later end changes nothing
	if s.Ended() != Expired || len(f.ends) != 0 {
		t.Fatal("a second end was noted")
	}
}

// TestStreamHeartbeat: an idle stream writes the encoder's heartbeat
// every interval, and none once it ended.
func TestStreamHeartbeat(t *testing.T) {
	f := newFixture(t, time.Minute)
	s := f.stream(f.sock, Options{Heartbeat: 5 * time.Millisecond})
	s.Start()
	_ = f.client.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(f.client)
	if got := readLines(t, r, 2); strings.Join(got, ",") != "H,H" {
		t.Fatalf("read %q, want two heartbeats", got)
	}
	s.Finish(Shutdown)
	if e := f.end(t); e != Shutdown {
		t.Fatalf("end %+v", e)
	}
	rest, _ := io.ReadAll(r) // the socket closed: nothing after the end
	if !strings.HasPrefix(strings.TrimLeft(string(rest), "H\n"), "END server shutting down ") || strings.Count(string(rest), "END") != 1 {
		t.Fatalf("after the heartbeats: %q", rest)
	}
	if strings.HasSuffix(strings.TrimRight(string(rest), "\n"), "H") {
		t.Fatalf("a heartbeat after the end: %q", rest)
	}
}

// TestStreamSubscriptionEnds: a subscription that ends (its broker closed
// it) ends the stream, saying why.
func TestStreamSubscriptionEnds(t *testing.T) {
	f := newFixture(t, time.Minute)
	s := f.stream(f.sock, Options{})
	s.Start()
	f.sub.Close()
	if e := f.end(t); e.By != "server" || !strings.HasPrefix(e.Reason, "subscription ended: ") {
		t.Fatalf("end %+v", e)
	}
}
