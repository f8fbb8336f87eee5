package pubsub

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configure a Redis-backed Broker.
type RedisOptions struct {
	Options
	// Prefix starts every key and PUB/SUB channel name (default
	// "pushgate:"). It must not contain '{' or '}': the channel name in
	// braces is the Redis Cluster hash tag.
	Prefix string
}

// DefaultRedisPrefix is the key prefix when RedisOptions.Prefix is empty.
const DefaultRedisPrefix = "pushgate:"

// NewRedis returns a Broker that keeps history in Redis Streams and fans out
// through Redis PUB/SUB, so that any number of nodes sharing one Redis (a
// single server, Sentinel or Cluster) behave as one broker.
//
// For a channel C the keys are, all in C's hash slot:
//
//	<prefix>{C}:m        hash: epoch, top (the last offset assigned)
//	<prefix>{C}:s        stream: entry <offset>-0 with fields t (ms), e (event), d (data)
//	<prefix>{C}:i:<key>  string: "<offset>:<ms>:<epoch>" of an idempotent publish
//
// and live notifications go to the PUB/SUB channel <prefix>{C}. A publish is
// one Lua script: it assigns the offset, appends, trims by count and age,
// refreshes expiry, remembers the idempotency key and publishes the
// notification atomically, so every node sees one order. The meta hash and
// the stream expire one minute after the retention age of their newest
// message; a publish after that starts a new epoch.
//
// Each node holds one PUB/SUB connection for all its channels. When it
// reconnects, or a notification skips offsets, the missing messages are read
// from the stream once per node. The caller owns client: Close does not close
// it.
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
	o := opts.Options.withDefaults()
	if err := client.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("redis ping: %w: %w", ErrUnavailable, err)
	}
	for _, sc := range []*redis.Script{publishScript, readScript} {
		if err := sc.Load(ctx, client).Err(); err != nil {
			return nil, fmt.Errorf("redis script load: %w: %w", ErrUnavailable, err)
		}
	}
	s := &redisStore{
		client:  client,
		opts:    o,
		prefix:  prefix,
		watches: make(map[string]*watchState),
		dirty:   make(map[string]struct{}),
		pending: make(map[string]struct{}),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	s.lastRecv.Store(time.Now().UnixNano())
	h := newHub()
	h.st = s
	s.hub = h
	// No channel yet: the receive loop opens the connection.
	s.ps = client.Subscribe(context.Background())
	s.wg.Add(2)
	go s.receive()
	go s.control()
	return newBroker(o, s, h), nil
}

// Timings of the PUB/SUB connection.
const (
	// watchTimeout bounds how long watch waits for Redis to confirm a
	// SUBSCRIBE when the caller's context has no earlier deadline.
	watchTimeout = 10 * time.Second
	// resubscribeAfter: a SUBSCRIBE still unconfirmed after this long is
	// sent again (its reply may have been lost with a connection).
	resubscribeAfter = 2 * time.Second
	// keepAliveAfter: with nothing received for this long, the PUB/SUB
	// connection is pinged, so a broken connection is noticed on write and
	// idle-killing proxies leave it alone.
	keepAliveAfter = 30 * time.Second
	// controlTick paces resubscription, keep-alive checks and resync
	// retries.
	controlTick = time.Second
	// commandTimeout bounds one SUBSCRIBE, UNSUBSCRIBE or PING write.
	commandTimeout = 5 * time.Second
	// Receive errors are retried with a backoff between these.
	minReceiveBackoff = 20 * time.Millisecond
	maxReceiveBackoff = time.Second
	// expiryMargin is how long the meta hash and the stream outlive the
	// retention age of their newest message.
	expiryMargin = time.Minute
)

// keepWatchedEvery: the metadata of channels with local subscribers is kept
// from expiring this often, so a quiet channel that is watched keeps its
// epoch (as in the memory store) instead of costing its subscribers a
// needless reset. A variable for tests.
var keepWatchedEvery = 30 * time.Second

type redisStore struct {
	client redis.UniversalClient
	opts   Options
	prefix string
	hub    *hub
	ps     *redis.PubSub

	mu      sync.Mutex
	watches map[string]*watchState // by PUB/SUB channel name
	dirty   map[string]struct{}    // watches the control loop must reconcile
	pending map[string]struct{}    // channels whose resync could not read Redis
	closed  bool

	anyPending atomic.Bool // len(pending) > 0, read without the lock

	kick     chan struct{} // wakes the control loop; buffered 1
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	lastRecv atomic.Int64 // unix nanoseconds of the last receive
}

// watchState tracks one PUB/SUB channel. Its life is: created by watch,
// SUBSCRIBE issued by the control loop, confirmed by the receive loop, then,
// once unwanted and confirmed, UNSUBSCRIBE issued and the state dropped. At
// most one SUBSCRIBE of a channel is awaiting its reply at a time (unless a
// lost reply is retried), so a reply is not mistaken for another's.
type watchState struct {
	channel   string // the pushgate channel
	wanted    bool   // the hub watches the channel
	issued    bool   // SUBSCRIBE was sent (go-redis resubscribes it on reconnect)
	issuedAt  time.Time
	confirmed bool          // a subscribe reply arrived: notifications flow
	ready     chan struct{} // closed when first confirmed
}

// base is the common part of a channel's key names: <prefix>{channel}. It is
// also the name of the channel's PUB/SUB channel.
func (s *redisStore) base(channel string) string { return s.prefix + "{" + channel + "}" }

// channelOf maps a PUB/SUB channel name back to the pushgate channel.
func (s *redisStore) channelOf(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, s.prefix+"{")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, "}")
}

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
// window (ms), key expiry (ms). It returns {epoch, offset, ms, duplicate, [event, data]}.
var publishScript = redis.NewScript(luaHelpers + `
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
          return {ep, tonumber(off), tonumber(at), 1, field(e[2], 'e') or '', field(e[2], 'd') or ''}
        end
      end
      -- Trimmed (or from a lost epoch): the caller fills event and data.
      return {ep, tonumber(off), tonumber(at), 1}
    end
  end
end

local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = string.format('%x%05x', sec, usec)
  -- A stream without meta is stale; its IDs would block XADD from 1-0.
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'epoch', epoch, 'top', 0)
end
local top = redis.call('HINCRBY', meta, 'top', 1)
local stop, sms = string.format('%d', top), string.format('%d', ms)
redis.call('XADD', stream, 'MAXLEN', '=', ARGV[2], stop .. '-0', 't', sms, 'e', ARGV[4], 'd', ARGV[5])

local ttl = tonumber(ARGV[3])
local cutoff = ms - ttl
local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
if head and not young(head, cutoff) then
  local keep = firstYoung(stream, head, cutoff)
  if keep then
    redis.call('XTRIM', stream, 'MINID', '=', keep[1])
  else
    redis.call('DEL', stream)
  end
end

redis.call('PEXPIRE', meta, ARGV[7])
redis.call('PEXPIRE', stream, ARGV[7])
if idem then
  redis.call('SET', idem, stop .. ':' .. sms .. ':' .. epoch, 'PX', ARGV[6])
end
redis.call('PUBLISH', ARGV[1], epoch .. '\n' .. stop .. '\n' .. sms .. '\n' .. ARGV[4] .. '\n' .. ARGV[5])
return {epoch, top, ms, 0}
`)

// readScript reads a channel's state and, by mode, a page of it, in one
// atomic step. KEYS: meta, stream. ARGV: mode ('a': offsets > n, oldest
// first; 'b': the newest with offset < n (0: no bound), newest first; 's':
// state only), n, limit, ttl (ms). It returns {epoch, top, first, last ms,
// entries}. Entries older than the ttl are not retained even if not trimmed
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
if mode == 'a' then
  local from = math.max(n + 1, first)
  if from <= top then
    entries = redis.call('XRANGE', stream, string.format('%d-0', from), '+', 'COUNT', limit)
  end
elseif mode == 'b' then
  local upto = top
  if n > 0 and n - 1 < top then upto = n - 1 end
  if upto >= first then
    entries = redis.call('XREVRANGE', stream, string.format('%d-0', upto), string.format('%d-0', first), 'COUNT', limit)
  end
end
return {epoch, top, first, last, entries}
`)

func (s *redisStore) append(ctx context.Context, req PublishRequest) (PublishResult, error) {
	size, ttl := s.opts.retention(req.Channel)
	base := s.base(req.Channel)
	keys := []string{base + ":m", base + ":s"}
	if req.IdempotencyKey != "" {
		keys = append(keys, base+":i:"+req.IdempotencyKey)
	}
	res, err := publishScript.Run(ctx, s.client, keys,
		base, size, ttlMillis(ttl), req.Event, []byte(req.Data),
		max(s.opts.IdempotencyWindow.Milliseconds(), 1), ttlMillis(ttl)+expiryMargin.Milliseconds(),
	).Slice()
	if err != nil {
		return PublishResult{}, unavailable("publish", req.Channel, err)
	}
	if len(res) != 4 && len(res) != 6 {
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
		Data:    req.Data,
		Time:    time.UnixMilli(int64(ms)),
	}
	if len(res) == 6 {
		event, _ := res[4].(string)
		data, _ := res[5].(string)
		msg.Event, msg.Data = event, []byte(data)
	}
	return PublishResult{Message: msg, Duplicate: dup == 1}, nil
}

func (s *redisStore) readAfter(ctx context.Context, channel string, after uint64, limit int) (ChannelState, []Message, error) {
	return s.read(ctx, "readAfter", channel, "a", after, limit)
}

func (s *redisStore) readBefore(ctx context.Context, channel string, before uint64, limit int) (ChannelState, []Message, error) {
	st, msgs, err := s.read(ctx, "readBefore", channel, "b", before, limit)
	for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
		msgs[i], msgs[j] = msgs[j], msgs[i]
	}
	return st, msgs, err
}

func (s *redisStore) state(ctx context.Context, channel string) (ChannelState, error) {
	st, _, err := s.read(ctx, "state", channel, "s", 0, 0)
	return st, err
}

func (s *redisStore) read(ctx context.Context, op, channel, mode string, n uint64, limit int) (ChannelState, []Message, error) {
	_, ttl := s.opts.retention(channel)
	base := s.base(channel)
	res, err := readScript.Run(ctx, s.client, []string{base + ":m", base + ":s"},
		mode, n, limit, ttlMillis(ttl)).Slice()
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
		case "d":
			m.Data = []byte(value)
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
// epoch \n offset \n ms \n event \n data.
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
	return &Message{
		Channel: channel,
		Epoch:   parts[0],
		Offset:  off,
		Event:   parts[3],
		Data:    []byte(rest),
		Time:    time.UnixMilli(ms),
	}, nil
}

// watch subscribes to the channel's notifications and returns once Redis
// confirmed the subscription: every message published afterwards reaches
// the receive loop.
func (s *redisStore) watch(ctx context.Context, channel string) error {
	name := s.base(channel)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	w := s.watches[name]
	if w == nil {
		w = &watchState{channel: channel, ready: make(chan struct{})}
		s.watches[name] = w
	}
	w.wanted = true
	if w.confirmed {
		s.mu.Unlock()
		return nil
	}
	s.markDirtyLocked(name)
	ready := w.ready
	s.mu.Unlock()

	timer := time.NewTimer(watchTimeout)
	defer timer.Stop()
	var err error
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		err = fmt.Errorf("watch %s: %w", channel, ctx.Err())
	case <-timer.C:
		err = fmt.Errorf("watch %s: %w: no subscription confirmation within %v", channel, ErrUnavailable, watchTimeout)
	case <-s.stop:
		return ErrClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.confirmed {
		return nil
	}
	// The hub does not unwatch after a failed watch: give it up here.
	w.wanted = false
	s.markDirtyLocked(name)
	return err
}

// unwatch stops the channel's notifications. It does not wait: the control
// loop sends UNSUBSCRIBE, in order with any later SUBSCRIBE.
func (s *redisStore) unwatch(channel string) {
	name := s.base(channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.watches[name]; w != nil {
		w.wanted = false
		s.markDirtyLocked(name)
	}
}

func (s *redisStore) markDirtyLocked(name string) {
	s.dirty[name] = struct{}{}
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// control issues SUBSCRIBE and UNSUBSCRIBE commands, one at a time and in
// the order the watches changed, resends lost SUBSCRIBEs and keeps the
// connection alive.
func (s *redisStore) control() {
	defer s.wg.Done()
	tick := time.NewTicker(controlTick)
	defer tick.Stop()
	var lastPing, lastKeep time.Time
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
			s.reconcile()
		case now := <-tick.C:
			s.reconcile()
			s.resubscribe(now)
			if now.Sub(lastKeep) > keepWatchedEvery {
				lastKeep = now
				s.keepWatched()
			}
			idle := now.Sub(time.Unix(0, s.lastRecv.Load()))
			// A pending resync is retried by the receive loop, which only
			// runs when something arrives: a PING makes something arrive.
			if s.hasPending() || idle > keepAliveAfter && now.Sub(lastPing) > keepAliveAfter {
				lastPing = now
				ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
				// A failed write makes go-redis reconnect and resubscribe.
				_ = s.ps.Ping(ctx)
				cancel()
			}
		}
	}
}

func (s *redisStore) reconcile() {
	var sub, unsub []string
	now := time.Now()
	s.mu.Lock()
	for name := range s.dirty {
		delete(s.dirty, name)
		w := s.watches[name]
		switch {
		case w == nil:
		case w.wanted && !w.issued:
			w.issued, w.issuedAt = true, now
			sub = append(sub, name)
		case !w.wanted && w.issued && w.confirmed:
			delete(s.watches, name)
			unsub = append(unsub, name)
		case !w.wanted && !w.issued:
			delete(s.watches, name)
		}
		// Unwanted and awaiting its reply: the reply marks it dirty again.
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	if len(unsub) > 0 {
		// On error go-redis has forgotten the channels all the same, so a
		// reconnect does not subscribe them again.
		_ = s.ps.Unsubscribe(ctx, unsub...)
	}
	if len(sub) > 0 {
		// On error resubscribe sends them again.
		_ = s.ps.Subscribe(ctx, sub...)
	}
}

// keepWatched pushes back the expiry of the metadata and stream of every
// watched channel. PEXPIRE on a missing key does nothing, so a channel whose
// history is gone still starts a new epoch.
func (s *redisStore) keepWatched() {
	s.mu.Lock()
	channels := make([]string, 0, len(s.watches))
	for _, w := range s.watches {
		if w.wanted {
			channels = append(channels, w.channel)
		}
	}
	s.mu.Unlock()
	if len(channels) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	_, _ = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, ch := range channels {
			_, ttl := s.opts.retention(ch)
			keep := ttl + expiryMargin
			base := s.base(ch)
			p.PExpire(ctx, base+":m", keep)
			p.PExpire(ctx, base+":s", keep)
		}
		return nil
	})
}

// resubscribe sends SUBSCRIBE again for channels whose confirmation is
// overdue: the command or its reply may have been lost with a connection
// (go-redis resubscribes what it knows on reconnect, but a SUBSCRIBE whose
// write failed can be missed).
func (s *redisStore) resubscribe(now time.Time) {
	var names []string
	s.mu.Lock()
	for name, w := range s.watches {
		if w.issued && !w.confirmed && now.Sub(w.issuedAt) > resubscribeAfter {
			w.issuedAt = now
			names = append(names, name)
		}
	}
	s.mu.Unlock()
	if len(names) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
		_ = s.ps.Subscribe(ctx, names...)
		cancel()
	}
}

// receive reads the PUB/SUB connection until close: it dispatches
// notifications to the hub (from this goroutine only, so each channel's
// messages reach the hub in order) and handles subscription replies.
func (s *redisStore) receive() {
	defer s.wg.Done()
	backoff := minReceiveBackoff
	var lastRetry time.Time
	for {
		msg, err := s.ps.Receive(context.Background())
		select {
		case <-s.stop:
			return
		default:
		}
		if err != nil {
			// go-redis reconnects and resubscribes by itself; each
			// confirmed channel's next subscribe reply triggers a resync.
			select {
			case <-s.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxReceiveBackoff)
			continue
		}
		backoff = minReceiveBackoff
		s.lastRecv.Store(time.Now().UnixNano())
		switch m := msg.(type) {
		case *redis.Message:
			ch, ok := s.channelOf(m.Channel)
			if !ok {
				continue
			}
			// A malformed notification is skipped: the next one shows a gap
			// that the hub fills from the stream.
			if msg, err := parseNotification(ch, m.Payload); err == nil {
				s.hub.dispatch(msg)
			}
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				s.confirm(m.Channel)
			}
		}
		if s.hasPending() && time.Since(lastRetry) >= controlTick {
			lastRetry = time.Now()
			s.retryResyncs()
		}
	}
}

// confirm handles a subscribe reply. A reply for a channel that was already
// confirmed means it was subscribed again, after a reconnect: notifications
// may have been lost in between, so the hub reads what it missed.
func (s *redisStore) confirm(name string) {
	s.mu.Lock()
	w := s.watches[name]
	if w == nil || !w.issued {
		s.mu.Unlock()
		return
	}
	again := w.confirmed
	if !again {
		w.confirmed = true
		close(w.ready)
	}
	wanted := w.wanted
	if !wanted {
		s.markDirtyLocked(name)
	}
	s.mu.Unlock()
	if again && wanted {
		s.resync(w.channel)
	}
}

// resync makes the hub read what the channel received while notifications
// may have been lost. The hub cannot report a failed read, so Redis is
// probed first; if it cannot be read (still loading after a restart, say),
// the resync is retried later instead of waiting for the channel's next
// message to reveal the gap. Called from the receive loop only.
func (s *redisStore) resync(channel string) {
	if s.hub.lookup(channel) == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), fillTimeout)
	_, err := s.state(ctx, channel)
	cancel()
	if err != nil {
		s.mu.Lock()
		s.pending[channel] = struct{}{}
		s.anyPending.Store(true)
		s.mu.Unlock()
		return
	}
	s.hub.resync(channel)
}

func (s *redisStore) hasPending() bool { return s.anyPending.Load() }

func (s *redisStore) retryResyncs() {
	s.mu.Lock()
	channels := make([]string, 0, len(s.pending))
	for ch := range s.pending {
		channels = append(channels, ch)
	}
	clear(s.pending)
	s.anyPending.Store(false)
	s.mu.Unlock()
	for _, ch := range channels {
		s.resync(ch)
	}
}

func (s *redisStore) ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// close stops the PUB/SUB connection and its goroutines; the client stays
// open (its owner closes it).
func (s *redisStore) close() error {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		_ = s.ps.Close()
		s.wg.Wait()
	})
	return nil
}
