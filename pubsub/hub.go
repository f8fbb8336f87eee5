package pubsub

import (
	"context"
	"sync"
	"time"
)

// hub is a node's local fan-out: it holds the subscriptions of each watched
// channel and hands every dispatched message to them. It keeps each
// channel's stream contiguous at node level: when a dispatched message skips
// offsets (a lost notification) or after the store says notifications may have
// been lost (resync), it reads the missing messages from the store once for
// all local subscribers, so a gap never costs one store read per client.
//
// The store calls dispatch and resync for one channel from one goroutine at a
// time, in offset order.
type hub struct {
	st      store
	gapless bool // the store dispatches every message, in order

	mu    sync.Mutex
	chans map[string]*hubChan
}

type hubChan struct {
	name  string
	refs  int // guarded by hub.mu
	ready chan struct{}
	err   error // set before ready is closed
	// gone is closed once the channel is unwatched after its last
	// subscriber left; a register that finds the entry closing waits for it,
	// so watch and unwatch of one channel never overtake each other.
	gone    chan struct{}
	closing bool // guarded by hub.mu
	watched bool // the store watches it; set before ready is closed

	mu    sync.Mutex
	subs  map[*Subscription]*subChan
	last  Position // last position dispatched
	known bool
}

func newHub() *hub { return &hub{chans: make(map[string]*hubChan)} }

// fillBatch is how many messages one gap-filling read asks for.
const fillBatch = 500

// fillTimeout bounds a gap-filling read; on failure the subscriptions detect
// the gap themselves and catch up from the store with retries.
const fillTimeout = 5 * time.Second

// register adds sc of s to channel, watching it in the store first if it is
// new on this node. It returns once live delivery to s is in place.
func (h *hub) register(ctx context.Context, s *Subscription, sc *subChan) error {
	h.mu.Lock()
	hc := h.chans[sc.name]
	for hc != nil && hc.closing {
		h.mu.Unlock()
		select {
		case <-hc.gone:
		case <-ctx.Done():
			return ctx.Err()
		}
		h.mu.Lock()
		hc = h.chans[sc.name]
	}
	created := hc == nil
	if created {
		hc = &hubChan{name: sc.name, ready: make(chan struct{}), gone: make(chan struct{}), subs: make(map[*Subscription]*subChan)}
		h.chans[sc.name] = hc
	}
	hc.refs++
	h.mu.Unlock()

	if created {
		err := h.st.watch(ctx, sc.name)
		hc.watched = err == nil
		if err == nil {
			// A baseline lets a later resync find what was missed even if
			// no message arrived before the notifications broke.
			var st ChannelState
			if st, err = h.st.state(ctx, sc.name); err == nil {
				hc.mu.Lock()
				if !hc.known {
					hc.last, hc.known = st.Position(), true
				}
				hc.mu.Unlock()
			}
		}
		hc.err = err
		close(hc.ready)
	} else {
		select {
		case <-hc.ready:
		case <-ctx.Done():
			h.release(hc)
			return ctx.Err()
		}
	}
	if hc.err != nil {
		h.release(hc)
		return hc.err
	}
	hc.mu.Lock()
	hc.subs[s] = sc
	hc.mu.Unlock()
	return nil
}

func (h *hub) unregister(s *Subscription, channel string) {
	h.mu.Lock()
	hc := h.chans[channel]
	h.mu.Unlock()
	if hc == nil {
		return
	}
	hc.mu.Lock()
	_, ok := hc.subs[s]
	delete(hc.subs, s)
	hc.mu.Unlock()
	if ok {
		h.release(hc)
	}
}

func (h *hub) release(hc *hubChan) {
	h.mu.Lock()
	hc.refs--
	if hc.refs > 0 || hc.closing {
		h.mu.Unlock()
		return
	}
	hc.closing = true
	h.mu.Unlock()
	// Outside the hub lock: the store may take its own locks, which it
	// also holds while dispatching.
	if hc.watched {
		h.st.unwatch(hc.name)
	}
	h.mu.Lock()
	if h.chans[hc.name] == hc {
		delete(h.chans, hc.name)
	}
	close(hc.gone)
	h.mu.Unlock()
}

func (h *hub) lookup(channel string) *hubChan {
	h.mu.Lock()
	hc := h.chans[channel]
	h.mu.Unlock()
	return hc
}

// dispatch hands m to the local subscribers of its channel, first filling
// any gap between the last dispatched message and m from the store.
func (h *hub) dispatch(m *Message) {
	hc := h.lookup(m.Channel)
	if hc == nil {
		return
	}
	hc.mu.Lock()
	from, gap := hc.gapBefore(m)
	hc.mu.Unlock()
	if gap && !h.gapless {
		h.fill(hc, from, m.Offset-1)
	}
	hc.mu.Lock()
	hc.deliverLocked(m)
	hc.mu.Unlock()
}

// resync fills, from the store, whatever the channel received after the last
// dispatched message: the store calls it when notifications may have been
// lost (a reconnect).
func (h *hub) resync(channel string) {
	hc := h.lookup(channel)
	if hc == nil {
		return
	}
	hc.mu.Lock()
	from, known := hc.last, hc.known
	hc.mu.Unlock()
	if !known {
		from = Position{}
	}
	h.fill(hc, from, 0)
}

// gapBefore reports whether messages before m are missing, and the position
// to read from.
func (hc *hubChan) gapBefore(m *Message) (Position, bool) {
	if !hc.known {
		return Position{}, false
	}
	if hc.last.Epoch != m.Epoch {
		// A new epoch: everything retained before m in it is missing.
		return Position{Epoch: m.Epoch}, m.Offset > 1
	}
	return hc.last, m.Offset > hc.last.Offset+1
}

// fill reads messages after from up to offset upto (0: up to the top) and
// dispatches them.
func (h *hub) fill(hc *hubChan, from Position, upto uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), fillTimeout)
	defer cancel()
	switched := false
	for {
		st, msgs, err := h.st.readAfter(ctx, hc.name, from.Offset, fillBatch, 0)
		if err == nil && upto == 0 && !switched && from.Epoch != "" && st.Epoch != "" && st.Epoch != from.Epoch {
			// A resync finds a new epoch (history lost while notifications
			// were): its messages, from the start, make each subscription
			// reset, as a notification would have.
			switched, from = true, Position{Epoch: st.Epoch}
			continue
		}
		if err != nil || (from.Epoch != "" && st.Epoch != from.Epoch) {
			// Subscriptions notice the gap themselves and catch up.
			return
		}
		for i := range msgs {
			m := &msgs[i]
			if upto != 0 && m.Offset > upto {
				return
			}
			hc.mu.Lock()
			hc.deliverLocked(m)
			hc.mu.Unlock()
			from = m.Position()
		}
		if len(msgs) < fillBatch {
			return
		}
	}
}

// deliverLocked records m as dispatched and offers it to every subscriber,
// dropping what was already dispatched.
func (hc *hubChan) deliverLocked(m *Message) {
	if hc.known && hc.last.Epoch == m.Epoch && m.Offset <= hc.last.Offset {
		return
	}
	hc.last, hc.known = m.Position(), true
	if len(hc.subs) == 0 {
		return
	}
	solo := soloCursor(m.Channel, m.Position())
	for s, sc := range hc.subs {
		s.offer(sc, item{msg: m, solo: solo})
	}
}
