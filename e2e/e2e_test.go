// Package e2e runs pushgate as real processes: several nodes on one Redis,
// killed and restarted under load, with clients on every transport.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/testbuild"
)

// binary is the pushgate binary built once for the package, with the race
// detector when the tests run with it (startNode then fails a test whose
// node reported a race).
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pushgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "pushgate")
	args := append(append([]string{"build"}, testbuild.BuildFlags()...), "-o", binary, "../cmd/pushgate")
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build pushgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	apiKey    = "e2e-key"
	jwtSecret = "e2e-secret-0123456789abcdef-0123456789"
)

// node is one pushgate process.
type node struct {
	t    *testing.T
	addr string
	args []string
	log  *os.File

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{}
}

func (n *node) url() string { return "http://" + n.addr }

// startNode starts pushgate on a free loopback port with extra args.
func startNode(t *testing.T, name string, extra ...string) *node {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	log, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, addr: addr, log: log, args: append([]string{
		"--addr", addr, "--api-key", "e2e:" + apiKey, "--jwt-secret", jwtSecret, "--log-level", "warn",
		// Every client here comes from 127.0.0.1.
		"--max-connections-per-ip", "off", "--connect-rate-per-ip", "off", "--send-rate-per-key", "off",
	}, extra...)}
	n.start()
	t.Cleanup(func() {
		n.kill(syscall.SIGKILL)
		b, _ := os.ReadFile(log.Name())
		if report := testbuild.RaceReport(string(b)); report != "" {
			t.Errorf("%s: the race detector reported:\n%s", name, report)
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, tail(b, 4000))
		}
		log.Close()
	})
	return n
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (n *node) start() {
	n.t.Helper()
	cmd := exec.Command(binary, n.args...)
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	exit := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exit) }()
	n.mu.Lock()
	n.cmd, n.exit = cmd, exit
	n.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(n.url() + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exit:
			n.t.Fatalf("pushgate on %s exited at start", n.addr)
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("pushgate on %s not ready: %v", n.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends sig and waits for the process to end.
func (n *node) kill(sig syscall.Signal) {
	n.mu.Lock()
	cmd, exit := n.cmd, n.exit
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exit:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exit
	}
}

// sendRetrying sends through the nodes, starting at node first, until one
// acknowledges; the idempotency key makes a retry after an unknown outcome
// (a node killed mid-request) append at most once.
func sendRetrying(ctx context.Context, nodes []*node, first int, channel string, data any, key string) (string, error) {
	var last error
	for attempt := 0; ctx.Err() == nil; attempt++ {
		n := nodes[(first+attempt)%len(nodes)]
		id, err := sender.Send(ctx, n.url(), channel, data, key)
		if err == nil {
			return id, nil
		}
		last = err
		time.Sleep(time.Duration(min(attempt, 10)) * 20 * time.Millisecond)
	}
	return "", fmt.Errorf("send %s %s: %w", channel, key, last)
}

func itoa(i int) string { return strconv.Itoa(i) }
