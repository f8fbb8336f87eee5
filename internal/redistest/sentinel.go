package redistest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// sentinelTimeout bounds how long sentinels may take to agree on a topology.
const sentinelTimeout = 30 * time.Second

// Sentinel is a master, one replica and three sentinels (quorum 2)
// monitoring them, every one a process owned by a test.
type Sentinel struct {
	// MasterName is the name the sentinels monitor the master under.
	MasterName string
	// Master is the current master, Replica its replica: Failover swaps
	// them.
	Master, Replica *Server
	Sentinels       []*Server
}

// StartSentinel starts a master, a replica of it and three sentinels
// (redis-server --sentinel, with a generated configuration: quorum 2,
// down-after 1s) on free ports, and waits until every sentinel knows the
// replica and the other sentinels, and the replica is in sync. The test's
// cleanup kills every process. opts add redis-server arguments to the
// master and the replica.
func StartSentinel(t testing.TB, opts ...Option) *Sentinel {
	t.Helper()
	s := &Sentinel{MasterName: "pushgate"}
	// A full resync starts at once instead of waiting 5 s for more replicas.
	opts = append([]Option{WithArgs("--repl-diskless-sync-delay", "0")}, opts...)
	s.Master = Start(t, opts...)
	s.Replica = Start(t, append([]Option{WithArgs("--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port()))}, opts...)...)
	conf := func(port int) string {
		return fmt.Sprintf(`sentinel monitor %[1]s 127.0.0.1 %[2]d 2
sentinel down-after-milliseconds %[1]s 1000
sentinel failover-timeout %[1]s 10000
sentinel parallel-syncs %[1]s 1
`, s.MasterName, s.Master.Port())
	}
	for range 3 {
		s.Sentinels = append(s.Sentinels, Start(t, func(c *config) { c.sentinel = conf }))
	}
	ctx, cancel := context.WithTimeout(context.Background(), sentinelTimeout)
	defer cancel()
	err := poll(ctx, func() error {
		for _, sn := range s.Sentinels {
			c := s.sentinelClient(sn)
			m, err := c.Master(ctx, s.MasterName).Result()
			_ = c.Close()
			if err != nil {
				return err
			}
			if m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" {
				return fmt.Errorf("sentinel %s sees %s replicas and %s other sentinels", sn.Addr(), m["num-slaves"], m["num-other-sentinels"])
			}
		}
		return s.replicated(ctx)
	})
	if err != nil {
		t.Fatalf("redistest: sentinels not ready: %v", err)
	}
	return s
}

// Addrs returns the sentinels' addresses.
func (s *Sentinel) Addrs() []string {
	out := make([]string, len(s.Sentinels))
	for i, sn := range s.Sentinels {
		out[i] = sn.Addr()
	}
	return out
}

// URL returns a redis-sentinel:// URL naming every sentinel and the master.
func (s *Sentinel) URL() string {
	return "redis-sentinel://" + strings.Join(s.Addrs(), ",") + "/" + s.MasterName
}

// sentinelClient returns a client of one sentinel; the caller closes it.
func (s *Sentinel) sentinelClient(sn *Server) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: sn.Addr(), MaxRetries: -1})
}

// WaitReplicated waits until the replica has everything the master wrote.
func (s *Sentinel) WaitReplicated(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sentinelTimeout)
	defer cancel()
	if err := poll(ctx, func() error { return s.replicated(ctx) }); err != nil {
		t.Fatalf("redistest: replica not in sync: %v", err)
	}
}

func (s *Sentinel) replicated(ctx context.Context) error {
	mo, err := replInfo(ctx, s.Master, "master_repl_offset")
	if err != nil {
		return err
	}
	status, err := replInfo(ctx, s.Replica, "master_link_status")
	if err != nil {
		return err
	}
	ro, err := replInfo(ctx, s.Replica, "master_repl_offset")
	if err != nil {
		return err
	}
	if status != "up" || ro != mo {
		return fmt.Errorf("replica link %s at offset %s, master at %s", status, ro, mo)
	}
	return nil
}

// DetachReplica cuts replication without telling anyone: the master keeps
// accepting (and acknowledging) writes that the replica never receives, as
// when a replica lags or its link is down when the master fails. The
// replica keeps trying to reconnect and fails (it presents a password the
// master does not expect).
func (s *Sentinel) DetachReplica(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sentinelTimeout)
	defer cancel()
	rc := s.Replica.Client(t)
	if err := rc.ConfigSet(ctx, "masterauth", "not-the-password").Err(); err != nil {
		t.Fatalf("redistest: CONFIG SET masterauth on the replica: %v", err)
	}
	if err := rc.ClientKillByFilter(ctx, "TYPE", "master").Err(); err != nil {
		t.Fatalf("redistest: CLIENT KILL TYPE master on the replica: %v", err)
	}
	err := poll(ctx, func() error {
		n, err := replInfo(ctx, s.Master, "connected_slaves")
		if err == nil && n != "0" {
			err = fmt.Errorf("the master still has %s replicas", n)
		}
		return err
	})
	if err != nil {
		t.Fatalf("redistest: DetachReplica: %v", err)
	}
}

// Failover makes the sentinels promote the replica (SENTINEL FAILOVER, as
// an operator or an automatic failover would), waits until every sentinel
// names it as the master and it is one, and swaps Master and Replica. The
// old master, if it runs, is turned into a replica by the sentinels later.
func (s *Sentinel) Failover(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sentinelTimeout)
	defer cancel()
	sc := s.sentinelClient(s.Sentinels[0])
	defer sc.Close()
	err := poll(ctx, func() error { return sc.Failover(ctx, s.MasterName).Err() })
	if err != nil {
		t.Fatalf("redistest: SENTINEL FAILOVER: %v", err)
	}
	want := s.Replica.Addr()
	err = poll(ctx, func() error {
		for _, sn := range s.Sentinels {
			c := s.sentinelClient(sn)
			addr, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
			_ = c.Close()
			if err != nil {
				return err
			}
			if got := net.JoinHostPort(addr[0], addr[1]); got != want {
				return fmt.Errorf("sentinel %s names %s as the master, want %s", sn.Addr(), got, want)
			}
		}
		role, err := replInfo(ctx, s.Replica, "role")
		if err == nil && role != "master" {
			err = fmt.Errorf("the promoted replica's role is %s", role)
		}
		return err
	})
	if err != nil {
		t.Fatalf("redistest: failover did not complete: %v", err)
	}
	s.Master, s.Replica = s.Replica, s.Master
}

// Rejoin starts Replica again if it is stopped (after a Kill of the old
// master and a Failover) and makes it a replica of the current master at
// once, as the sentinels would after a while, then waits until it is in
// sync.
func (s *Sentinel) Rejoin(t testing.TB) {
	t.Helper()
	s.Replica.mu.Lock()
	running := s.Replica.cmd != nil
	s.Replica.mu.Unlock()
	if !running {
		s.Replica.Start(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sentinelTimeout)
	defer cancel()
	rc := s.Replica.Client(t)
	if err := rc.ReplicaOf(ctx, "127.0.0.1", strconv.Itoa(s.Master.Port())).Err(); err != nil {
		t.Fatalf("redistest: REPLICAOF on %s: %v", s.Replica.Addr(), err)
	}
	s.WaitReplicated(t)
}

// replInfo returns one field of a server's INFO replication.
func replInfo(ctx context.Context, s *Server, field string) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s: INFO replication has no %s", s.Addr(), field)
}

// poll calls f until it succeeds or ctx ends.
func poll(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
