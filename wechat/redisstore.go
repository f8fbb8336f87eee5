package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// NewRedisStore returns a Store in Redis (one server, Sentinel or Cluster:
// whatever client is given), under prefix + "wechat:" (prefix is the
// pubsub store's, "pushgate:" by default).
//
// Keys (P = prefix + "wechat:"):
//
//	P<key>                         the key-value space (tokens, locks, nonces, acks, unionids)
//	P{<app>}:q                     stream: the app's notifications ready to send (consumer group "pushgate")
//	P{<app>}:d                     sorted set: notifications waiting (grace, backoff), by due time
//	P{<app>}:n:<len>:<channel><id> hash: one notification's job, outcome and in-flight mark
//	P{<app>:<openid>}:quota        hash: a user's ledger, three fields per template
//
// An app's queue keys share the hash tag {<app>}, so the Lua scripts that
// move a notification between them are atomic on Cluster too; the price is
// that one app's queue lives on one Cluster node. The ledger is tagged per
// user and spreads over the cluster.
func NewRedisStore(client redis.UniversalClient, prefix string) Store {
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	return &redisStore{c: client, p: prefix + "wechat:", queues: map[string]*redisQueue{}}
}

type redisStore struct {
	c  redis.UniversalClient
	p  string
	mu sync.Mutex
	// queues caches each app's queue (and whether its group exists).
	queues map[string]*redisQueue
}

func (s *redisStore) Get(ctx context.Context, key string) (string, error) {
	v, err := s.c.Get(ctx, s.p+key).Result()
	if errors.Is(err, redis.Nil) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("redis GET: %w", err)
	}
	return v, nil
}

func (s *redisStore) Set(ctx context.Context, key, value string, ttl time.Duration) error {
	if err := s.c.Set(ctx, s.p+key, value, ttl).Err(); err != nil {
		return fmt.Errorf("redis SET: %w", err)
	}
	return nil
}

func (s *redisStore) SetNX(ctx context.Context, key, value string, ttl time.Duration) (bool, error) {
	// SET NX PX: go-redis's SetNX is deprecated in favour of SetArgs.
	res, err := s.c.SetArgs(ctx, s.p+key, value, redis.SetArgs{Mode: "NX", TTL: ttl}).Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("redis SET NX: %w", err)
	}
	return res == "OK", nil
}

var compareAndDelete = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	redis.call('DEL', KEYS[1])
	return 1
end
return 0`)

func (s *redisStore) CompareAndDelete(ctx context.Context, key, value string) (bool, error) {
	n, err := compareAndDelete.Run(ctx, s.c, []string{s.p + key}, value).Int()
	if err != nil {
		return false, fmt.Errorf("redis compare-and-delete: %w", err)
	}
	return n == 1, nil
}

func (s *redisStore) Delete(ctx context.Context, key string) error {
	if err := s.c.Del(ctx, s.p+key).Err(); err != nil {
		return fmt.Errorf("redis DEL: %w", err)
	}
	return nil
}

// ---- ledger ----

// quotaTTL keeps a user's ledger a year after its last change: a one-time
// acceptance does not expire at WeChat, but an idle user's entry should
// not stay forever.
const quotaTTL = 365 * 24 * time.Hour

func (s *redisStore) quotaKey(k QuotaKey) string {
	return s.p + "{" + k.App + ":" + k.OpenID + "}:quota"
}

// updateQuota: KEYS[1] the user's ledger; ARGV template, op, time (ms),
// ttl (ms). Fields per template: c:<t> count, a:<t> accepted (0/1), u:<t>
// last change. Returns {count, accepted, updated} or {} when QuotaUse found
// no entry.
var updateQuota = redis.NewScript(`
local c, a, u = 'c:' .. ARGV[1], 'a:' .. ARGV[1], 'u:' .. ARGV[1]
local op = ARGV[2]
if op == 'use' then
	if redis.call('HEXISTS', KEYS[1], u) == 0 then return {} end
	if tonumber(redis.call('HGET', KEYS[1], c) or '0') > 0 then redis.call('HINCRBY', KEYS[1], c, -1) end
elseif op == 'accept' then
	redis.call('HINCRBY', KEYS[1], c, 1)
	redis.call('HSET', KEYS[1], a, '1')
else
	redis.call('HSET', KEYS[1], c, '0', a, '0')
end
redis.call('HSET', KEYS[1], u, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return redis.call('HMGET', KEYS[1], c, a, u)`)

func (s *redisStore) UpdateQuota(ctx context.Context, k QuotaKey, op QuotaOp, at time.Time) (Quota, error) {
	var name string
	switch op {
	case QuotaAccept:
		name = "accept"
	case QuotaReject:
		name = "reject"
	case QuotaUse:
		name = "use"
	default:
		return Quota{}, fmt.Errorf("wechat: unknown quota op %d", op)
	}
	res, err := updateQuota.Run(ctx, s.c, []string{s.quotaKey(k)}, k.Template, name, at.UnixMilli(),
		quotaTTL.Milliseconds()).Slice()
	if err != nil {
		return Quota{}, fmt.Errorf("redis ledger update: %w", err)
	}
	return parseQuota(res), nil
}

func (s *redisStore) Quota(ctx context.Context, k QuotaKey) (Quota, error) {
	res, err := s.c.HMGet(ctx, s.quotaKey(k), "c:"+k.Template, "a:"+k.Template, "u:"+k.Template).Result()
	if err != nil {
		return Quota{}, fmt.Errorf("redis ledger read: %w", err)
	}
	return parseQuota(res), nil
}

func parseQuota(res []any) Quota {
	if len(res) != 3 || res[2] == nil {
		return Quota{}
	}
	str := func(v any) string { s, _ := v.(string); return s }
	count, _ := strconv.Atoi(str(res[0]))
	ms, _ := strconv.ParseInt(str(res[2]), 10, 64)
	return Quota{Known: true, Accepted: str(res[1]) == "1", Count: count, UpdatedAt: time.UnixMilli(ms).UTC()}
}

// ---- queue ----

// group is the consumer group of every queue stream.
const group = "pushgate"

func (s *redisStore) Queue(app string) Queue {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[app]
	if q == nil {
		base := s.p + "{" + app + "}:"
		q = &redisQueue{c: s.c, base: base, stream: base + "q", delayed: base + "d"}
		s.queues[app] = q
	}
	return q
}

type redisQueue struct {
	c               redis.UniversalClient
	base            string
	stream, delayed string
	mu              sync.Mutex
	grouped         bool
}

func (q *redisQueue) rec(ref string) string { return q.base + "n:" + ref }

// ensureGroup creates the stream and its group once ("0": the entries
// added before it are delivered too).
func (q *redisQueue) ensureGroup(ctx context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.grouped {
		return nil
	}
	err := q.c.XGroupCreateMkStream(ctx, q.stream, group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("redis XGROUP CREATE: %w", err)
	}
	q.grouped = true
	return nil
}

// regroup forgets the group after a NOGROUP error (the stream was deleted,
// say by FLUSHALL), so the next Take creates it again.
func (q *redisQueue) regroup(err error) {
	if err != nil && strings.Contains(err.Error(), "NOGROUP") {
		q.mu.Lock()
		q.grouped = false
		q.mu.Unlock()
	}
}

// Record fields: job, st (status), rs (reason), ec, em, at (attempts), up
// (updated, ms), fl ("1" while an attempt is in flight), rt (retries).

// putScript: KEYS rec, delayed, stream; ARGV job, reason, now, due, ttl,
// ref, immediate.
var putScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'job', ARGV[1], 'st', 'PENDING', 'rs', ARGV[2], 'ec', '0', 'em', '', 'at', '0', 'up', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if ARGV[7] == '1' then
	redis.call('XADD', KEYS[3], '*', 'r', ARGV[6])
else
	redis.call('ZADD', KEYS[2], ARGV[4], ARGV[6])
end
return 1`)

func (q *redisQueue) Put(ctx context.Context, job *Job, reason string, due, now time.Time, ttl time.Duration) (bool, error) {
	b, err := json.Marshal(job)
	if err != nil {
		return false, fmt.Errorf("encode job: %w", err)
	}
	ref := job.ref()
	immediate := "0"
	if !due.After(now) {
		immediate = "1"
	}
	n, err := putScript.Run(ctx, q.c, []string{q.rec(ref), q.delayed, q.stream},
		b, reason, now.UnixMilli(), due.UnixMilli(), ttl.Milliseconds(), ref, immediate).Int()
	if err != nil {
		return false, fmt.Errorf("redis queue put: %w", err)
	}
	return n == 1, nil
}

// moveScript: KEYS delayed, stream; ARGV now, limit. Moves the due refs to
// the stream.
var moveScript = redis.NewScript(`
local refs = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, r in ipairs(refs) do
	redis.call('ZREM', KEYS[1], r)
	redis.call('XADD', KEYS[2], '*', 'r', r)
end
return #refs`)

// moveBatch bounds one move script's work.
const moveBatch = 256

func (q *redisQueue) Take(ctx context.Context, consumer string, n int, now time.Time, claimIdle, wait time.Duration) ([]Delivery, error) {
	if err := q.ensureGroup(ctx); err != nil {
		return nil, err
	}
	if err := moveScript.Run(ctx, q.c, []string{q.delayed, q.stream}, now.UnixMilli(), moveBatch).Err(); err != nil {
		return nil, fmt.Errorf("redis queue move: %w", err)
	}
	var msgs []redis.XMessage
	claimed, _, err := q.c.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: q.stream, Group: group, Consumer: consumer, MinIdle: claimIdle, Start: "0-0", Count: int64(n),
	}).Result()
	if err != nil {
		q.regroup(err)
		return nil, fmt.Errorf("redis XAUTOCLAIM: %w", err)
	}
	msgs = append(msgs, claimed...)
	if len(msgs) < n {
		block := time.Duration(-1) // no BLOCK
		if len(msgs) == 0 && wait > 0 {
			block = wait
		}
		streams, err := q.c.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: group, Consumer: consumer, Streams: []string{q.stream, ">"}, Count: int64(n - len(msgs)), Block: block,
		}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			q.regroup(err)
			return nil, fmt.Errorf("redis XREADGROUP: %w", err)
		}
		for _, st := range streams {
			msgs = append(msgs, st.Messages...)
		}
	}
	out := make([]Delivery, 0, len(msgs))
	for _, m := range msgs {
		ref, _ := m.Values["r"].(string)
		d, ok, err := q.load(ctx, m.ID, ref)
		if err != nil {
			return out, err
		}
		if !ok {
			// The record expired (or the entry is malformed): nothing to
			// send, the entry goes.
			if err := q.drop(ctx, m.ID); err != nil {
				return out, err
			}
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

func (q *redisQueue) drop(ctx context.Context, id string) error {
	_, err := q.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, q.stream, group, id)
		p.XDel(ctx, q.stream, id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis queue drop: %w", err)
	}
	return nil
}

func (q *redisQueue) load(ctx context.Context, id, ref string) (Delivery, bool, error) {
	if ref == "" {
		return Delivery{}, false, nil
	}
	h, err := q.c.HGetAll(ctx, q.rec(ref)).Result()
	if err != nil {
		return Delivery{}, false, fmt.Errorf("redis queue read: %w", err)
	}
	if len(h) == 0 {
		return Delivery{}, false, nil
	}
	rt, _ := strconv.Atoi(h["rt"])
	d := Delivery{ID: id, Outcome: parseOutcome(h), InFlight: h["fl"] == "1", Retries: rt}
	if err := json.Unmarshal([]byte(h["job"]), &d.Job); err != nil {
		return Delivery{}, false, nil
	}
	return d, true, nil
}

func parseOutcome(h map[string]string) Outcome {
	ec, _ := strconv.Atoi(h["ec"])
	at, _ := strconv.Atoi(h["at"])
	up, _ := strconv.ParseInt(h["up"], 10, 64)
	return Outcome{Status: Status(h["st"]), Reason: h["rs"], Errcode: ec, Errmsg: h["em"], Attempts: at,
		UpdatedAt: time.UnixMilli(up).UTC()}
}

// pairs turns an HGETALL reply returned by a script into a map.
func pairs(v any) map[string]string {
	arr, _ := v.([]any)
	h := make(map[string]string, len(arr)/2)
	for i := 0; i+1 < len(arr); i += 2 {
		k, _ := arr[i].(string)
		val, _ := arr[i+1].(string)
		h[k] = val
	}
	return h
}

// beginScript: KEYS rec; ARGV now, atLeastOnce. Returns {verdict, HGETALL}.
var beginScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'st')
if not st then return {'gone', {}} end
if st ~= 'PENDING' then return {'done', redis.call('HGETALL', KEYS[1])} end
if redis.call('HGET', KEYS[1], 'fl') == '1' and ARGV[2] ~= '1' then
	redis.call('HSET', KEYS[1], 'st', 'UNKNOWN', 'rs', 'INTERRUPTED', 'up', ARGV[1])
	redis.call('HDEL', KEYS[1], 'fl')
	return {'unknown', redis.call('HGETALL', KEYS[1])}
end
redis.call('HSET', KEYS[1], 'fl', '1', 'up', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'at', 1)
return {'send', redis.call('HGETALL', KEYS[1])}`)

func (q *redisQueue) Begin(ctx context.Context, d *Delivery, now time.Time, atLeastOnce bool) (BeginResult, Outcome, error) {
	alo := "0"
	if atLeastOnce {
		alo = "1"
	}
	res, err := beginScript.Run(ctx, q.c, []string{q.rec(d.Job.ref())}, now.UnixMilli(), alo).Slice()
	if err != nil || len(res) != 2 {
		return 0, Outcome{}, fmt.Errorf("redis queue begin: %w", err)
	}
	o := parseOutcome(pairs(res[1]))
	switch res[0] {
	case "gone":
		return BeginDone, o, ErrNotFound
	case "done":
		return BeginDone, o, nil
	case "unknown":
		return BeginUnknown, o, nil
	}
	return BeginSend, o, nil
}

// finishScript: KEYS rec, stream; ARGV id, group, st, rs, ec, em, up,
// answered, ttl. Returns HGETALL.
var finishScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'st')
if cur == 'PENDING' or (ARGV[8] == '1' and cur == 'UNKNOWN') then
	redis.call('HSET', KEYS[1], 'st', ARGV[3], 'rs', ARGV[4], 'ec', ARGV[5], 'em', ARGV[6], 'up', ARGV[7])
	redis.call('HDEL', KEYS[1], 'fl')
	redis.call('PEXPIRE', KEYS[1], ARGV[9])
end
if ARGV[1] ~= '' then
	redis.call('XACK', KEYS[2], ARGV[2], ARGV[1])
	redis.call('XDEL', KEYS[2], ARGV[1])
end
return redis.call('HGETALL', KEYS[1])`)

func (q *redisQueue) Finish(ctx context.Context, d *Delivery, o Outcome, answered bool, ttl time.Duration) (Outcome, error) {
	ans := "0"
	if answered {
		ans = "1"
	}
	res, err := finishScript.Run(ctx, q.c, []string{q.rec(d.Job.ref()), q.stream}, d.ID, group,
		string(o.Status), o.Reason, o.Errcode, o.Errmsg, o.UpdatedAt.UnixMilli(), ans, ttl.Milliseconds()).Result()
	if err != nil {
		return Outcome{}, fmt.Errorf("redis queue finish: %w", err)
	}
	h := pairs(res)
	if len(h) == 0 {
		return Outcome{}, ErrNotFound
	}
	return parseOutcome(h), nil
}

// retryScript: KEYS rec, stream, delayed; ARGV id, group, rs, ec, em, up,
// due, ref, ttl, began.
var retryScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'st') == 'PENDING' then
	redis.call('HSET', KEYS[1], 'rs', ARGV[3], 'ec', ARGV[4], 'em', ARGV[5], 'up', ARGV[6])
	redis.call('HINCRBY', KEYS[1], 'rt', 1)
	if ARGV[10] == '1' then redis.call('HDEL', KEYS[1], 'fl') end
	redis.call('PEXPIRE', KEYS[1], ARGV[9])
	redis.call('ZADD', KEYS[3], ARGV[7], ARGV[8])
end
if ARGV[1] ~= '' then
	redis.call('XACK', KEYS[2], ARGV[2], ARGV[1])
	redis.call('XDEL', KEYS[2], ARGV[1])
end
return 1`)

func (q *redisQueue) Retry(ctx context.Context, d *Delivery, o Outcome, began bool, due time.Time, ttl time.Duration) error {
	b := "0"
	if began {
		b = "1"
	}
	ref := d.Job.ref()
	err := retryScript.Run(ctx, q.c, []string{q.rec(ref), q.stream, q.delayed}, d.ID, group,
		o.Reason, o.Errcode, o.Errmsg, o.UpdatedAt.UnixMilli(), due.UnixMilli(), ref, ttl.Milliseconds(), b).Err()
	if err != nil {
		return fmt.Errorf("redis queue retry: %w", err)
	}
	return nil
}

func (q *redisQueue) Get(ctx context.Context, channel, messageID string) (Outcome, error) {
	h, err := q.c.HGetAll(ctx, q.rec(notificationRef(channel, messageID))).Result()
	if err != nil {
		return Outcome{}, fmt.Errorf("redis queue read: %w", err)
	}
	if len(h) == 0 {
		return Outcome{}, ErrNotFound
	}
	return parseOutcome(h), nil
}
