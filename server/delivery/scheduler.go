package delivery

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushgate/pushgate/pubsub"
)

// writeBuffer is the memory of one write of a stream, pooled: an idle
// stream keeps none.
type writeBuffer struct {
	events  []byte      // the events (or heartbeat) to write
	frame   []byte      // events as one chunk of a chunked body (Options.Chunked)
	created []time.Time // of the messages in events, for the metrics
}

type bufferPool struct{ p sync.Pool }

var writeBuffers = &bufferPool{p: sync.Pool{New: func() any { return new(writeBuffer) }}}

func (p *bufferPool) get() *writeBuffer { return p.p.Get().(*writeBuffer) }

func (p *bufferPool) put(b *writeBuffer) {
	if cap(b.events) > 64<<10 || cap(b.frame) > 64<<10 {
		return // do not keep a burst's buffers
	}
	b.events, b.frame, b.created = b.events[:0], b.frame[:0], b.created[:0]
	p.p.Put(b)
}

// writeTurn hands a stream with queued events to the writers: at most
// once at a time (queued), written by one at a time (mu). Whoever releases
// the stream hands it back when events were queued meanwhile and the
// connection is clear; a congested socket resumes the stream itself once
// it is (Socket.OnResume).
type writeTurn struct {
	queued atomic.Bool
	mu     sync.Mutex
	last   atomic.Int64 // when the last turn was taken (monoNow); 0: never
}

// hand gives f to ws unless it is in their queue already: at once, or
// after ws.delay when the stream's last turn was less than that ago. With
// pending events enough to fill half a write (maxCoalesce), nothing waits:
// a stream that waited would take no more per write, and its queue, which
// falls back to reading the store when full, would fill.
func (t *writeTurn) hand(ws *Writers, f flusher, pending int) {
	full := pending >= maxCoalesce/2
	if t.queued.CompareAndSwap(false, true) {
		last := t.last.Load()
		ws.push(f, !full && last != 0 && monoNow()-last < int64(ws.delay))
	} else if full {
		ws.due() // f may be waiting out the delay
	}
}

// take starts a writer's turn; false: another write holds the stream and
// hands it back on release.
func (t *writeTurn) take() bool {
	t.queued.Store(false)
	t.last.Store(monoNow())
	return t.mu.TryLock()
}

// monoNow is the monotonic clock in nanoseconds, from 1.
func monoNow() int64 { return int64(time.Since(monoStart)) + 1 }

var monoStart = time.Now()

// release ends a turn, or any write under mu; again: the stream is to be
// handed to the writers again.
func (t *writeTurn) release(sub *pubsub.Subscription, conn Conn) (again bool) {
	t.mu.Unlock()
	return sub != nil && sub.Pending() > 0 && !conn.Congested()
}

// Writers write the streams handed to them, on at most max goroutines
// that exist only while there is work. One Writers serves every stream of
// a server, whatever its transport.
//
// A stream handed again within delay of its last turn waits out the delay
// (in later) instead of being written at once: a stream that many messages
// a second reach then takes them in a few writes instead of one system call
// (and one wake-up of its reader) each, while a stream written less often
// than every delay, as nearly all are, is written at once. One channel
// sent to as fast as possible, one SSE reader: a write per message before,
// at most one per 500 µs (or per half a write of events) after; the send
// scenario's server CPU per send went from 34.6 to 31.7 µs.
type Writers struct {
	max    int
	delay  time.Duration
	mu     sync.Mutex
	queue  []flusher
	active int
	later  []flusher   // streams waiting out the delay
	timer  *time.Timer // moves later to queue; running while later is not empty
	// waiting is len(later) > 0, for due to read without the lock: a
	// stream with half a write pending calls it on every event queued.
	waiting atomic.Bool
}

// writeDelay is the Writers' delay: at most this much latency is
// added, and only to a stream written to more than once in it.
const writeDelay = 500 * time.Microsecond

// flusher is a stream with something queued: flush writes it.
type flusher interface{ flush() }

// NewWriters returns writers for half the Go processors: a fan-out
// writes in parallel, and leaves the rest to reading, sending and
// accepting. With one processor per core on 2 cores, 1,000 SSE subscribers
// at 100 msg/s cost 8.2-8.5 µs of CPU per delivery with one writer, 9.9-10.1
// with two (which contended with each other and with everything else for
// both cores); with pushgate's default of two spare processors (two
// writers), 4.5 µs and a p99 of 5.8 ms, against 4.6 µs and 6.6 ms before.
func NewWriters() *Writers {
	return &Writers{max: max(1, runtime.GOMAXPROCS(0)/2), delay: writeDelay}
}

// push queues c, or with later, has it wait out the delay first.
func (ws *Writers) push(c flusher, later bool) {
	ws.mu.Lock()
	if later {
		ws.later = append(ws.later, c)
		ws.waiting.Store(true)
		if len(ws.later) == 1 {
			if ws.timer == nil {
				ws.timer = time.AfterFunc(ws.delay, ws.due)
			} else {
				ws.timer.Reset(ws.delay)
			}
		}
		ws.mu.Unlock()
		return
	}
	ws.queue = append(ws.queue, c)
	ws.startLocked()
}

// due queues the streams that wait out the delay, now.
func (ws *Writers) due() {
	if !ws.waiting.Load() {
		return
	}
	ws.mu.Lock()
	if len(ws.later) == 0 {
		ws.mu.Unlock()
		return
	}
	ws.waiting.Store(false)
	ws.queue = append(ws.queue, ws.later...)
	clear(ws.later)
	ws.later = ws.later[:0]
	if cap(ws.later) > 1024 {
		ws.later = nil // a burst's
	}
	ws.startLocked()
}

// startLocked starts a writer when the queue has work and fewer than max
// run, and unlocks mu.
func (ws *Writers) startLocked() {
	start := len(ws.queue) > 0 && ws.active < ws.max
	if start {
		ws.active++
	}
	ws.mu.Unlock()
	if start {
		go ws.work()
	}
}

// work flushes the queue's streams, taking its share of them at a time:
// the lock is taken once per batch, not once per stream, so a fan-out's
// producer seldom waits on it.
func (ws *Writers) work() {
	var batch []flusher
	for {
		ws.mu.Lock()
		if len(ws.queue) == 0 {
			ws.active--
			if cap(ws.queue) > 1024 {
				ws.queue = nil // a burst's
			}
			ws.mu.Unlock()
			return
		}
		n := max(1, len(ws.queue)/ws.active)
		batch = append(batch[:0], ws.queue[:n]...)
		rest := copy(ws.queue, ws.queue[n:])
		clear(ws.queue[rest:])
		ws.queue = ws.queue[:rest]
		ws.mu.Unlock()
		for i, c := range batch {
			batch[i] = nil
			c.flush()
		}
		if cap(batch) > 1024 {
			batch = nil
		}
	}
}
