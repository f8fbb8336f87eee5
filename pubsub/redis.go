package pubsub

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configure a Redis-backed Broker.
type RedisOptions struct {
	Options
	// Prefix starts every key and PUB/SUB channel name (default
	// "pushgate:"). It must not contain '{' or '}': the channel name in
	// braces is the Redis Cluster hash tag.
	Prefix string
	// Fencing says whether a publish checks that the master it runs on
	// holds the channel's whole history (see Fencing). Every node of a
	// deployment must use the same setting.
	Fencing Fencing
	// WaitReplicas, when positive, makes every publish wait (Redis WAIT) until
	// that many replicas have its write, for at most WaitTimeout (default
	// 100ms). A publish that is not confirmed in time returns ErrUnavailable
	// although the master stored it (and notified subscribers); a retry
	// with the same IdempotencyKey returns the stored message. See
	// docs/redis.md for what this does and does not protect.
	WaitReplicas int
	WaitTimeout  time.Duration
}

// Fencing is how a Redis store keeps one (epoch, offset) pair from naming
// two messages when a master loses writes it acknowledged: a Sentinel or
// Cluster failover to a replica that had not received them yet, or a
// restart that did not replay them (appendfsync everysec, no AOF).
//
// With fencing on, each channel's metadata records the replication ID
// (INFO replication master_replid) of the master that last wrote it, and the
// publish script compares it with the ID of the master running it. Redis
// gives a master a new ID whenever its history may have forked from its
// predecessor's: a replica promoted by a failover, a server restarted. On a
// mismatch the publish starts a new epoch instead of continuing offsets that
// the previous master may already have handed out for other messages: the
// messages this master retains (the newest 1000 at most) are kept in the new
// epoch, renumbered from 1, and the new message follows them. Subscribers
// get an epoch_changed Reset, then the retained messages and the new ones,
// never a silent gap or a message mistaken for one they had.
//
// The price: every failover, restart or slot migration (on a Cluster, the
// moved keys keep the old master's ID) starts a new epoch for each channel it
// touched, at the channel's next publish, even when nothing was lost; the
// script also reads INFO on every publish (a few microseconds of Redis
// CPU). Without fencing epochs survive all of these, and acknowledged writes
// lost by a failover or a crash are silently replaced by new messages at
// the same offsets. WaitReplicas narrows that window without closing it
// (see docs/redis.md).
type Fencing int

const (
	// FencingAuto (the zero value) turns fencing on for a Cluster client
	// (*redis.ClusterClient) and a Sentinel client (redis.NewFailoverClient,
	// or NewUniversalClient with a MasterName), and off for a single server,
	// where a restart with appendfsync always loses nothing.
	FencingAuto Fencing = iota
	// FencingOn fences on every topology (on a single server, every
	// restart starts new epochs).
	FencingOn
	// FencingOff never fences.
	FencingOff
)

// DefaultRedisPrefix is the key prefix when RedisOptions.Prefix is empty.
const DefaultRedisPrefix = "pushgate:"

// defaultWaitTimeout is RedisOptions.WaitTimeout's default.
const defaultWaitTimeout = 100 * time.Millisecond

// NewRedis returns a Broker that keeps history in Redis Streams and fans out
// through Redis PUB/SUB, so that any number of nodes sharing one Redis (a
// single server, Sentinel or Cluster) behave as one broker. The client is
// typically redis.NewUniversalClient(ParseRedisURL(url)).
//
// For a channel C the keys are, all in C's hash slot:
//
//	<prefix>{C}:m        hash: epoch, top (the last offset assigned), r (the
//	                     writing master's replication ID, with fencing)
//	<prefix>{C}:s        stream: entry <offset>-0 with fields t (ms), e (event), d (data)
//	<prefix>{C}:i:<key>  string: "<offset>:<ms>:<epoch>" of an idempotent publish
//
// and live notifications go to the PUB/SUB channel <prefix>{C}, in the same
// slot. A publish is one Lua script: it assigns the offset, appends, trims by
// count and age, refreshes expiry, remembers the idempotency key and
// publishes the notification atomically, so every node sees one order. The
// meta hash and the stream expire one minute after the retention age of
// their newest message; a publish after that starts a new epoch.
//
// Fan-out: on a single server or Sentinel, notifications use PUBLISH and
// SUBSCRIBE (Redis 6.2 suffices) and each node holds one PUB/SUB connection
// for all its channels; with Sentinel the node checks the master's
// replication ID every second and moves that connection to a new master at
// once (after a switchover the old master keeps its clients for seconds,
// while it no longer receives notifications). On a Cluster they use sharded PUB/SUB (SPUBLISH and
// SSUBSCRIBE, Redis 7.0): a notification stays on the shard that owns the
// channel's slot, and each node holds one PUB/SUB connection per master that
// serves one of its channels, so no shard depends on another for fan-out.
// Channels follow their slot: a MOVED reply, a slot migration (the server
// unsubscribes the channel) or a lost connection re-resolves the channel's
// master and subscribes it there. Whenever a channel's notifications may have
// been lost (its connection broke, it moved, a notification skips offsets),
// the node reads the missing messages from the stream once for all its
// subscribers.
//
// Publish outcome: the script is never retried by the client after it may
// have been sent (go-redis retries it only when the error proves it did not
// run: a refused connection, LOADING, READONLY, MASTERDOWN, CLUSTERDOWN,
// TRYAGAIN). So a connection lost while the script was in flight yields
// ErrUnavailable although the message may have been stored: the caller
// reports it as not sent, and a retry with the same IdempotencyKey either
// stores it or returns the stored original, never a second copy.
//
// The caller owns client: Close does not close it.
func NewRedis(ctx context.Context, client redis.UniversalClient, opts RedisOptions) (Broker, error) {
	if client == nil {
		return nil, errors.New("pubsub: NewRedis: nil client")
	}
	prefix := opts.Prefix
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("pubsub: NewRedis: prefix %q must not contain '{' or '}'", prefix)
	}
	if opts.WaitReplicas < 0 {
		return nil, fmt.Errorf("pubsub: NewRedis: WaitReplicas %d is negative", opts.WaitReplicas)
	}
	o := opts.Options.withDefaults()
	cluster, _ := client.(*redis.ClusterClient)
	fence := opts.Fencing == FencingOn
	if opts.Fencing == FencingAuto {
		fence = cluster != nil || isFailoverClient(client)
	}
	waitTimeout := opts.WaitTimeout
	if waitTimeout <= 0 {
		waitTimeout = defaultWaitTimeout
	}
	s := &redisStore{
		client:       client,
		cluster:      cluster,
		sharded:      cluster != nil,
		sentinel:     isFailoverClient(client),
		fence:        fence,
		waitReplicas: opts.WaitReplicas,
		waitTimeout:  waitTimeout,
		opts:         o,
		prefix:       prefix,
		watches:      make(map[string]*watchState),
		conns:        make(map[string]*psConn),
		dirty:        make(map[string]struct{}),
		pending:      make(map[string]struct{}),
		kick:         make(chan struct{}, 1),
		stop:         make(chan struct{}),
	}
	s.batch = publishBatcher{client: client, timeout: o.PublishTimeout}
	if err := s.ping(ctx); err != nil {
		return nil, err
	}
	for _, sc := range []*redis.Script{publishScript, readScript} {
		// On a cluster, ScriptLoad loads it on every master; a master that
		// lacks it later (a promoted replica) gets it with EVAL.
		if err := sc.Load(ctx, client).Err(); err != nil {
			return nil, fmt.Errorf("redis script load: %w: %w", ErrUnavailable, err)
		}
	}
	h := newHub()
	h.st = s
	s.hub = h
	s.wg.Add(1)
	go s.control()
	return newBroker(o, s, h), nil
}

// isFailoverClient reports whether c is a Sentinel-backed client: go-redis
// gives those the placeholder address "FailoverClient".
func isFailoverClient(c redis.UniversalClient) bool {
	rc, ok := c.(*redis.Client)
	return ok && rc.Options().Addr == "FailoverClient"
}

// Timings of the PUB/SUB connections.
const (
	// watchTimeout bounds how long watch waits for Redis to confirm a
	// SUBSCRIBE when the caller's context has no earlier deadline.
	watchTimeout = 10 * time.Second
	// resubscribeAfter: a SUBSCRIBE still unconfirmed after this long is
	// sent again, after resolving the channel's master again.
	resubscribeAfter = 2 * time.Second
	// keepAliveAfter: with nothing received for this long, a PUB/SUB
	// connection is pinged, so a broken connection is noticed and
	// idle-killing proxies leave it alone.
	keepAliveAfter = 30 * time.Second
	// pongTimeout: a connection that received nothing this long after a
	// ping is taken for dead (a half-open TCP connection never errors).
	pongTimeout = 10 * time.Second
	// controlTick paces resubscription, reconnection after a failure,
	// keep-alive checks and resync retries.
	controlTick = time.Second
	// commandTimeout bounds one SUBSCRIBE, UNSUBSCRIBE or PING write.
	commandTimeout = 5 * time.Second
	// expiryMargin is how long the meta hash and the stream outlive the
	// retention age of their newest message.
	expiryMargin = time.Minute
	// subscribeBatch bounds the channels of one SUBSCRIBE command.
	subscribeBatch = 256
)

// keepWatchedEvery: the metadata of channels with local subscribers is kept
// from expiring this often, so a quiet channel that is watched keeps its
// epoch (as in the memory store) instead of costing its subscribers a
// needless reset. A variable for tests.
var keepWatchedEvery = 30 * time.Second

type redisStore struct {
	client       redis.UniversalClient
	cluster      *redis.ClusterClient // nil unless a Cluster
	sharded      bool                 // SPUBLISH and SSUBSCRIBE (Cluster)
	sentinel     bool                 // a Sentinel client: watch for a new master
	masterID     string               // control loop only: the master's replication ID
	fence        bool
	waitReplicas int
	waitTimeout  time.Duration
	opts         Options
	prefix       string
	hub          *hub
	batch        publishBatcher // the publish scripts without WaitReplicas

	mu      sync.Mutex
	watches map[string]*watchState // by PUB/SUB channel name
	conns   map[string]*psConn     // by master address ("" off Cluster)
	dirty   map[string]struct{}    // watches the control loop must reconcile
	pending map[string]struct{}    // channels whose resync could not read Redis
	closed  bool

	anyPending atomic.Bool // len(pending) > 0, read without the lock
	retrying   atomic.Bool // a resync retry is running
	reload     atomic.Bool // Cluster: refresh the slot map before assigning channels

	kick     chan struct{} // wakes the control loop; buffered 1
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// base is the common part of a channel's key names: <prefix>{channel}. It is
// also the name of the channel's PUB/SUB channel.
func (s *redisStore) base(channel string) string { return s.prefix + "{" + channel + "}" }

func ttlMillis(ttl time.Duration) int64 { return max(ttl.Milliseconds(), 1) }

func unavailable(op, channel string, err error) error {
	return fmt.Errorf("%s %s: %w: %w", op, channel, ErrUnavailable, err)
}

// luaHelpers are shared by the scripts.
const luaHelpers = `
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

local function offsetOf(id)
  return tonumber(string.match(id, '^(%d+)'))
end

local function young(entry, cutoff)
  return (tonumber(field(entry[2], 't')) or 0) >= cutoff
end

local function now()
  local t = redis.call('TIME')
  local sec, usec = tonumber(t[1]), tonumber(t[2])
  return sec * 1000 + math.floor(usec / 1000), sec, usec
end

-- firstYoung returns the oldest entry of stream appended at or after cutoff
-- (nil when none is), given head, the oldest entry, which is older. Entries
-- are in time order, so a binary search over offsets finds it with
-- O(log n) reads. Invariant: the first entry at or after offset lo is old,
-- the first at or after hi (found) is young.
local function firstYoung(stream, head, cutoff)
  local tail = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
  if not young(tail, cutoff) then return nil end
  local lo, hi, found = offsetOf(head[1]), offsetOf(tail[1]), tail
  while hi - lo > 1 do
    local mid = math.floor((lo + hi) / 2)
    local e = redis.call('XRANGE', stream, string.format('%d-0', mid), '+', 'COUNT', 1)[1]
    if young(e, cutoff) then hi, found = mid, e else lo = mid end
  end
  return found
end
`

// publishScript appends one message. KEYS: meta, stream, [idempotency key].
// ARGV: PUB/SUB channel, history size, ttl (ms), event, data, idempotency
// window (ms), key expiry (ms), notify command (PUBLISH or SPUBLISH), fence
// ('1': compare the master's replication ID, see Fencing), tag. It returns
// {epoch, offset, ms, duplicate, [event, data, tag]}. A tag is the entry's
// field 'g', and follows the event after a space in the PUB/SUB payload
// (neither may contain one).
const publishSource = luaHelpers + `
local meta, stream, idem = KEYS[1], KEYS[2], KEYS[3]
local ms, sec, usec = now()

if idem then
  local seen = redis.call('GET', idem)
  if seen then
    local off, at, ep = string.match(seen, '^(%d+):(%d+):(%w*)$')
    if off then
      if redis.call('HGET', meta, 'epoch') == ep then
        local e = redis.call('XRANGE', stream, off .. '-0', off .. '-0')[1]
        if e then
          return {ep, tonumber(off), tonumber(at), 1, field(e[2], 'e') or '', field(e[2], 'd') or '', field(e[2], 'g') or ''}
        end
      end
      -- Trimmed (or from a lost epoch): the caller fills event and data.
      return {ep, tonumber(off), tonumber(at), 1}
    end
  end
end

local m = redis.call('HMGET', meta, 'epoch', 'r', 'a', 'h')
local epoch, replid = m[1], nil
local fresh = false -- the stream was made anew
if ARGV[9] == '1' then
  replid = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)') or ''
  if epoch and m[2] and m[2] ~= replid then
    -- Written by another master (before a failover, a restart or a slot
    -- migration): that one may have handed out offsets this one never
    -- received. A new epoch keeps what is retained here (the newest
    -- messages, at most 1000), renumbered from 1.
    epoch = string.format('%x%05x', sec, usec)
    local kept = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', math.min(tonumber(ARGV[2]), 1000))
    redis.call('DEL', stream)
    local n = #kept
    for i = n, 1, -1 do
      redis.call('XADD', stream, string.format('%d-0', n - i + 1), unpack(kept[i][2]))
    end
    redis.call('HSET', meta, 'epoch', epoch, 'top', n)
    fresh = true
  end
end
if not epoch then
  epoch = string.format('%x%05x', sec, usec)
  -- A stream without meta is stale; its IDs would block XADD from 1-0.
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'epoch', epoch, 'top', 0)
  fresh = true
end
if replid and m[2] ~= replid then
  redis.call('HSET', meta, 'r', replid)
end
local top = redis.call('HINCRBY', meta, 'top', 1)
local stop, sms = string.format('%d', top), string.format('%d', ms)
local tag = ARGV[10]
if tag == '' then
  redis.call('XADD', stream, 'MAXLEN', '=', ARGV[2], stop .. '-0', 't', sms, 'e', ARGV[4], 'd', ARGV[5])
else
  redis.call('XADD', stream, 'MAXLEN', '=', ARGV[2], stop .. '-0', 't', sms, 'e', ARGV[4], 'd', ARGV[5], 'g', tag)
  tag = ' ' .. tag
end

-- The oldest entry is read only when it may be past the ttl: meta's 'h'
-- is the time of the oldest entry when it was last read, and the oldest
-- entry only gets newer. The keys' lives are extended at most once a
-- second (meta's 'a'): they outlive the ttl by a minute (expiryMargin).
local cutoff = ms - tonumber(ARGV[3])
local h = tonumber(m[4])
if fresh or not h or h < cutoff then
  local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
  if head and not young(head, cutoff) then
    head = firstYoung(stream, head, cutoff)
    if head then
      redis.call('XTRIM', stream, 'MINID', '=', head[1])
    else
      redis.call('DEL', stream)
    end
  end
  redis.call('HSET', meta, 'h', head and field(head[2], 't') or sms)
end
local extended = tonumber(m[3])
if fresh or not extended or ms - extended >= 1000 or ms < extended then
  redis.call('HSET', meta, 'a', sms)
  redis.call('PEXPIRE', meta, ARGV[7])
  redis.call('PEXPIRE', stream, ARGV[7])
end
if idem then
  redis.call('SET', idem, stop .. ':' .. sms .. ':' .. epoch, 'PX', ARGV[6])
end
redis.call(ARGV[8], ARGV[1], epoch .. '\n' .. stop .. '\n' .. sms .. '\n' .. ARGV[4] .. tag .. '\n' .. ARGV[5])
return {epoch, top, ms, 0}
`

var publishScript = redis.NewScript(publishSource)

// readScript reads a channel's state and, by mode, a page of it, in one
// atomic step. KEYS: meta, stream. ARGV: mode ('a': offsets > n, oldest
// first; 'b': the newest with offset < n (0: no bound), newest first; 's':
// state only), n, limit, ttl (ms), max bytes (0: none; else the entries
// end with the first whose data takes their sum over it). It returns
// {epoch, top, first, last ms, entries}. Entries older than the ttl are not retained even if not trimmed
// yet; a stream without meta is stale and ignored.
var readScript = redis.NewScript(luaHelpers + `
local meta, stream = KEYS[1], KEYS[2]
local m = redis.call('HMGET', meta, 'epoch', 'top')
if not m[1] then return {'', 0, 1, 0, {}} end
local epoch, top = m[1], tonumber(m[2]) or 0
local ms = now()
local cutoff = ms - tonumber(ARGV[4])

local first, last = top + 1, 0
local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
if head then
  if not young(head, cutoff) then head = firstYoung(stream, head, cutoff) end
  if head then
    first = math.min(offsetOf(head[1]), top + 1)
    local tail = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
    last = tonumber(field(tail[2], 't')) or 0
  end
end

local entries = {}
local mode, n, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local maxBytes = tonumber(ARGV[5]) or 0
-- read takes up to limit entries from lo to hi (XRANGE, or XREVRANGE from
-- hi down to lo), 64 at a time when maxBytes bounds their data, so that
-- a page over the bound is not read whole: it stops with the entry whose
-- data takes the sum over maxBytes.
local function read(cmd, lo, hi)
  if maxBytes <= 0 then
    if cmd == 'XRANGE' then
      return redis.call(cmd, stream, string.format('%d-0', lo), string.format('%d-0', hi), 'COUNT', limit)
    end
    return redis.call(cmd, stream, string.format('%d-0', hi), string.format('%d-0', lo), 'COUNT', limit)
  end
  local out, sum = {}, 0
  while #out < limit and lo <= hi do
    local chunk
    if cmd == 'XRANGE' then
      chunk = redis.call(cmd, stream, string.format('%d-0', lo), string.format('%d-0', hi), 'COUNT', math.min(64, limit - #out))
    else
      chunk = redis.call(cmd, stream, string.format('%d-0', hi), string.format('%d-0', lo), 'COUNT', math.min(64, limit - #out))
    end
    if #chunk == 0 then break end
    for i = 1, #chunk do
      out[#out + 1] = chunk[i]
      sum = sum + #(field(chunk[i][2], 'd') or '')
      if sum > maxBytes then return out end
    end
    local last = offsetOf(chunk[#chunk][1])
    if cmd == 'XRANGE' then lo = last + 1 else hi = last - 1 end
  end
  return out
end
if mode == 'a' then
  local from = math.max(n + 1, first)
  if from <= top then
    entries = read('XRANGE', from, top)
  end
elseif mode == 'b' then
  local upto = top
  if n > 0 and n - 1 < top then upto = n - 1 end
  if upto >= first then
    entries = read('XREVRANGE', first, upto)
  end
end
return {epoch, top, first, last, entries}
`)

func (s *redisStore) append(ctx context.Context, req PublishRequest) (PublishResult, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.PublishTimeout)
	defer cancel()
	size, ttl := s.opts.retention(req.Channel)
	base := s.base(req.Channel)
	keys := []string{base + ":m", base + ":s"}
	if req.IdempotencyKey != "" {
		keys = append(keys, base+":i:"+req.IdempotencyKey)
	}
	notify, fence := "PUBLISH", "0"
	if s.sharded {
		notify = "SPUBLISH"
	}
	if s.fence {
		fence = "1"
	}
	res, err := s.runPublish(ctx, keys,
		base, size, ttlMillis(ttl), req.Event, []byte(req.Data),
		max(s.opts.IdempotencyWindow.Milliseconds(), 1), ttlMillis(ttl)+expiryMargin.Milliseconds(),
		notify, fence, req.Tag,
	)
	if err != nil {
		if notExecuted(err) || errors.Is(err, errNotSent) {
			return PublishResult{}, unavailable("publish", req.Channel, err)
		}
		// Sent, or maybe sent: the script may have run (or run later,
		// once a paused or slow Redis gets to it).
		return PublishResult{}, fmt.Errorf("publish %s: %w: %w: %w", req.Channel, ErrUnavailable, ErrOutcomeUnknown, err)
	}
	if len(res) != 4 && len(res) != 7 {
		return PublishResult{}, unavailable("publish", req.Channel, fmt.Errorf("unexpected script reply %v", res))
	}
	epoch, _ := res[0].(string)
	off, err1 := replyUint(res[1])
	ms, err2 := replyUint(res[2])
	dup, err3 := replyUint(res[3])
	if err := errors.Join(err1, err2, err3); err != nil || !validEpoch(epoch) {
		return PublishResult{}, unavailable("publish", req.Channel, fmt.Errorf("unexpected script reply %v", res))
	}
	msg := Message{
		Channel: req.Channel,
		Epoch:   epoch,
		Offset:  off,
		Event:   req.Event,
		Tag:     req.Tag,
		Data:    req.Data,
		Time:    time.UnixMilli(int64(ms)),
	}
	if len(res) == 7 {
		event, _ := res[4].(string)
		data, _ := res[5].(string)
		tag, _ := res[6].(string)
		msg.Event, msg.Data, msg.Tag = event, []byte(data), tag
	}
	return PublishResult{Message: msg, Duplicate: dup == 1}, nil
}

// noRetryCmd is a command go-redis must not send twice: the publish script
// is not idempotent (without an idempotency key), so a reply lost after
// the script was sent must reach the caller as an error, not be retried.
type noRetryCmd struct{ *redis.Cmd }

func (noRetryCmd) NoRetry() bool { return true }

// publishRetries: how many times a publish is sent again after an error
// proving the script did not run.
const publishRetries = 2

// runPublish runs the publish script (EVALSHA, EVAL when the server lacks
// it) and, with WaitReplicas, WAIT on the same connection. It retries only
// on errors that prove the script did not run.
func (s *redisStore) runPublish(ctx context.Context, keys []string, args ...any) ([]any, error) {
	for attempt := 0; ; attempt++ {
		res, err := s.runPublishOnce(ctx, keys, args)
		if err == nil || attempt == publishRetries || !notExecuted(err) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt+1) * 20 * time.Millisecond):
		}
	}
}

func (s *redisStore) runPublishOnce(ctx context.Context, keys []string, args []any) ([]any, error) {
	scriptArgs := func(cmd, script string) []any {
		a := make([]any, 0, 3+len(keys)+len(args))
		a = append(a, cmd, script, len(keys))
		for _, k := range keys {
			a = append(a, k)
		}
		return append(a, args...)
	}
	run := func(cmd, script string) ([]any, error) {
		c := noRetryCmd{redis.NewCmd(ctx, scriptArgs(cmd, script)...)}
		if s.waitReplicas == 0 {
			if err := s.batch.do(ctx, c); err != nil {
				return nil, err
			}
			return c.Slice()
		}
		return s.publishAndWait(ctx, keys[0], c)
	}
	res, err := run("evalsha", publishScript.Hash())
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		res, err = run("eval", publishSource)
	}
	return res, err
}

// publishAndWait sends the script and WAIT in one pipeline, so both use one
// connection (WAIT counts the replicas that have that connection's writes).
func (s *redisStore) publishAndWait(ctx context.Context, key string, script noRetryCmd) ([]any, error) {
	var node redis.Cmdable = s.client
	if s.cluster != nil {
		master, err := s.cluster.MasterForKey(ctx, key)
		if err != nil {
			return nil, err
		}
		node = master
	}
	wait := noRetryCmd{redis.NewCmd(ctx, "wait", s.waitReplicas, s.waitTimeout.Milliseconds())}
	pipe := node.Pipeline()
	_ = pipe.Process(ctx, script)
	_ = pipe.Process(ctx, wait)
	_, _ = pipe.Exec(ctx)
	res, err := script.Slice()
	if err != nil {
		if s.cluster != nil && (redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK")) {
			s.cluster.ReloadState(ctx)
			err = fmt.Errorf("%w (the slot moved; retry)", err)
		}
		return nil, err
	}
	n, err := wait.Int64()
	if err != nil {
		return nil, fmt.Errorf("stored on the master, but WAIT failed (%w): it may be lost in a failover; retry with the same idempotency key", err)
	}
	if n < int64(s.waitReplicas) {
		return nil, fmt.Errorf("stored on the master, but only %d of %d replicas confirmed it within %v: it may be lost in a failover; retry with the same idempotency key", n, s.waitReplicas, s.waitTimeout)
	}
	return res, nil
}

// notExecuted reports whether err proves that a command was not run: no
// connection could be made, or the server refused it before running it.
func notExecuted(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	for _, prefix := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}

func (s *redisStore) readAfter(ctx context.Context, channel string, after uint64, limit, maxBytes int) (ChannelState, []Message, error) {
	return s.read(ctx, "readAfter", channel, "a", after, limit, maxBytes)
}

func (s *redisStore) readBefore(ctx context.Context, channel string, before uint64, limit, maxBytes int) (ChannelState, []Message, error) {
	st, msgs, err := s.read(ctx, "readBefore", channel, "b", before, limit, maxBytes)
	for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
		msgs[i], msgs[j] = msgs[j], msgs[i]
	}
	return st, msgs, err
}

func (s *redisStore) state(ctx context.Context, channel string) (ChannelState, error) {
	st, _, err := s.read(ctx, "state", channel, "s", 0, 0, 0)
	return st, err
}

func (s *redisStore) read(ctx context.Context, op, channel, mode string, n uint64, limit, maxBytes int) (ChannelState, []Message, error) {
	_, ttl := s.opts.retention(channel)
	base := s.base(channel)
	res, err := readScript.Run(ctx, s.client, []string{base + ":m", base + ":s"},
		mode, n, limit, ttlMillis(ttl), maxBytes).Slice()
	if err != nil {
		return ChannelState{}, nil, unavailable(op, channel, err)
	}
	st, msgs, err := parseRead(channel, res)
	if err != nil {
		return ChannelState{}, nil, unavailable(op, channel, err)
	}
	return st, msgs, nil
}

func parseRead(channel string, res []any) (ChannelState, []Message, error) {
	bad := func() (ChannelState, []Message, error) {
		return ChannelState{}, nil, fmt.Errorf("unexpected script reply %v", res)
	}
	if len(res) != 5 {
		return bad()
	}
	epoch, ok := res[0].(string)
	top, err1 := replyUint(res[1])
	first, err2 := replyUint(res[2])
	last, err3 := replyUint(res[3])
	entries, ok2 := res[4].([]any)
	if !ok || !ok2 || err1 != nil || err2 != nil || err3 != nil || !validEpoch(epoch) {
		return bad()
	}
	st := ChannelState{Channel: channel, Epoch: epoch, Top: top, First: first}
	if first <= top {
		st.Retained = int(top - first + 1)
		st.LastTime = time.UnixMilli(int64(last))
	}
	if len(entries) == 0 {
		return st, nil, nil
	}
	msgs := make([]Message, len(entries))
	for i, e := range entries {
		if err := parseEntry(e, &msgs[i]); err != nil {
			return ChannelState{}, nil, err
		}
		msgs[i].Channel, msgs[i].Epoch = channel, epoch
	}
	return st, msgs, nil
}

// parseEntry decodes one stream entry: [id, [field, value, ...]].
func parseEntry(e any, m *Message) error {
	pair, ok := e.([]any)
	if !ok || len(pair) != 2 {
		return fmt.Errorf("unexpected stream entry %v", e)
	}
	id, _ := pair[0].(string)
	fields, _ := pair[1].([]any)
	offStr, _, _ := strings.Cut(id, "-")
	off, err := strconv.ParseUint(offStr, 10, 64)
	if err != nil {
		return fmt.Errorf("unexpected stream entry id %q", id)
	}
	m.Offset = off
	for i := 0; i+1 < len(fields); i += 2 {
		name, _ := fields[i].(string)
		value, _ := fields[i+1].(string)
		switch name {
		case "t":
			ms, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				return fmt.Errorf("stream entry %s: bad time %q", id, value)
			}
			m.Time = time.UnixMilli(ms)
		case "e":
			m.Event = value
		case "g":
			m.Tag = value
		case "d":
			// The reply's string, not a copy of it: a history page or a
			// catch-up read of large messages would hold its data twice.
			// Message data is never written to after it is made.
			m.Data = unsafe.Slice(unsafe.StringData(value), len(value))
		}
	}
	return nil
}

func replyUint(v any) (uint64, error) {
	switch v := v.(type) {
	case int64:
		if v >= 0 {
			return uint64(v), nil
		}
	case string:
		return strconv.ParseUint(v, 10, 64)
	}
	return 0, fmt.Errorf("unexpected number %v", v)
}

// parseNotification decodes a PUB/SUB payload:
// epoch \n offset \n ms \n event [space tag] \n data.
func parseNotification(channel, payload string) (*Message, error) {
	var parts [4]string
	rest := payload
	for i := range parts {
		var ok bool
		if parts[i], rest, ok = strings.Cut(rest, "\n"); !ok {
			return nil, fmt.Errorf("notification on %s: %d fields, want 5", channel, i+1)
		}
	}
	if parts[0] == "" || !validEpoch(parts[0]) {
		return nil, fmt.Errorf("notification on %s: bad epoch %q", channel, parts[0])
	}
	off, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil || off == 0 {
		return nil, fmt.Errorf("notification on %s: bad offset %q", channel, parts[1])
	}
	ms, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("notification on %s: bad time %q", channel, parts[2])
	}
	event, tag, _ := strings.Cut(parts[3], " ")
	return &Message{
		Channel: channel,
		Epoch:   parts[0],
		Offset:  off,
		Event:   event,
		Tag:     tag,
		Data:    []byte(rest),
		Time:    time.UnixMilli(ms),
	}, nil
}
