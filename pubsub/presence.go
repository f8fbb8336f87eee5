package pubsub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Presence tracks which subjects are subscribed to which channels, across
// every node of a deployment.
//
// Each node counts its own connections per (channel, subject) and keeps
// them in the store with an expiry it refreshes, so the entries of a node
// that crashed disappear within the TTL; the cost is one store write per
// distinct (channel, subject) on the node per refresh, not per connection.
//
// OnChange, when set before the first Join, is called (from the joining or
// leaving goroutine) when a subject appears on a channel where no node had
// it, or disappears from the last node that had it: pushgate publishes these
// as join and leave events on the channel's companion feed. A subject that
// vanishes because its node crashed is not announced.
type Presence interface {
	// Join records one connection of subject on channel. The returned leave
	// must be called once when the connection ends.
	Join(ctx context.Context, channel, subject string) (leave func(), err error)
	// Get returns who is on channel now.
	Get(ctx context.Context, channel string) (PresenceState, error)
	// Close stops refreshing; the node's entries expire.
	Close() error
}

// PresenceState is who is on a channel.
type PresenceState struct {
	// Count is the number of connections, on every node.
	Count int
	// Subjects are the distinct subjects, sorted.
	Subjects []string
}

// PresenceChange is called with joined true when subject appeared on
// channel, false when it left it.
type PresenceChange func(channel, subject string, joined bool)

// DefaultPresenceTTL bounds how long a crashed node's presence lingers.
const DefaultPresenceTTL = 30 * time.Second

// ---- memory ----

// NewMemoryPresence returns the presence of a single node.
func NewMemoryPresence(onChange PresenceChange) Presence {
	return &memPresence{on: onChange, counts: make(map[string]map[string]int)}
}

type memPresence struct {
	on     PresenceChange
	mu     sync.Mutex
	counts map[string]map[string]int // channel -> subject -> connections
}

func (p *memPresence) Join(_ context.Context, channel, subject string) (func(), error) {
	p.mu.Lock()
	subs := p.counts[channel]
	if subs == nil {
		subs = make(map[string]int)
		p.counts[channel] = subs
	}
	subs[subject]++
	joined := subs[subject] == 1
	p.mu.Unlock()
	if joined && p.on != nil {
		p.on(channel, subject, true)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			subs := p.counts[channel]
			subs[subject]--
			left := subs[subject] == 0
			if left {
				delete(subs, subject)
				if len(subs) == 0 {
					delete(p.counts, channel)
				}
			}
			p.mu.Unlock()
			if left && p.on != nil {
				p.on(channel, subject, false)
			}
		})
	}, nil
}

func (p *memPresence) Get(_ context.Context, channel string) (PresenceState, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var st PresenceState
	for subject, n := range p.counts[channel] {
		st.Count += n
		st.Subjects = append(st.Subjects, subject)
	}
	slices.Sort(st.Subjects)
	return st, nil
}

func (p *memPresence) Close() error { return nil }

// ---- Redis ----

// NewRedisPresence returns presence kept in Redis under prefix (the
// broker's key prefix), one hash per channel in the channel's slot: field
// subject, value "node=count@expiresMs;..." for every node that has it.
func NewRedisPresence(client redis.UniversalClient, prefix string, ttl time.Duration, onChange PresenceChange) Presence {
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	if ttl <= 0 {
		ttl = DefaultPresenceTTL
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	p := &redisPresence{
		client: client, prefix: prefix, ttl: ttl, on: onChange,
		node:  hex.EncodeToString(id[:]),
		local: make(map[presenceKey]int),
		stop:  make(chan struct{}),
	}
	p.wg.Add(1)
	go p.refreshLoop()
	return p
}

type presenceKey struct{ channel, subject string }

type redisPresence struct {
	client redis.UniversalClient
	prefix string
	ttl    time.Duration
	on     PresenceChange
	node   string

	mu    sync.Mutex
	local map[presenceKey]int // this node's connections

	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func (p *redisPresence) key(channel string) string { return p.prefix + "{" + channel + "}:p" }

// presenceScript sets this node's count of a subject on a channel (0
// removes it), drops expired entries and reports whether any node had the
// subject before and has it after: {before, after}.
var presenceScript = redis.NewScript(`
local key, subject, node = KEYS[1], ARGV[1], ARGV[2]
local count, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local old = redis.call('HGET', key, subject)
local before, parts = 0, {}
if old then
  for entry in string.gmatch(old, '[^;]+') do
    local n, c, exp = string.match(entry, '^([^=]+)=(%d+)@(%d+)$')
    if n and tonumber(exp) > now then
      before = 1
      if n ~= node then table.insert(parts, entry) end
    end
  end
end
if count > 0 then
  table.insert(parts, node .. '=' .. count .. '@' .. (now + ttl))
end
if #parts == 0 then
  redis.call('HDEL', key, subject)
else
  redis.call('HSET', key, subject, table.concat(parts, ';'))
  redis.call('PEXPIRE', key, ttl * 2)
end
local after = 0
if #parts > 0 then after = 1 end
return {before, after}
`)

func (p *redisPresence) set(ctx context.Context, k presenceKey, count int) (before, after bool, err error) {
	res, err := presenceScript.Run(ctx, p.client, []string{p.key(k.channel)},
		k.subject, p.node, count, p.ttl.Milliseconds()).Int64Slice()
	if err != nil || len(res) != 2 {
		return false, false, fmt.Errorf("presence %s: %w: %w", k.channel, ErrUnavailable, err)
	}
	return res[0] == 1, res[1] == 1, nil
}

func (p *redisPresence) Join(ctx context.Context, channel, subject string) (func(), error) {
	k := presenceKey{channel, subject}
	p.mu.Lock()
	p.local[k]++
	n := p.local[k]
	p.mu.Unlock()
	// Concurrent joins of one subject may write their counts out of order;
	// the next refresh writes the true count.
	before, _, err := p.set(ctx, k, n)
	if err != nil {
		p.drop(k)
		return nil, err
	}
	if !before && p.on != nil {
		p.on(channel, subject, true)
	}
	var once sync.Once
	return func() { once.Do(func() { p.leave(k) }) }, nil
}

func (p *redisPresence) drop(k presenceKey) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.local[k]--
	n := p.local[k]
	if n <= 0 {
		delete(p.local, k)
	}
	return n
}

func (p *redisPresence) leave(k presenceKey) {
	n := p.drop(k)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, after, err := p.set(ctx, k, max(n, 0))
	// On error the entry expires by itself within the TTL.
	if err == nil && n <= 0 && !after && p.on != nil {
		p.on(k.channel, k.subject, false)
	}
}

func (p *redisPresence) Get(ctx context.Context, channel string) (PresenceState, error) {
	fields, err := p.client.HGetAll(ctx, p.key(channel)).Result()
	if err != nil {
		return PresenceState{}, fmt.Errorf("presence %s: %w: %w", channel, ErrUnavailable, err)
	}
	now := time.Now().UnixMilli()
	var st PresenceState
	for subject, v := range fields {
		live := 0
		for _, entry := range strings.Split(v, ";") {
			_, rest, ok := strings.Cut(entry, "=")
			cs, exps, ok2 := strings.Cut(rest, "@")
			c, err1 := strconv.Atoi(cs)
			exp, err2 := strconv.ParseInt(exps, 10, 64)
			if ok && ok2 && err1 == nil && err2 == nil && exp > now {
				live += c
			}
		}
		if live > 0 {
			st.Count += live
			st.Subjects = append(st.Subjects, subject)
		}
	}
	slices.Sort(st.Subjects)
	return st, nil
}

// refreshLoop rewrites this node's entries (with their current counts)
// every third of the TTL.
func (p *redisPresence) refreshLoop() {
	defer p.wg.Done()
	t := time.NewTicker(p.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.refresh()
		}
	}
}

func (p *redisPresence) refresh() {
	p.mu.Lock()
	entries := make(map[presenceKey]int, len(p.local))
	for k, n := range p.local {
		entries[k] = n
	}
	p.mu.Unlock()
	if len(entries) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.ttl/3)
	defer cancel()
	// EVALSHA in a pipeline cannot fall back to EVAL: load the script
	// first (Redis may have restarted and lost it).
	if err := presenceScript.Load(ctx, p.client).Err(); err != nil {
		return
	}
	_, _ = p.client.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for k, n := range entries {
			presenceScript.Run(ctx, pl, []string{p.key(k.channel)}, k.subject, p.node, n, p.ttl.Milliseconds())
		}
		return nil
	})
	// A join or leave while the round ran may have been overwritten with
	// the count copied before it: write the current count again.
	p.mu.Lock()
	var stale []presenceKey
	for k, n := range entries {
		if p.local[k] != n {
			stale = append(stale, k)
		}
	}
	p.mu.Unlock()
	for _, k := range stale {
		p.mu.Lock()
		n := p.local[k]
		p.mu.Unlock()
		_, _, _ = p.set(ctx, k, n)
	}
}

func (p *redisPresence) Close() error {
	p.once.Do(func() { close(p.stop) })
	p.wg.Wait()
	return nil
}
