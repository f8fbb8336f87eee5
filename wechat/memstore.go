package wechat

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// NewMemoryStore returns a Store kept in the process: the state of one
// node, lost when it stops. Several Services may share one (tests of
// several nodes do). Expiry and claim idle times run on the system clock,
// as Redis's do.
func NewMemoryStore() Store {
	return &memStore{kv: map[string]memValue{}, quotas: map[QuotaKey]Quota{}, queues: map[string]*memQueue{}}
}

type memValue struct {
	value   string
	expires time.Time
}

type memStore struct {
	mu     sync.Mutex
	kv     map[string]memValue
	writes int
	quotas map[QuotaKey]Quota
	queues map[string]*memQueue
}

func (s *memStore) Get(_ context.Context, key string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.live(key, time.Now())
	if !ok {
		return "", ErrNotFound
	}
	return v.value, nil
}

// live returns key's value if it has not expired; s.mu is held.
func (s *memStore) live(key string, now time.Time) (memValue, bool) {
	v, ok := s.kv[key]
	if ok && !now.Before(v.expires) {
		delete(s.kv, key)
		return memValue{}, false
	}
	return v, ok
}

// put stores a value; every 1024 writes the expired keys are swept, so
// nonces and acknowledgements do not pile up. s.mu is held.
func (s *memStore) put(key, value string, ttl time.Duration, now time.Time) {
	s.kv[key] = memValue{value: value, expires: now.Add(ttl)}
	s.writes++
	if s.writes%1024 == 0 {
		for k, v := range s.kv {
			if !now.Before(v.expires) {
				delete(s.kv, k)
			}
		}
	}
}

func (s *memStore) Set(_ context.Context, key, value string, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(key, value, ttl, time.Now())
	return nil
}

func (s *memStore) SetNX(_ context.Context, key, value string, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if _, ok := s.live(key, now); ok {
		return false, nil
	}
	s.put(key, value, ttl, now)
	return true, nil
}

func (s *memStore) CompareAndDelete(_ context.Context, key, value string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.live(key, time.Now())
	if !ok || v.value != value {
		return false, nil
	}
	delete(s.kv, key)
	return true, nil
}

func (s *memStore) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.kv, key)
	return nil
}

func (s *memStore) Quota(_ context.Context, k QuotaKey) (Quota, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.quotas[k], nil
}

func (s *memStore) UpdateQuota(_ context.Context, k QuotaKey, op QuotaOp, at time.Time) (Quota, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.quotas[k]
	switch op {
	case QuotaAccept:
		q.Accepted = true
		q.Count++
	case QuotaReject:
		q.Accepted = false
		q.Count = 0
	case QuotaUse:
		if !q.Known {
			return q, nil
		}
		if q.Count > 0 {
			q.Count--
		}
	}
	q.Known = true
	q.UpdatedAt = at
	s.quotas[k] = q
	return q, nil
}

func (s *memStore) Queue(app string) Queue {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[app]
	if q == nil {
		q = &memQueue{records: map[string]*memRecord{}, delayed: map[string]time.Time{},
			pending: map[string]*memPending{}, signal: make(chan struct{})}
		s.queues[app] = q
	}
	return q
}

// ---- queue ----

type memRecord struct {
	job      Job
	out      Outcome
	inFlight bool
	retries  int
	expires  time.Time
}

type memPending struct {
	ref      string
	consumer string
	since    time.Time
}

type memEntry struct {
	id, ref string
}

// memQueue mirrors the Redis queue: records, a delayed set, a stream of
// entries not yet delivered, and the deliveries held by consumers.
type memQueue struct {
	mu      sync.Mutex
	records map[string]*memRecord
	delayed map[string]time.Time
	stream  []memEntry
	pending map[string]*memPending
	seq     uint64
	// signal is closed (and replaced) when an entry is added to stream.
	signal chan struct{}
}

// record returns ref's live record; q.mu is held.
func (q *memQueue) record(ref string) *memRecord {
	r := q.records[ref]
	if r != nil && !time.Now().Before(r.expires) {
		delete(q.records, ref)
		return nil
	}
	return r
}

// add appends an entry for ref to the stream; q.mu is held.
func (q *memQueue) add(ref string) {
	q.seq++
	q.stream = append(q.stream, memEntry{id: strconv.FormatUint(q.seq, 10), ref: ref})
	close(q.signal)
	q.signal = make(chan struct{})
}

// ack removes a delivery; q.mu is held.
func (q *memQueue) ack(id string) { delete(q.pending, id) }

func (q *memQueue) Put(_ context.Context, job *Job, reason string, due, now time.Time, ttl time.Duration) (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ref := job.ref()
	if q.record(ref) != nil {
		return false, nil
	}
	q.records[ref] = &memRecord{job: *job, out: Outcome{Status: StatusPending, Reason: reason, UpdatedAt: now},
		expires: time.Now().Add(ttl)}
	if due.After(now) {
		q.delayed[ref] = due
	} else {
		q.add(ref)
	}
	return true, nil
}

func (q *memQueue) Take(ctx context.Context, consumer string, n int, now time.Time, claimIdle, wait time.Duration) ([]Delivery, error) {
	var timer *time.Timer
	for {
		q.mu.Lock()
		for ref, due := range q.delayed {
			if !due.After(now) {
				delete(q.delayed, ref)
				q.add(ref)
			}
		}
		var out []Delivery
		real := time.Now()
		for id, p := range q.pending {
			if len(out) == n {
				break
			}
			if real.Sub(p.since) >= claimIdle {
				p.consumer, p.since = consumer, real
				out = q.deliver(out, id, p.ref)
			}
		}
		for len(out) < n && len(q.stream) > 0 {
			e := q.stream[0]
			q.stream = q.stream[1:]
			q.pending[e.id] = &memPending{ref: e.ref, consumer: consumer, since: real}
			out = q.deliver(out, e.id, e.ref)
		}
		signal := q.signal
		q.mu.Unlock()
		if len(out) > 0 || wait <= 0 {
			return out, nil
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			wait = 0
		case <-signal:
		}
	}
}

// deliver appends the delivery of entry id, or drops the entry when its
// record has expired; q.mu is held.
func (q *memQueue) deliver(out []Delivery, id, ref string) []Delivery {
	r := q.record(ref)
	if r == nil {
		q.ack(id)
		return out
	}
	return append(out, Delivery{ID: id, Job: r.job, Outcome: r.out, InFlight: r.inFlight, Retries: r.retries})
}

func (q *memQueue) Begin(_ context.Context, d *Delivery, now time.Time, atLeastOnce bool) (BeginResult, Outcome, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.record(d.Job.ref())
	switch {
	case r == nil:
		return BeginDone, Outcome{}, ErrNotFound
	case r.out.Status.Final():
		return BeginDone, r.out, nil
	case r.inFlight && !atLeastOnce:
		r.inFlight = false
		r.out.Status, r.out.Reason, r.out.UpdatedAt = StatusUnknown, ReasonInterrupted, now
		return BeginUnknown, r.out, nil
	}
	r.inFlight = true
	r.out.Attempts++
	r.out.UpdatedAt = now
	return BeginSend, r.out, nil
}

func (q *memQueue) Finish(_ context.Context, d *Delivery, o Outcome, answered bool, ttl time.Duration) (Outcome, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ack(d.ID)
	r := q.record(d.Job.ref())
	if r == nil {
		return Outcome{}, ErrNotFound
	}
	if r.out.Status == StatusPending || answered && r.out.Status == StatusUnknown {
		attempts := r.out.Attempts
		r.out = o
		r.out.Attempts = attempts
		r.inFlight = false
		r.expires = time.Now().Add(ttl)
	}
	return r.out, nil
}

func (q *memQueue) Retry(_ context.Context, d *Delivery, o Outcome, began bool, due time.Time, ttl time.Duration) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ack(d.ID)
	ref := d.Job.ref()
	r := q.record(ref)
	if r == nil || r.out.Status != StatusPending {
		return nil
	}
	r.out.Reason, r.out.Errcode, r.out.Errmsg, r.out.UpdatedAt = o.Reason, o.Errcode, o.Errmsg, o.UpdatedAt
	r.retries++
	if began {
		r.inFlight = false
	}
	r.expires = time.Now().Add(ttl)
	q.delayed[ref] = due
	return nil
}

func (q *memQueue) Get(_ context.Context, channel, messageID string) (Outcome, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.record(notificationRef(channel, messageID))
	if r == nil {
		return Outcome{}, ErrNotFound
	}
	return r.out, nil
}
