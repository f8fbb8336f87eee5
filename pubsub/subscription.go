package pubsub

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Subscription delivers the events of one Subscribe call. Next must not be
// called concurrently; Close may be called from any goroutine.
//
// Inside, each channel is either live (the hub's fan-out hands its messages
// straight to the queue, without blocking) or catching up (one goroutine of
// the subscription reads the store, with blocking sends to the queue, while
// live messages wait in a small bounded buffer). A channel falls back to
// catching up when the queue is full, when a message skips offsets or changes
// epoch, so the fan-out never waits for a consumer and a slow consumer is
// served from the store instead of being fed from unbounded memory.
type Subscription struct {
	b      *broker
	queue  eventQueue
	done   chan struct{}
	stopFn func() bool // stops the context.AfterFunc

	mu       sync.Mutex
	chans    map[string]*subChan
	catching bool
	err      error
	// resuming: the cursor named a channel and the first catch-up has not
	// ended (Observer.Resumed); resumeReset: it queued a Reset meanwhile.
	resuming    bool
	resumeReset bool

	// notify, when set, is called after an event is queued (SetNotify).
	notify atomic.Pointer[func()]
	// ended is set, under mu, as done is closed: a notified consumer checks
	// it on every notification, which an atomic next to notify makes
	// cheaper than a look at the channel.
	ended atomic.Bool

	// Consumer side, owned by Next.
	cursor Cursor
}

type subChan struct {
	name     string
	pos      Position // producer side: last position queued
	live     bool
	dirty    bool // waiting for the catch-up goroutine
	buf      []*Message
	overflow bool
}

type item struct {
	msg   *Message
	reset *Reset
	solo  *Cursor // if known, the cursor of msg's channel alone at msg
}

// maxPending bounds the live messages a catching-up channel buffers; past
// it the buffer is dropped and the store is read again instead.
const maxPending = 256

// storeReadBatch is how many messages one catch-up read asks for.
const storeReadBatch = 500

// storeReadBytes bounds the data one catch-up read takes from a store that
// copies it (Redis): 500 messages of 64 KiB would be 32 MiB per read.
const storeReadBytes = 1 << 20

func (b *broker) Subscribe(ctx context.Context, channels []string, cursor Cursor) (*Subscription, error) {
	if err := ValidateChannels(channels); err != nil {
		return nil, err
	}
	s := &Subscription{
		b:     b,
		queue: newEventQueue(b.opts.QueueSize),
		done:  make(chan struct{}),
		chans: make(map[string]*subChan, len(channels)),
	}
	if !b.track(s) {
		return nil, ErrClosed
	}
	for _, ch := range channels {
		s.chans[ch] = &subChan{name: ch}
	}
	start := make(map[string]Position, len(channels))
	registered := make([]string, 0, len(channels))
	fail := func(err error) (*Subscription, error) {
		for _, ch := range registered {
			b.hub.unregister(s, ch)
		}
		b.untrack(s)
		b.storeError(opSubscribe, err)
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
			errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for _, ch := range channels {
		if err := b.hub.register(ctx, s, s.chans[ch]); err != nil {
			return fail(err)
		}
		registered = append(registered, ch)
	}
	// Channels registered first, then positions read: whatever is appended
	// after the read reaches the buffers, whatever before is in the store.
	resuming := false
	for _, ch := range channels {
		p, ok := cursor.Position(ch)
		resuming = resuming || ok
		if !ok {
			st, err := b.st.state(ctx, ch)
			if err != nil {
				return fail(err)
			}
			p = st.Position()
		}
		start[ch] = p
	}
	s.cursor = NewCursor(start)
	s.mu.Lock()
	s.resuming = resuming
	for ch, sc := range s.chans {
		sc.pos = start[ch]
		s.scheduleLocked(sc)
	}
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { s.end(ctx.Err()) })
	s.mu.Lock()
	s.stopFn = stop
	s.mu.Unlock()
	return s, nil
}

// Cursor returns the cursor after the last event Next returned (at first,
// the subscription's start positions).
func (s *Subscription) Cursor() Cursor { return s.cursor }

// Next returns the next event. It returns an error once the subscription has
// ended (ErrClosed after Close or broker close, the context's error when the
// subscription's context ended) or when ctx is done.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	ev, _, err := s.NextUntil(ctx, nil)
	return ev, err
}

// TryNext returns the next event if one is queued, without waiting.
func (s *Subscription) TryNext() (Event, bool) {
	if it, ok := s.queue.pop(); ok {
		return s.event(it), true
	}
	return Event{}, false
}

// NextUntil is Next that also gives up, with ok false and no error, when
// stop fires first: transports use it to interleave heartbeats.
func (s *Subscription) NextUntil(ctx context.Context, stop <-chan time.Time) (ev Event, ok bool, err error) {
	for {
		if it, ok := s.queue.take(true); ok {
			return s.event(it), true, nil
		}
		var stopped, done bool
		select { // counted among the queue's readers (take)
		case <-s.queue.ready:
		case <-stop: // nil: never
			stopped = true
		case <-s.done:
			done = true
		case <-ctx.Done():
			err = ctx.Err()
		}
		s.queue.waited(&s.queue.readers)
		switch {
		case stopped:
			return Event{}, false, nil
		case done:
			if ev, ok := s.TryNext(); ok {
				return ev, true, nil
			}
			return Event{}, false, s.Err()
		case err != nil:
			return Event{}, false, err
		}
	}
}

// CatchingUp reports whether the subscription is still reading the store
// for some channel: events may be on their way although none is queued.
// Right after Subscribe it is true until the start positions are caught up.
// A catch-up queues everything it read before it reports done, so a
// consumer that found the queue empty calls CatchingUp first and then looks
// again (TryNext) before it concludes that nothing is pending.
func (s *Subscription) CatchingUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.catching
}

// SetNotify makes the subscription call f each time it has queued an event,
// on the goroutine that queued it: the broker's fan-out for live messages
// (so f runs while the fan-out of that channel waits), the subscription's
// catch-up for stored ones, and once more when the subscription ends (Err
// then says why). f must return quickly and must not call
// Subscribe, Close or Next; it typically takes what is queued with TryNext
// and writes it without blocking. Events queued before SetNotify do not
// notify: the caller drains once after it. Transports use it to write from
// the fan-out directly instead of waking a goroutine per event.
func (s *Subscription) SetNotify(f func()) { s.notify.Store(&f) }

func (s *Subscription) notified() {
	if f := s.notify.Load(); f != nil {
		(*f)()
	}
}

// Pending reports how many events are queued for Next.
func (s *Subscription) Pending() int { return s.queue.len() }

func (s *Subscription) event(it item) Event {
	if it.msg != nil {
		if it.solo != nil && s.cursor.only(it.msg.Channel) {
			s.cursor = *it.solo // what With would make, encoded already
		} else {
			s.cursor = s.cursor.With(it.msg.Channel, it.msg.Position())
		}
		return Event{Message: it.msg, Cursor: s.cursor}
	}
	s.cursor = s.cursor.With(it.reset.Channel, it.reset.Position)
	return Event{Reset: it.reset, Cursor: s.cursor}
}

// Done is closed when the subscription has ended.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Ended reports whether the subscription has ended (Done is closed).
func (s *Subscription) Ended() bool { return s.ended.Load() }

// Err returns why the subscription ended, or nil while it runs.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the subscription; Next then returns ErrClosed.
func (s *Subscription) Close() { s.end(ErrClosed) }

func (s *Subscription) end(err error) {
	s.mu.Lock()
	if s.ended.Load() {
		s.mu.Unlock()
		return
	}
	s.ended.Store(true)
	s.err = err
	close(s.done)
	stop := s.stopFn
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	for ch := range s.chans {
		s.b.hub.unregister(s, ch)
	}
	s.b.untrack(s)
	s.notified() // a notified consumer learns of the end too (Err)
}

type verdict int

const (
	vNext verdict = iota
	vDuplicate
	vGap
	vEpoch
)

func classify(p Position, m *Message) verdict {
	if p.Epoch != m.Epoch && p.Epoch != "" {
		return vEpoch
	}
	switch {
	case m.Offset <= p.Offset:
		return vDuplicate
	case m.Offset == p.Offset+1:
		return vNext
	default:
		return vGap
	}
}

// offer is the hub's fan-out path: it never blocks (but for the notify
// function's work).
func (s *Subscription) offer(sc *subChan, it item) {
	if s.offerLocked(sc, it) {
		s.notified()
	}
}

// offerLocked queues m, or schedules a catch-up; it reports whether m was
// queued.
func (s *Subscription) offerLocked(sc *subChan, it item) (queued bool) {
	m := it.msg
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended.Load() {
		return false
	}
	if !sc.live {
		if len(sc.buf) >= maxPending {
			sc.buf, sc.overflow = nil, true
		} else if !sc.overflow {
			sc.buf = append(sc.buf, m)
		}
		return false
	}
	switch classify(sc.pos, m) {
	case vDuplicate:
		return false
	case vNext:
		if s.queue.push(it) {
			sc.pos = m.Position()
			return true
		}
	}
	// The queue is full, or m does not follow: catch up from the store.
	sc.live = false
	sc.buf = append(sc.buf[:0], m)
	s.scheduleLocked(sc)
	return false
}

func (s *Subscription) scheduleLocked(sc *subChan) {
	sc.live = false
	sc.dirty = true
	if !s.catching {
		s.catching = true
		go s.catchUp()
	}
}

// catchUp runs while any channel is catching up. It serves this
// subscription alone: a panic in it (the store's read, a notify function)
// ends this subscription with a *PanicError, never the process.
func (s *Subscription) catchUp() {
	defer func() {
		if v := recover(); v != nil {
			stack := debug.Stack()
			s.b.opts.Panicked("subscription catch-up", v, stack)
			s.mu.Lock()
			s.catching = false
			s.mu.Unlock()
			s.end(&PanicError{Where: "subscription catch-up", Value: v, Stack: stack})
		}
	}()
	for {
		s.mu.Lock()
		var sc *subChan
		for _, c := range s.chans {
			if c.dirty {
				sc = c
				break
			}
		}
		if sc == nil || s.ended.Load() {
			s.catching = false
			resumed := s.resuming && !s.ended.Load()
			s.resuming = false
			withReset := s.resumeReset
			s.mu.Unlock()
			if resumed {
				s.b.opts.Observer.Resumed(withReset)
			}
			return
		}
		sc.dirty = false
		s.mu.Unlock()
		if err := s.catchUpChannel(sc); err != nil {
			s.mu.Lock()
			s.catching = false
			s.mu.Unlock()
			return
		}
	}
}

// catchUpChannel brings sc from its position to live: it reads the store,
// then drains the live buffer, and repeats until the buffer continues the
// stream seamlessly.
func (s *Subscription) catchUpChannel(sc *subChan) error {
	// When the live buffer already continues from the position, the store
	// has nothing the buffer lacks: reading it would cost a round trip and,
	// if retention moved on meanwhile, report a reset for messages the
	// buffer holds.
	s.mu.Lock()
	needRead := sc.overflow || len(sc.buf) == 0 || classify(sc.pos, sc.buf[0]) != vNext
	s.mu.Unlock()
	for {
		if needRead {
			if err := s.readStore(sc); err != nil {
				return err
			}
			needRead = false
		}
		s.mu.Lock()
		buf, over := sc.buf, sc.overflow
		sc.buf, sc.overflow = nil, false
		if over {
			s.mu.Unlock()
			needRead = true
			continue
		}
		if len(buf) == 0 {
			sc.live = true
			s.mu.Unlock()
			return nil
		}
		pos := sc.pos
		s.mu.Unlock()
		for _, m := range buf {
			v := classify(pos, m)
			if v == vDuplicate {
				continue
			}
			if v != vNext {
				needRead = true // the store has it all; reading it keeps order
				break
			}
			if err := s.send(sc, item{msg: m}, m.Position()); err != nil {
				return err
			}
			pos = m.Position()
		}
	}
}

// readStore delivers what the store holds after sc's position, with a Reset
// first when the position cannot be honoured. It retries while the store is
// unavailable, until the subscription ends.
func (s *Subscription) readStore(sc *subChan) error {
	s.mu.Lock()
	pos := sc.pos
	s.mu.Unlock()
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), fillTimeout)
		st, msgs, err := s.b.st.readAfter(ctx, sc.name, pos.Offset, storeReadBatch, storeReadBytes)
		cancel()
		if err != nil {
			s.b.storeError(opCatchUp, err)
			select {
			case <-s.done:
				return ErrClosed
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		if reset := reconcile(sc.name, pos, st); reset != nil {
			if reset.Reason == ResetExpired && s.bufferContinues(sc, pos) {
				// Trimmed in the store, but the live buffer, filled
				// while this read was under way, holds what follows.
				s.mu.Lock()
				sc.pos = pos
				s.mu.Unlock()
				return nil
			}
			if err := s.send(sc, item{reset: reset}, reset.Position); err != nil {
				return err
			}
			s.mu.Lock()
			s.resumeReset = s.resumeReset || s.resuming
			s.mu.Unlock()
			s.b.opts.Observer.Reset(reset.Reason)
			pos = reset.Position
			continue
		}
		if pos.Epoch == "" {
			if st.Epoch == "" {
				return nil
			}
			pos.Epoch = st.Epoch
		}
		for i := range msgs {
			m := &msgs[i]
			if m.Offset != pos.Offset+1 {
				break // trimmed meanwhile: the next read resets
			}
			if err := s.send(sc, item{msg: m}, m.Position()); err != nil {
				return err
			}
			pos = m.Position()
		}
		// Caught up to the top the read saw; a read cut short (by
		// storeReadBytes, or by a trim meanwhile) is followed by another.
		if len(msgs) == 0 || pos.Offset >= st.Top {
			s.mu.Lock()
			sc.pos = pos
			s.mu.Unlock()
			return nil
		}
	}
}

// bufferContinues reports whether sc's live buffer starts right after pos.
func (s *Subscription) bufferContinues(sc *subChan, pos Position) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !sc.overflow && len(sc.buf) > 0 && classify(pos, sc.buf[0]) == vNext
}

// reconcile returns the Reset due when pos cannot be continued in st, or nil.
func reconcile(channel string, pos Position, st ChannelState) *Reset {
	var reason ResetReason
	switch {
	case pos.Epoch == "":
		if st.Epoch == "" || pos.Offset+1 >= st.First {
			return nil
		}
		reason = ResetExpired
	case st.Epoch != pos.Epoch:
		reason = ResetEpochChanged
	case pos.Offset > st.Top:
		reason = ResetUnknownPosition
	case pos.Offset+1 < st.First:
		reason = ResetExpired
	default:
		return nil
	}
	next := Position{Epoch: st.Epoch}
	if st.First > 0 {
		next.Offset = st.First - 1
	}
	return &Reset{Channel: channel, Reason: reason, Position: next}
}

// send queues it for the consumer, waiting for room; it records the
// producer position first so a concurrent reader of sc.pos sees it.
func (s *Subscription) send(sc *subChan, it item, p Position) error {
	s.mu.Lock()
	sc.pos = p
	s.mu.Unlock()
	for !s.queue.put(it, true) {
		closed := false
		select {
		case <-s.queue.space:
		case <-s.done:
			closed = true
		}
		s.queue.waited(&s.queue.writers)
		if closed {
			return ErrClosed
		}
	}
	s.notified()
	return nil
}

// eventQueue is a subscription's bounded FIFO of events for its consumer.
// Its ring grows with what is queued, up to max, and shrinks back once
// drained: an idle subscription holds a few slots, not max.
type eventQueue struct {
	mu   sync.Mutex
	ring []item
	head int
	// n is how many are queued: changed under mu, read without it by len
	// (a transport asks after every event queued).
	n   atomic.Int32
	max int
	// readers and writers count the goroutines that wait on ready and
	// space: a push or pop leaves a token only when one does (a consumer
	// told by notify, the transports' case, waits on neither).
	readers, writers int
	ready            chan struct{} // a token after a push: the consumer looks again
	space            chan struct{} // a token after a pop: a blocked producer looks again
}

// idleQueue is the ring a drained queue keeps.
const idleQueue = 4

func newEventQueue(max int) eventQueue {
	return eventQueue{max: max, ready: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

// push queues it unless the queue is full.
func (q *eventQueue) push(it item) bool { return q.put(it, false) }

// put is push; wait: when the queue is full, the caller is counted among
// the writers, waits on space, then calls waited.
func (q *eventQueue) put(it item, wait bool) bool {
	q.mu.Lock()
	n := int(q.n.Load())
	if n == len(q.ring) {
		if len(q.ring) >= q.max {
			if wait {
				q.writers++
			}
			q.mu.Unlock()
			return false
		}
		ring := make([]item, min(q.max, max(idleQueue, 2*len(q.ring))))
		for i := range n {
			ring[i] = q.ring[(q.head+i)%len(q.ring)]
		}
		q.ring, q.head = ring, 0
	}
	q.ring[(q.head+n)%len(q.ring)] = it
	q.n.Store(int32(n + 1))
	wake := q.readers > 0
	q.mu.Unlock()
	if wake {
		poke(q.ready)
	}
	return true
}

// pop takes the oldest event, if any.
func (q *eventQueue) pop() (item, bool) { return q.take(false) }

// take is pop; wait: when the queue is empty, the caller is counted among
// the readers, waits on ready, then calls waited.
func (q *eventQueue) take(wait bool) (item, bool) {
	q.mu.Lock()
	n := q.n.Load()
	if n == 0 {
		if wait {
			q.readers++
		}
		q.mu.Unlock()
		return item{}, false
	}
	it := q.ring[q.head]
	q.ring[q.head] = item{}
	q.head = (q.head + 1) % len(q.ring)
	q.n.Store(n - 1)
	if n == 1 && len(q.ring) > idleQueue {
		q.ring, q.head = nil, 0 // a burst's
	}
	wake := q.writers > 0
	q.mu.Unlock()
	if wake {
		poke(q.space)
	}
	return it, true
}

// poke leaves a token on ch unless one is there.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// waited ends the wait of a put or take that was counted (count is
// &q.readers or &q.writers).
func (q *eventQueue) waited(count *int) {
	q.mu.Lock()
	*count--
	q.mu.Unlock()
}

func (q *eventQueue) len() int { return int(q.n.Load()) }
