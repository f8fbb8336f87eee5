package pubsub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis store's live notifications: which PUB/SUB connection carries
// which channel, and how channels are moved, resubscribed and resynced.
//
// A psConn is one PUB/SUB connection: to the single server (or Sentinel's
// master), or to one Cluster master. Each has its own receive goroutine.
// A watchState is one channel this node watches. The control goroutine
// assigns watched channels to connections (on a Cluster, the connection of
// the master serving the channel's slot) and sends SUBSCRIBE (SSUBSCRIBE)
// and UNSUBSCRIBE commands; receive goroutines confirm them and dispatch
// notifications. A connection that fails is dropped as a whole, never
// reconnected by go-redis behind our back: go-redis resubscribes every
// sharded channel of a connection in one SSUBSCRIBE, which a Cluster
// rejects (CROSSSLOT) when they span slots. Its channels go back to the
// control loop, which resolves their masters again (a failover or a slot
// migration may have moved them) and subscribes them on new connections;
// once a channel is confirmed again, the hub reads what it may have missed.

// psConn is one PUB/SUB connection and its receive goroutine.
type psConn struct {
	addr     string // the Cluster master it is pinned to; "" off Cluster
	ps       *redis.PubSub
	lastRecv atomic.Int64 // unix nanoseconds
	worked   atomic.Bool  // something was received
	gone     atomic.Bool  // dropped: its receive goroutine ends

	// Control loop only.
	pingSent time.Time
	created  time.Time
}

// watchState is one watched channel. Its life: created by watch; assigned
// to a connection and SUBSCRIBE sent by the control loop; confirmed by that
// connection's receive goroutine (live); once unwanted and live,
// UNSUBSCRIBE sent and the state dropped. When its connection fails or the
// server unsubscribes it (slot migration), it is unassigned and marked lost,
// so that its next confirmation triggers a resync. At most one SUBSCRIBE of
// a channel awaits its reply at a time on a connection, so a reply is not
// mistaken for another's.
type watchState struct {
	channel  string // the pushgate channel
	name     string // its PUB/SUB channel
	wanted   bool   // the hub watches the channel
	conn     *psConn
	issuedAt time.Time
	live     bool          // conn confirmed the subscription: notifications flow
	ready    chan struct{} // closed when first confirmed
	ever     bool          // ready is closed
	lost     bool          // notifications may have been lost since the last confirmation

	// dmu serializes the hub's dispatch and resync of the channel: after a
	// move, two receive goroutines may carry it for a moment.
	dmu sync.Mutex
}

// watch subscribes to the channel's notifications and returns once Redis
// confirmed the subscription: every message published afterwards reaches
// a receive goroutine.
func (s *redisStore) watch(ctx context.Context, channel string) error {
	name := s.base(channel)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	w := s.watches[name]
	if w == nil {
		w = &watchState{channel: channel, name: name, ready: make(chan struct{})}
		s.watches[name] = w
	}
	w.wanted = true
	if w.ever {
		// Confirmed once: if it is being moved, the move resyncs it.
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
	if w.ever {
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
	s.kickControl()
}

func (s *redisStore) kickControl() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// control assigns channels to connections and sends SUBSCRIBE and
// UNSUBSCRIBE commands, one at a time and in the order the watches changed;
// it also resends overdue SUBSCRIBEs, keeps connections alive and retries
// resyncs.
func (s *redisStore) control() {
	defer s.wg.Done()
	tick := time.NewTicker(controlTick)
	defer tick.Stop()
	var lastKeep time.Time
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
			s.reconcile()
		case now := <-tick.C:
			s.watchMaster()
			s.resubscribe(now)
			s.reconcile()
			s.keepAlive(now)
			if now.Sub(lastKeep) > keepWatchedEvery {
				lastKeep = now
				s.keepWatched()
				s.dropIdleConns(now)
			}
			if s.hasPending() && s.retrying.CompareAndSwap(false, true) {
				s.wg.Add(1)
				go func() {
					defer s.wg.Done()
					defer s.retrying.Store(false)
					s.retryResyncs()
				}()
			}
		}
	}
}

// reconcile acts on the watches that changed: it unsubscribes unwanted
// ones and subscribes wanted ones that have no connection. A channel that
// cannot be subscribed now (Redis unreachable) stays dirty for the next
// tick.
func (s *redisStore) reconcile() {
	unsub := map[*psConn][]string{}
	var assign []*watchState
	s.mu.Lock()
	for name := range s.dirty {
		delete(s.dirty, name)
		w := s.watches[name]
		switch {
		case w == nil:
		case w.wanted && w.conn == nil:
			assign = append(assign, w)
		case !w.wanted && w.conn != nil && w.live:
			unsub[w.conn] = append(unsub[w.conn], name)
			delete(s.watches, name)
		case !w.wanted && w.conn == nil:
			delete(s.watches, name)
		}
		// Unwanted and awaiting its reply: the reply marks it dirty again.
	}
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	for c, names := range unsub {
		// On error go-redis has forgotten the channels all the same, and
		// the connection is dropped by its receive goroutine.
		if s.sharded {
			for _, name := range names {
				_ = c.ps.SUnsubscribe(ctx, name)
			}
		} else {
			_ = c.ps.Unsubscribe(ctx, names...)
		}
	}
	if len(assign) > 0 {
		s.assign(ctx, assign)
	}
}

// assign subscribes each watch on the connection of the master serving it.
func (s *redisStore) assign(ctx context.Context, ws []*watchState) {
	if s.cluster != nil && s.reload.Swap(false) {
		s.cluster.ReloadState(ctx)
	}
	byConn := map[*psConn][]*watchState{}
	var retry []*watchState
	for _, w := range ws {
		c, err := s.connFor(ctx, w.name)
		if err != nil {
			retry = append(retry, w)
			continue
		}
		byConn[c] = append(byConn[c], w)
	}
	now := time.Now()
	for c, ws := range byConn {
		names := make([]string, 0, len(ws))
		s.mu.Lock()
		for _, w := range ws {
			if c.gone.Load() {
				// Dropped meanwhile by its receive goroutine: next tick.
				s.dirty[w.name] = struct{}{}
				continue
			}
			// Changed meanwhile (unwatched, or assigned by an earlier pass)?
			if s.watches[w.name] != w || w.conn != nil {
				continue
			}
			if !w.wanted {
				delete(s.watches, w.name)
				continue
			}
			w.conn, w.issuedAt, w.live = c, now, false
			names = append(names, w.name)
		}
		s.mu.Unlock()
		var err error
		if s.sharded {
			// One SSUBSCRIBE per channel: a Cluster refuses one that
			// names channels of several slots.
			for _, name := range names {
				if err = c.ps.SSubscribe(ctx, name); err != nil {
					break
				}
			}
		} else {
			for len(names) > 0 && err == nil {
				n := min(len(names), subscribeBatch)
				err = c.ps.Subscribe(ctx, names[:n]...)
				names = names[n:]
			}
		}
		if err != nil {
			// Most likely Redis is unreachable: drop the connection; its
			// channels are retried on the next tick.
			s.connLost(c, false)
		}
	}
	if len(retry) > 0 {
		s.mu.Lock()
		for _, w := range retry {
			s.dirty[w.name] = struct{}{}
		}
		s.mu.Unlock()
	}
}

// connFor returns the connection for a PUB/SUB channel, opening it if
// needed. Control loop only.
func (s *redisStore) connFor(ctx context.Context, name string) (*psConn, error) {
	addr := ""
	var node *redis.Client
	if s.cluster != nil {
		var err error
		if node, err = s.cluster.MasterForKey(ctx, name); err != nil {
			s.reload.Store(true)
			return nil, err
		}
		addr = node.Options().Addr
	}
	s.mu.Lock()
	c := s.conns[addr]
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c = &psConn{addr: addr, created: time.Now()}
	c.lastRecv.Store(time.Now().UnixNano())
	switch {
	case node != nil:
		// Pinned to this master: a Cluster client's own PubSub would pick
		// its node from the first channel only.
		c.ps = node.SSubscribe(context.Background())
	default:
		c.ps = s.client.Subscribe(context.Background())
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = c.ps.Close()
		return nil, ErrClosed
	}
	s.conns[addr] = c
	s.wg.Add(1)
	s.mu.Unlock()
	go s.receive(c)
	return c, nil
}

// connLost drops c: its watches go back to the control loop, and those
// that were live are resynced once subscribed again. kick: reconnect now
// (after a connection that worked failed) rather than on the next tick
// (after an attempt to connect failed).
func (s *redisStore) connLost(c *psConn, kick bool) {
	s.mu.Lock()
	if c.gone.Swap(true) {
		s.mu.Unlock()
		return
	}
	if s.conns[c.addr] == c {
		delete(s.conns, c.addr)
	}
	for name, w := range s.watches {
		if w.conn != c {
			continue
		}
		if w.live {
			w.lost = true
		}
		w.conn, w.live = nil, false
		s.dirty[name] = struct{}{}
	}
	s.mu.Unlock()
	if s.cluster != nil {
		// The master may have failed over.
		s.reload.Store(true)
	}
	_ = c.ps.Close()
	if kick {
		s.kickControl()
	}
}

// resubscribe marks for subscribing again, after resolving the master
// again, channels whose confirmation is overdue: the command may have
// failed (a MOVED reply) or been lost.
func (s *redisStore) resubscribe(now time.Time) {
	s.mu.Lock()
	for name, w := range s.watches {
		if w.conn != nil && !w.live && w.wanted && now.Sub(w.issuedAt) > resubscribeAfter {
			w.conn = nil
			s.dirty[name] = struct{}{}
			s.reload.Store(true)
		}
	}
	s.mu.Unlock()
}

// watchMaster drops the PUB/SUB connection of a Sentinel client when the
// master changed (its replication ID did). After a switchover the old
// master stays up, a replica-to-be that no longer receives notifications,
// until the sentinels reconfigure it and cut its clients, seconds later;
// meanwhile the client sends to the new master. Dropping the connection
// subscribes the channels on the new master and resyncs them at once.
func (s *redisStore) watchMaster() {
	if !s.sentinel {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	info, err := s.client.Info(ctx, "replication").Result()
	cancel()
	if err != nil {
		return
	}
	id := infoField(info, "master_replid")
	if id == "" || infoField(info, "role") != "master" {
		return
	}
	if s.masterID != "" && id != s.masterID {
		s.mu.Lock()
		conns := make([]*psConn, 0, len(s.conns))
		for _, c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for _, c := range conns {
			s.connLost(c, true)
		}
	}
	s.masterID = id
}

// infoField returns one field of an INFO reply ("" when absent).
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}

// keepAlive pings idle connections and drops those that stopped answering.
func (s *redisStore) keepAlive(now time.Time) {
	s.mu.Lock()
	conns := make([]*psConn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		last := time.Unix(0, c.lastRecv.Load())
		switch {
		case !c.pingSent.IsZero() && last.Before(c.pingSent) && now.Sub(c.pingSent) > pongTimeout:
			// A half-open connection: writes succeed, nothing comes back.
			s.connLost(c, true)
		case now.Sub(last) > keepAliveAfter && (c.pingSent.IsZero() || !last.Before(c.pingSent)):
			c.pingSent = now
			ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
			// A failed write breaks the connection: its receive goroutine
			// drops it.
			_ = c.ps.Ping(ctx)
			cancel()
		}
	}
}

// dropIdleConns closes Cluster connections that carry no channel any more
// (their master lost its slots, or the channels left).
func (s *redisStore) dropIdleConns(now time.Time) {
	if s.cluster == nil {
		return
	}
	s.mu.Lock()
	used := make(map[*psConn]bool, len(s.conns))
	for _, w := range s.watches {
		if w.conn != nil {
			used[w.conn] = true
		}
	}
	var idle []*psConn
	for _, c := range s.conns {
		if !used[c] && now.Sub(c.created) > keepWatchedEvery {
			idle = append(idle, c)
		}
	}
	s.mu.Unlock()
	for _, c := range idle {
		s.connLost(c, false)
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

// receive reads c until it fails or the store closes: it dispatches
// notifications to the hub and handles subscription replies.
func (s *redisStore) receive(c *psConn) {
	defer s.wg.Done()
	for {
		msg, err := c.ps.Receive(context.Background())
		if c.gone.Load() || s.isStopped() {
			return
		}
		if err != nil {
			var rerr redis.Error
			if errors.As(err, &rerr) {
				// A command was refused (MOVED after a slot moved,
				// CLUSTERDOWN, an ACL): its channel is not subscribed.
				s.refused(c)
				continue
			}
			// Reconnect at once if the connection had worked; after a
			// failed attempt, on the next tick.
			s.connLost(c, c.worked.Load())
			return
		}
		c.worked.Store(true)
		c.lastRecv.Store(time.Now().UnixNano())
		switch m := msg.(type) {
		case *redis.Message:
			s.notify(c, m)
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "ssubscribe":
				s.confirm(c, m.Channel)
			case "unsubscribe", "sunsubscribe":
				s.unsubscribed(c, m.Channel)
			}
		}
	}
}

func (s *redisStore) isStopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// notify dispatches one notification, if c carries its channel.
func (s *redisStore) notify(c *psConn, m *redis.Message) {
	s.mu.Lock()
	w := s.watches[m.Channel]
	ok := w != nil && w.conn == c
	s.mu.Unlock()
	if !ok {
		return
	}
	// A malformed notification is skipped: the next one shows a gap that
	// the hub fills from the stream.
	msg, err := parseNotification(w.channel, m.Payload)
	if err != nil {
		return
	}
	w.dmu.Lock()
	s.hub.dispatch(msg)
	w.dmu.Unlock()
}

// confirm handles a subscribe reply. A channel confirmed after it was lost
// is resynced: notifications may have been missed while it moved.
func (s *redisStore) confirm(c *psConn, name string) {
	s.mu.Lock()
	w := s.watches[name]
	if w == nil || w.conn != c || w.live {
		// A stale reply (the channel moved on, or was confirmed already).
		s.mu.Unlock()
		return
	}
	w.live = true
	if !w.ever {
		w.ever = true
		close(w.ready)
	}
	resync := w.lost && w.wanted
	w.lost = false
	if !w.wanted {
		s.markDirtyLocked(name)
	}
	s.mu.Unlock()
	if resync {
		w.dmu.Lock()
		s.resync(w.channel)
		w.dmu.Unlock()
	}
}

// unsubscribed handles an unsubscribe reply. For a live channel of c it
// can only come from the server: on a Cluster, its slot moved to another
// master. The channel is subscribed again where it now lives.
func (s *redisStore) unsubscribed(c *psConn, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.watches[name]
	if w == nil || w.conn != c || !w.live {
		return
	}
	w.conn, w.live, w.lost = nil, false, true
	s.reload.Store(true)
	s.markDirtyLocked(name)
}

// refused handles an error reply on c. Replies do not say which command
// failed; every channel of c still awaiting its confirmation is assigned
// again on the next tick, after the slot map is refreshed.
func (s *redisStore) refused(c *psConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, w := range s.watches {
		if w.conn == c && !w.live {
			w.conn = nil
			s.dirty[name] = struct{}{}
		}
	}
	s.reload.Store(true)
}

// resync makes the hub read what the channel received while notifications
// may have been lost. The hub cannot report a failed read, so Redis is
// probed first; if it cannot be read (still loading after a restart, say),
// the resync is retried later instead of waiting for the channel's next
// message to reveal the gap. The caller holds the watch's dmu.
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
	ws := make([]*watchState, 0, len(s.pending))
	for ch := range s.pending {
		if w := s.watches[s.base(ch)]; w != nil && w.wanted {
			ws = append(ws, w)
		}
	}
	clear(s.pending)
	s.anyPending.Store(false)
	s.mu.Unlock()
	for _, w := range ws {
		w.dmu.Lock()
		s.resync(w.channel)
		w.dmu.Unlock()
	}
}

// ping checks that the store answers: on a Cluster, every master.
func (s *redisStore) ping(ctx context.Context) error {
	var err error
	if s.cluster != nil {
		err = s.cluster.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			return m.Ping(ctx).Err()
		})
	} else {
		err = s.client.Ping(ctx).Err()
	}
	if err != nil {
		return fmt.Errorf("redis ping: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// close stops the PUB/SUB connections and their goroutines; the client
// stays open (its owner closes it).
func (s *redisStore) close() error {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		conns := make([]*psConn, 0, len(s.conns))
		for _, c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		close(s.stop)
		for _, c := range conns {
			c.gone.Store(true)
			_ = c.ps.Close()
		}
		s.wg.Wait()
	})
	return nil
}
