package pubsub

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// NewMemory returns the embedded Broker: one process, history in memory,
// bounded per channel by count and age. A channel that has retained nothing,
// has no subscriber and no remembered idempotency key for its retention
// age is forgotten; publishing to it again starts a new epoch.
func NewMemory(opts Options) Broker {
	opts = opts.withDefaults()
	m := &memStore{opts: opts, chans: make(map[string]*memChan), stop: make(chan struct{})}
	m.hub = newHub()
	m.hub.st = m
	// Dispatch happens under the channel lock in offset order: there are no
	// gaps to fill (and filling would re-enter the lock).
	m.hub.gapless = true
	go m.janitor(time.Minute)
	return newBroker(opts, m, m.hub)
}

type memStore struct {
	opts Options
	hub  *hub

	mu    sync.RWMutex
	chans map[string]*memChan
	stop  chan struct{}
	once  sync.Once
}

type memChan struct {
	mu       sync.Mutex
	epoch    string
	top      uint64
	msgs     []*Message // retained, oldest first
	idem     map[string]idemEntry
	watchers int
	lastUse  time.Time
	dead     bool // forgotten by the janitor; look the channel up again
}

type idemEntry struct {
	msg     *Message
	expires time.Time
}

// newEpoch returns a fresh epoch id: the time (seconds and microseconds) in
// hex, the same form the Redis script uses.
// Two epochs of one channel never collide because a channel is forgotten
// only after its retention age.
func newEpoch(now time.Time) string {
	return fmt.Sprintf("%x%05x", now.Unix(), now.Nanosecond()/1000)
}

// locked returns the channel locked, created when create is set; nil when it
// does not exist and create is not set.
func (m *memStore) locked(name string, create bool) *memChan {
	for {
		c := m.channel(name, create)
		if c == nil {
			return nil
		}
		c.mu.Lock()
		if !c.dead {
			return c
		}
		c.mu.Unlock()
	}
}

func (m *memStore) channel(name string, create bool) *memChan {
	m.mu.RLock()
	c := m.chans[name]
	m.mu.RUnlock()
	if c != nil || !create {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c = m.chans[name]; c == nil {
		c = &memChan{}
		m.chans[name] = c
	}
	return c
}

func (m *memStore) append(_ context.Context, req PublishRequest) (PublishResult, error) {
	select {
	case <-m.stop:
		return PublishResult{}, ErrClosed
	default:
	}
	c := m.locked(req.Channel, true)
	defer c.mu.Unlock()
	now := time.Now()
	c.lastUse = now
	if req.IdempotencyKey != "" {
		if e, ok := c.idem[req.IdempotencyKey]; ok && now.Before(e.expires) {
			return PublishResult{Message: *e.msg, Duplicate: true}, nil
		}
	}
	if c.epoch == "" {
		c.epoch = newEpoch(now)
	}
	c.top++
	msg := &Message{
		Channel: req.Channel,
		Epoch:   c.epoch,
		Offset:  c.top,
		Event:   req.Event,
		Tag:     req.Tag,
		Data:    req.Data,
		Time:    time.UnixMilli(now.UnixMilli()),
	}
	c.msgs = append(c.msgs, msg)
	size, ttl := m.opts.retention(req.Channel)
	c.trim(size, now.Add(-ttl))
	if req.IdempotencyKey != "" {
		if c.idem == nil {
			c.idem = make(map[string]idemEntry)
		}
		c.idem[req.IdempotencyKey] = idemEntry{msg: msg, expires: now.Add(m.opts.IdempotencyWindow)}
	}
	// Under the channel lock: dispatch order is offset order.
	m.hub.dispatch(msg)
	return PublishResult{Message: *msg}, nil
}

// trim drops messages beyond size or older than cutoff.
func (c *memChan) trim(size int, cutoff time.Time) {
	drop := 0
	if len(c.msgs) > size {
		drop = len(c.msgs) - size
	}
	for drop < len(c.msgs) && c.msgs[drop].Time.Before(cutoff) {
		drop++
	}
	if drop > 0 {
		clear(c.msgs[:drop])
		c.msgs = c.msgs[drop:]
		// Let the backing array shrink once it is mostly unused.
		if cap(c.msgs) > 64 && len(c.msgs) < cap(c.msgs)/4 {
			c.msgs = append([]*Message(nil), c.msgs...)
		}
	}
}

// stateLocked trims by age and describes the channel.
func (m *memStore) stateLocked(name string, c *memChan) ChannelState {
	st := ChannelState{Channel: name}
	if c == nil {
		st.First = 1
		return st
	}
	size, ttl := m.opts.retention(name)
	c.trim(size, time.Now().Add(-ttl))
	st.Epoch, st.Top = c.epoch, c.top
	st.First = c.top + 1
	if n := len(c.msgs); n > 0 {
		st.First = c.msgs[0].Offset
		st.Retained = n
		st.LastTime = c.msgs[n-1].Time
	}
	return st
}

func (m *memStore) readAfter(_ context.Context, name string, after uint64, limit, _ int) (ChannelState, []Message, error) {
	c := m.locked(name, false)
	if c == nil {
		return m.stateLocked(name, nil), nil, nil
	}
	defer c.mu.Unlock()
	st := m.stateLocked(name, c)
	// after comes from a client's cursor and may be anything up to 2^64-1:
	// compared, never added to, so that it cannot wrap. Nothing follows
	// the top; before the oldest retained message, reading starts there.
	if after >= st.Top || len(c.msgs) == 0 {
		return st, nil, nil
	}
	i := 0 // index of offset after+1
	if after >= st.First {
		i = int(after - st.First + 1)
	}
	j := i + min(limit, len(c.msgs)-i)
	return st, copyMessages(c.msgs[i:j]), nil
}

func (m *memStore) readBefore(_ context.Context, name string, before uint64, limit, _ int) (ChannelState, []Message, error) {
	c := m.locked(name, false)
	if c == nil {
		return m.stateLocked(name, nil), nil, nil
	}
	defer c.mu.Unlock()
	st := m.stateLocked(name, c)
	// before comes from a client's cursor: compared, never added to.
	if before == 0 || before > st.Top {
		before = st.Top + 1
	}
	if before <= st.First {
		return st, nil, nil
	}
	j := int(before - st.First) // index of offset before
	i := j - min(limit, j)
	return st, copyMessages(c.msgs[i:j]), nil
}

func copyMessages(ms []*Message) []Message {
	out := make([]Message, len(ms))
	for i, m := range ms {
		out[i] = *m
	}
	return out
}

func (m *memStore) state(_ context.Context, name string) (ChannelState, error) {
	c := m.locked(name, false)
	if c == nil {
		return m.stateLocked(name, nil), nil
	}
	defer c.mu.Unlock()
	return m.stateLocked(name, c), nil
}

func (m *memStore) watch(_ context.Context, name string) error {
	c := m.locked(name, true)
	c.watchers++
	c.mu.Unlock()
	return nil
}

func (m *memStore) unwatch(name string) {
	c := m.locked(name, false)
	if c == nil {
		return
	}
	c.watchers--
	c.lastUse = time.Now()
	c.mu.Unlock()
}

func (m *memStore) ping(context.Context) error {
	select {
	case <-m.stop:
		return ErrClosed
	default:
		return nil
	}
}

func (m *memStore) close() error {
	m.once.Do(func() { close(m.stop) })
	return nil
}

// janitor forgets channels that hold nothing any more.
func (m *memStore) janitor(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case now := <-t.C:
			m.sweep(now)
		}
	}
}

func (m *memStore) sweep(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, c := range m.chans {
		c.mu.Lock()
		size, ttl := m.opts.retention(name)
		c.trim(size, now.Add(-ttl))
		for k, e := range c.idem {
			if !now.Before(e.expires) {
				delete(c.idem, k)
			}
		}
		if len(c.msgs) == 0 && len(c.idem) == 0 && c.watchers == 0 && now.Sub(c.lastUse) > ttl {
			delete(m.chans, name)
			c.dead = true
		}
		c.mu.Unlock()
	}
}
