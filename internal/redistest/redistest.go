// Package redistest runs a private redis-server for a test: on a free
// loopback port, in the test's temporary directory, with an append-only file
// synced on every write so that a Stop and Start keep the data. StartCluster
// runs a Redis Cluster of such servers, StartSentinel a master, a replica
// and three sentinels.
//
// It never touches a shared Redis: every Server is a process of its own that
// the test's cleanup kills.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long a redis-server may take to answer PING.
const startTimeout = 15 * time.Second

// stopTimeout bounds a graceful shutdown before the process is killed.
const stopTimeout = 10 * time.Second

// Option configures a Server.
type Option func(*config)

type config struct {
	args []string
	// clusterBus: the server is a cluster node; it gets a free port of its
	// own for the cluster bus (--cluster-port) instead of port+10000,
	// which may be taken or beyond 65535.
	clusterBus bool
	// sentinel, when set, runs the process as a sentinel with the
	// configuration it returns for the given port.
	sentinel func(port int) string
}

// WithArgs adds redis-server arguments (for example "--maxmemory", "10mb").
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// Server is one redis-server process owned by a test.
type Server struct {
	bin     string
	dir     string
	port    int
	busPort int
	cfg     config

	mu  sync.Mutex
	cmd *exec.Cmd
	// exited is closed when cmd has been waited for.
	exited chan struct{}
	log    string
	starts int
}

// Start starts a redis-server for t and registers a cleanup that kills it.
// redis-server must be on PATH; the test fails (it is not skipped) when it
// is not.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: redis-server is not on PATH (%v): install redis-server to run the Redis tests (the Makefile's test target does; by hand: apt-get install redis-server)", err)
	}
	var c config
	for _, o := range opts {
		o(&c)
	}
	s := &Server{bin: bin, dir: t.TempDir(), cfg: c}
	// The cleanup runs before TempDir's own cleanup (cleanups run last in,
	// first out), so the process is gone before its directory is removed.
	t.Cleanup(s.kill)
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, err = freePort(); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		if c.clusterBus {
			if s.busPort, err = freePort(); err != nil {
				t.Fatalf("redistest: %v", err)
			}
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
		// Most likely another process took the port between freePort and
		// the server's bind: try another one.
	}
	t.Fatalf("redistest: %v", lastErr)
	return nil
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL returns a redis:// URL for database 0 of the server.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Dir returns the server's data directory.
func (s *Server) Dir() string { return s.dir }

// Client returns a new client of the server, closed when the test ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// FlushAll deletes every key of the server.
func (s *Server) FlushAll(t testing.TB) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatalf("redistest: FLUSHALL on %s: %v", s.Addr(), err)
	}
}

// Stop shuts the server down gracefully (SIGTERM: the append-only file is
// flushed) and waits for the process to exit.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		t.Fatalf("redistest: Stop: server %s is not running", s.Addr())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
		t.Fatalf("redistest: redis-server %s did not stop within %v; log:\n%s", s.Addr(), stopTimeout, s.readLog())
	}
}

// Kill ends the server abruptly (SIGKILL), as a crash would: whatever
// was not yet written to disk or to replicas is lost.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		t.Fatalf("redistest: Kill: server %s is not running", s.Addr())
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Port returns the server's TCP port.
func (s *Server) Port() int { return s.port }

// Start restarts a stopped server on the same port and directory; the data
// written before Stop is loaded from the append-only file.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatalf("redistest: restart: %v", err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("server %s is already running", s.Addr())
	}
	s.starts++
	s.log = filepath.Join(s.dir, fmt.Sprintf("redis-%d.log", s.starts))
	logFile, err := os.Create(s.log)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	var args []string
	if s.cfg.sentinel != nil {
		// A sentinel rewrites its configuration file: it must be a file of
		// its own, kept across restarts.
		conf := filepath.Join(s.dir, "sentinel.conf")
		if _, err := os.Stat(conf); err != nil {
			if err := os.WriteFile(conf, []byte(s.cfg.sentinel(s.port)), 0o600); err != nil {
				return err
			}
		}
		args = []string{conf, "--sentinel"}
	}
	args = append(args,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--daemonize", "no",
		"--loglevel", "notice",
	)
	if s.cfg.sentinel == nil {
		args = append(args,
			"--save", "",
			"--appendonly", "yes",
			"--appendfsync", "always",
		)
	}
	if s.cfg.clusterBus {
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(s.busPort),
		)
	}
	args = append(args, s.cfg.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	if err := waitReady(s.Addr(), cmd.Process.Pid, exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("redis-server on %s: %w; log:\n%s", s.Addr(), err, s.readLogLocked())
	}
	s.cmd, s.exited = cmd, exited
	return nil
}

// kill ends the process at the end of the test.
func (s *Server) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

func (s *Server) readLog() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readLogLocked()
}

func (s *Server) readLogLocked() string {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// waitReady waits until the server answers PING (not LOADING) and checks
// that the answer comes from pid, not from another server on the port.
func waitReady(addr string, pid int, exited <-chan struct{}) error {
	c := redis.NewClient(&redis.Options{
		Addr:        addr,
		MaxRetries:  -1,
		PoolSize:    1,
		DialTimeout: time.Second,
		ReadTimeout: time.Second,
	})
	defer c.Close()
	deadline := time.Now().Add(startTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("redis-server exited")
		default:
		}
		if lastErr = checkServer(c, pid); lastErr == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("not ready within %v: %w", startTimeout, lastErr)
}

func checkServer(c *redis.Client, pid int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		return err
	}
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			if v != strconv.Itoa(pid) {
				return fmt.Errorf("the port is served by another redis-server (pid %s)", v)
			}
			return nil
		}
	}
	return errors.New("INFO has no process_id")
}

// freePort returns a loopback TCP port that nothing listens on right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
