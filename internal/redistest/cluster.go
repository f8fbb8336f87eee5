package redistest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterTimeout bounds how long a cluster may take to form.
const clusterTimeout = 30 * time.Second

// Cluster is a Redis Cluster of masters only, each a Server of its own,
// owned by a test.
type Cluster struct {
	// Masters are the cluster's nodes, in the order their slot ranges
	// were assigned.
	Masters []*Server
}

// StartCluster starts masters redis-server processes with cluster mode on,
// on free ports in temporary directories, joins them into one cluster with
// redis-cli --cluster create (no replicas, slots spread evenly) and waits
// until every node reports cluster_state:ok. The test's cleanup kills every
// node. Redis Cluster needs at least 3 masters.
//
// The nodes run without an append-only file (a cluster test does not
// restart them); opts add redis-server arguments to every node.
func StartCluster(t testing.TB, masters int, opts ...Option) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redistest: StartCluster: %d masters, Redis Cluster needs at least 3", masters)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redistest: redis-cli is not on PATH (%v): it is installed with redis-server (apt-get install redis-server, or redis-tools)", err)
	}
	c := &Cluster{}
	nodeOpts := append([]Option{func(c *config) { c.clusterBus = true }, WithArgs(
		"--appendonly", "no",
		"--cluster-node-timeout", "3000",
	)}, opts...)
	for range masters {
		c.Masters = append(c.Masters, Start(t, nodeOpts...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.waitOK(ctx); err != nil {
		t.Fatalf("redistest: cluster did not form: %v\nredis-cli said:\n%s", err, out)
	}
	return c
}

// Addrs returns the nodes' host:port addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Masters))
	for i, m := range c.Masters {
		out[i] = m.Addr()
	}
	return out
}

// URL returns a redis+cluster:// URL naming every node as a seed.
func (c *Cluster) URL() string { return "redis+cluster://" + strings.Join(c.Addrs(), ",") }

// Client returns a new cluster client, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// FlushAll deletes every key on every master.
func (c *Cluster) FlushAll(t testing.TB) {
	t.Helper()
	for _, m := range c.Masters {
		m.FlushAll(t)
	}
}

// MasterOf returns the master serving key's hash slot.
func (c *Cluster) MasterOf(t testing.TB, key string) *Server {
	t.Helper()
	nc := redis.NewClient(&redis.Options{Addr: c.Masters[0].Addr()})
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	slot, err := nc.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatalf("redistest: CLUSTER KEYSLOT %s: %v", key, err)
	}
	slots, err := nc.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatalf("redistest: CLUSTER SLOTS: %v", err)
	}
	for _, r := range slots {
		if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 {
			for _, m := range c.Masters {
				if m.Addr() == r.Nodes[0].Addr {
					return m
				}
			}
		}
	}
	t.Fatalf("redistest: no master serves slot %d of %s", slot, key)
	return nil
}

// waitOK waits until every node reports cluster_state:ok and sees every
// master in its slot map, so that a client may start from any of them.
func (c *Cluster) waitOK(ctx context.Context) error {
	var lastErr error
	for {
		lastErr = c.check(ctx)
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *Cluster) check(ctx context.Context) error {
	for _, m := range c.Masters {
		nc := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1})
		info, err := nc.ClusterInfo(ctx).Result()
		if err == nil && !strings.Contains(info, "cluster_state:ok") {
			err = fmt.Errorf("%s: cluster_state is not ok yet", m.Addr())
		}
		var slots []redis.ClusterSlot
		if err == nil {
			slots, err = nc.ClusterSlots(ctx).Result()
		}
		_ = nc.Close()
		if err != nil {
			return err
		}
		owners := map[string]bool{}
		covered := 0
		for _, r := range slots {
			covered += r.End - r.Start + 1
			if len(r.Nodes) > 0 {
				owners[r.Nodes[0].Addr] = true
			}
		}
		if covered != 16384 || len(owners) != len(c.Masters) {
			return fmt.Errorf("%s: sees %d slots served by %d masters", m.Addr(), covered, len(owners))
		}
	}
	return nil
}

// MigrateSlot moves the hash slot of key, with its keys, to the master dst,
// as redis-cli --cluster reshard does: IMPORTING on dst, MIGRATING on the
// owner, MIGRATE of every key, then SETSLOT NODE on every master.
func (c *Cluster) MigrateSlot(t testing.TB, key string, dst *Server) {
	t.Helper()
	src := c.MasterOf(t, key)
	if src == dst {
		t.Fatalf("redistest: MigrateSlot: %s already serves %s", dst.Addr(), key)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	sc, dc := src.Client(t), dst.Client(t)
	slot, err := sc.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatalf("redistest: CLUSTER KEYSLOT: %v", err)
	}
	srcID, err1 := sc.ClusterMyID(ctx).Result()
	dstID, err2 := dc.ClusterMyID(ctx).Result()
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("redistest: CLUSTER MYID: %v", err)
	}
	do := func(c *redis.Client, args ...any) {
		t.Helper()
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("redistest: %v: %v", args, err)
		}
	}
	do(dc, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID)
	do(sc, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID)
	for {
		keys, err := sc.ClusterGetKeysInSlot(ctx, int(slot), 100).Result()
		if err != nil {
			t.Fatalf("redistest: CLUSTER GETKEYSINSLOT: %v", err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", "127.0.0.1", dst.Port(), "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		do(sc, args...)
	}
	// The new owner first, then the old one (which then drops the slot's
	// shard channels), then the others.
	do(dc, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	do(sc, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	for _, m := range c.Masters {
		if m != src && m != dst {
			do(m.Client(t), "CLUSTER", "SETSLOT", slot, "NODE", dstID)
		}
	}
	if err := c.waitOK(ctx); err != nil {
		t.Fatalf("redistest: cluster after moving slot %d: %v", slot, err)
	}
}
