package wechat

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushgate/pushgate/internal/redistest"
)

// TestStore runs the store contract on the memory store, one Redis server
// and a Redis Cluster (every multi-key script stays in one hash slot).
func TestStore(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testStore(t, NewMemoryStore()) })
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		testStore(t, NewRedisStore(srv.Client(t), "pushgate:"))
	})
	t.Run("cluster", func(t *testing.T) {
		if testing.Short() {
			t.Skip("a Redis Cluster takes seconds to form")
		}
		c := redistest.StartCluster(t, 3)
		testStore(t, NewRedisStore(c.Client(t), "pushgate:"))
	})
}

// testStore is the contract both implementations honour.
func testStore(t *testing.T, s Store) {
	ctx := context.Background()
	t.Run("kv", func(t *testing.T) {
		if _, err := s.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of a missing key: %v", err)
		}
		if err := s.Set(ctx, "k", "v", time.Minute); err != nil {
			t.Fatal(err)
		}
		if v, err := s.Get(ctx, "k"); v != "v" || err != nil {
			t.Fatalf("Get = %q, %v", v, err)
		}
		if ok, err := s.SetNX(ctx, "k", "w", time.Minute); ok || err != nil {
			t.Fatalf("SetNX over a key: %v %v", ok, err)
		}
		if ok, err := s.CompareAndDelete(ctx, "k", "w"); ok || err != nil {
			t.Fatalf("CompareAndDelete with another value: %v %v", ok, err)
		}
		if ok, err := s.CompareAndDelete(ctx, "k", "v"); !ok || err != nil {
			t.Fatalf("CompareAndDelete: %v %v", ok, err)
		}
		if ok, err := s.SetNX(ctx, "k", "w", 100*time.Millisecond); !ok || err != nil {
			t.Fatalf("SetNX of a missing key: %v %v", ok, err)
		}
		waitFor(t, 5*time.Second, "the key to expire", func() bool {
			_, err := s.Get(ctx, "k")
			return errors.Is(err, ErrNotFound)
		})
		_ = s.Set(ctx, "k", "v", time.Minute)
		if err := s.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "k"); !errors.Is(err, ErrNotFound) {
			t.Fatal("Delete left the key")
		}
	})
	t.Run("quota", func(t *testing.T) {
		at := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
		k := QuotaKey{App: "wxa", OpenID: "o1", Template: "T1"}
		if q, err := s.Quota(ctx, k); err != nil || q.Known {
			t.Fatalf("a new entry: %+v %v", q, err)
		}
		if q, err := s.UpdateQuota(ctx, k, QuotaUse, at); err != nil || q.Known {
			t.Fatalf("QuotaUse of no entry created one: %+v %v", q, err)
		}
		s.UpdateQuota(ctx, k, QuotaAccept, at)
		q, err := s.UpdateQuota(ctx, k, QuotaAccept, at.Add(time.Second))
		if err != nil || !q.Known || !q.Accepted || q.Count != 2 || !q.UpdatedAt.Equal(at.Add(time.Second)) {
			t.Fatalf("after two accepts: %+v %v", q, err)
		}
		s.UpdateQuota(ctx, k, QuotaUse, at)
		s.UpdateQuota(ctx, k, QuotaUse, at)
		if q, _ := s.UpdateQuota(ctx, k, QuotaUse, at); q.Count != 0 || !q.Accepted {
			t.Fatalf("used past zero: %+v", q)
		}
		s.UpdateQuota(ctx, k, QuotaAccept, at)
		if q, _ := s.UpdateQuota(ctx, k, QuotaReject, at); q.Count != 0 || q.Accepted || !q.Known {
			t.Fatalf("after a reject: %+v", q)
		}
		if q, _ := s.Quota(ctx, QuotaKey{App: "wxa", OpenID: "o1", Template: "T2"}); q.Known {
			t.Fatal("templates share an entry")
		}
	})
	t.Run("queue", func(t *testing.T) { testQueue(t, s.Queue("wxq")) })
}

func testQueue(t *testing.T, q Queue) {
	ctx := context.Background()
	now := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	ttl := time.Hour
	job := func(ch, id string) *Job {
		return &Job{App: "wxq", Channel: ch, MessageID: id, Subject: "o1", TemplateID: "T1",
			Data: []byte(`{"thing1":{"value":"x"}}`), When: WhenOffline, CreatedAt: now}
	}
	take := func(consumer string, at time.Time, idle time.Duration) []Delivery {
		t.Helper()
		ds, err := q.Take(ctx, consumer, 10, at, idle, 0)
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	// Put: once per (channel, message id); the length prefix keeps
	// ("user:a", "12") and ("user:a1", "2") apart.
	for _, j := range []*Job{job("user:a", "12"), job("user:a1", "2")} {
		if ok, err := q.Put(ctx, j, ReasonWaiting, now.Add(10*time.Second), now, ttl); !ok || err != nil {
			t.Fatalf("Put %s/%s: %v %v", j.Channel, j.MessageID, ok, err)
		}
	}
	if ok, _ := q.Put(ctx, job("user:a", "12"), ReasonWaiting, now, now, ttl); ok {
		t.Fatal("a second Put of one notification")
	}
	if o, err := q.Get(ctx, "user:a", "12"); err != nil || o.Status != StatusPending || o.Reason != ReasonWaiting {
		t.Fatalf("Get: %+v %v", o, err)
	}
	if _, err := q.Get(ctx, "user:zz", "1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of none: %v", err)
	}
	// Not due yet: nothing to take; due: both, with their jobs.
	if ds := take("c1", now.Add(9*time.Second), time.Hour); len(ds) != 0 {
		t.Fatalf("took %d before they were due", len(ds))
	}
	ds := take("c1", now.Add(10*time.Second), time.Hour)
	if len(ds) != 2 || ds[0].Job.TemplateID != "T1" || ds[0].Job.CreatedAt.Unix() != now.Unix() || ds[0].InFlight {
		t.Fatalf("took %+v", ds)
	}
	// Held by c1: another consumer gets nothing until the claim idle time.
	if got := take("c2", now.Add(10*time.Second), time.Hour); len(got) != 0 {
		t.Fatalf("c2 took %d held by c1", len(got))
	}
	d := ds[0]
	if d.Job.Channel != "user:a" {
		d = ds[1]
	}
	// Begin: counts the attempt and marks it in flight.
	v, o, err := q.Begin(ctx, &d, now, false)
	if v != BeginSend || err != nil || o.Attempts != 1 {
		t.Fatalf("Begin: %v %+v %v", v, o, err)
	}
	// c1 dies. After the idle time c2 claims both; the one in flight shows.
	waitFor(t, 5*time.Second, "the claim", func() bool {
		ds, _ = q.Take(ctx, "c2", 10, now.Add(10*time.Second), 200*time.Millisecond, 0)
		return len(ds) == 2
	})
	for _, got := range ds {
		if got.InFlight != (got.Job.Channel == "user:a") {
			t.Fatalf("claimed %s in flight = %v", got.Job.Channel, got.InFlight)
		}
		if got.Job.Channel == "user:a" {
			d = got
		}
	}
	// At most once: Begin of the claimed one makes it UNKNOWN...
	if v, o, _ := q.Begin(ctx, &d, now, false); v != BeginUnknown || o.Status != StatusUnknown || o.Reason != ReasonInterrupted {
		t.Fatalf("Begin after an attempt in flight: %v %+v", v, o)
	}
	// ...a guess that the first attempt's own answer still beats.
	if o, err := q.Finish(ctx, &d, Outcome{Status: StatusSent, UpdatedAt: now}, true, ttl); err != nil || o.Status != StatusSent || o.Attempts != 1 {
		t.Fatalf("Finish with an answer over UNKNOWN: %+v %v", o, err)
	}
	// A final record is kept over a later non-answer.
	if o, _ := q.Finish(ctx, &d, Outcome{Status: StatusSkipped, Reason: ReasonOnline}, false, ttl); o.Status != StatusSent {
		t.Fatalf("Finish over a final record: %+v", o)
	}
	if v, _, _ := q.Begin(ctx, &d, now, false); v != BeginDone {
		t.Fatal("Begin of a final record")
	}
	// Retry: the other one fails transiently; due again later, its
	// in-flight mark cleared, the retry counted.
	var e Delivery
	for _, got := range ds {
		if got.Job.Channel == "user:a1" {
			e = got
		}
	}
	if v, _, _ := q.Begin(ctx, &e, now, false); v != BeginSend {
		t.Fatal("Begin")
	}
	err = q.Retry(ctx, &e, Outcome{Reason: ReasonRetrying, Errcode: -1, Errmsg: "system error", UpdatedAt: now}, true, now.Add(time.Minute), ttl)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := q.Get(ctx, "user:a1", "2"); o.Status != StatusPending || o.Reason != ReasonRetrying || o.Errcode != -1 || o.Attempts != 1 {
		t.Fatalf("after Retry: %+v", o)
	}
	if got := take("c3", now.Add(59*time.Second), time.Hour); len(got) != 0 {
		t.Fatal("taken before its retry time")
	}
	got := take("c3", now.Add(time.Minute), time.Hour)
	if len(got) != 1 || got[0].InFlight || got[0].Retries != 1 {
		t.Fatalf("retried: %+v", got)
	}
	// An attempt at-least-once over an in-flight mark goes ahead.
	if v, _, _ := q.Begin(ctx, &got[0], now, false); v != BeginSend {
		t.Fatal("Begin")
	}
	if v, o, _ := q.Begin(ctx, &got[0], now, true); v != BeginSend || o.Attempts != 3 {
		t.Fatalf("Begin at least once: %v %+v", v, o)
	}
	if o, _ := q.Finish(ctx, &got[0], Outcome{Status: StatusFailed, Reason: ReasonBadData, Errcode: 47003, Errmsg: "data.thing1.value invalid", UpdatedAt: now}, true, ttl); o.Status != StatusFailed || o.Errmsg != "data.thing1.value invalid" {
		t.Fatalf("Finish: %+v", o)
	}
	// A Retry of a finished record only drops the delivery.
	_ = q.Retry(ctx, &got[0], Outcome{Reason: ReasonRetrying}, true, now, ttl)
	if ds := take("c4", now.Add(time.Hour), 0); len(ds) != 0 {
		t.Fatalf("left %d deliveries", len(ds))
	}
	// An immediate Put is taken at once; Take waits for one when asked.
	done := make(chan []Delivery)
	go func() {
		ds, _ := q.Take(ctx, "c5", 1, now, time.Hour, 5*time.Second)
		done <- ds
	}()
	if ok, _ := q.Put(ctx, job("user:b", "1"), "", now, now, ttl); !ok {
		t.Fatal("Put")
	}
	if ds := <-done; len(ds) != 1 || ds[0].Job.Channel != "user:b" {
		t.Fatalf("waiting Take: %+v", ds)
	}
}

// TestRedisQueueRegroup: after the stream is deleted (FLUSHALL), the queue
// makes its consumer group again.
func TestRedisQueueRegroup(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	q := NewRedisStore(c, "").Queue("wxq")
	ctx := context.Background()
	now := time.Now()
	if _, err := q.Take(ctx, "c1", 1, now, time.Minute, 0); err != nil {
		t.Fatal(err)
	}
	srv.FlushAll(t)
	if _, err := q.Take(ctx, "c1", 1, now, time.Minute, 0); err == nil {
		t.Fatal("Take after FLUSHALL: no error")
	}
	j := &Job{App: "wxq", Channel: "user:a", MessageID: "1", When: WhenAlways, CreatedAt: now}
	if ok, err := q.Put(ctx, j, "", now, now, time.Hour); !ok || err != nil {
		t.Fatal(ok, err)
	}
	ds, err := q.Take(ctx, "c1", 1, now, time.Minute, 0)
	if err != nil || len(ds) != 1 {
		t.Fatalf("Take after the group was made again: %v %v", ds, err)
	}
}
