package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// -spawn builds pushgate from the module pushbench runs in (or takes
// -spawn-bin), starts it on a free loopback port with the benchmark's key
// and secret, measures it by its PID and stops it at the end.

type spawned struct {
	cmd     *exec.Cmd
	addr    string
	dir     string // temporary: the binary and the log
	logPath string
	exited  chan struct{}
	waitErr error
}

// spawnServer starts a pushgate and waits until it answers /healthz.
func spawnServer(ctx context.Context, cfg *config, logf func(string, ...any)) (*spawned, error) {
	dir, err := os.MkdirTemp("", "pushbench-")
	if err != nil {
		return nil, err
	}
	bin := cfg.spawnBin
	if bin == "" {
		bin = filepath.Join(dir, "pushgate")
		if runtime.GOOS == "windows" {
			bin += ".exe" // else Windows does not run it
		}
		logf("building pushgate")
		if err := buildServer(ctx, bin); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	// A free port can be taken between the probe and the server's listen:
	// try again then.
	for attempt := 1; ; attempt++ {
		s, err := startServer(ctx, cfg, bin, dir)
		if err == nil {
			logf("pushgate pid %d on %s", s.cmd.Process.Pid, s.addr)
			return s, nil
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
}

// buildServer runs go build ./cmd/pushgate in the module that holds the
// working directory, with extra build flags (the tests add -race).
func buildServer(ctx context.Context, out string, flags ...string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("-spawn needs the go command to build pushgate (or pass -spawn-bin): %w", err)
	}
	gomod, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return errors.New("-spawn builds ./cmd/pushgate of the module in the working directory: run it inside the pushgate module, or pass -spawn-bin")
	}
	args := append(append([]string{"build"}, flags...), "-o", out, "./cmd/pushgate")
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = filepath.Dir(mod)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/pushgate in %s: %w\n%s", cmd.Dir, err, stderr.Bytes())
	}
	return nil
}

func startServer(ctx context.Context, cfg *config, bin, dir string) (*spawned, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{
		"--addr", addr,
		"--api-key", "bench:" + cfg.key,
		"--jwt-secret", cfg.jwtSecret,
		"--allow-anonymous",
		// The load comes from a few loopback addresses: the per-client
		// abuse limits would measure themselves, not the server.
		"--max-connections-per-ip", "off", "--connect-rate-per-ip", "off",
		"--max-connections-per-subject", "off", "--send-rate-per-key", "off",
		"--log-level", "warn",
	}
	if cfg.redisURL != "" {
		args = append(args, "--redis-url", cfg.redisURL)
	}
	args = append(args, cfg.spawnArgs...)
	logPath := filepath.Join(dir, "pushgate.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	// Not CommandContext: the server is stopped by stop, gracefully, also
	// when ctx ended early (SIGINT), after its figures were read.
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = serverProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &spawned{cmd: cmd, addr: addr, dir: dir, logPath: logPath, exited: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitHealthy(ctx, 20*time.Second); err != nil {
		s.kill()
		return nil, fmt.Errorf("%w\n%s", err, s.logTail())
	}
	return s, nil
}

// waitHealthy polls /healthz until it answers 200.
func (s *spawned) waitHealthy(ctx context.Context, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(timeout)
	for {
		res, err := client.Get("http://" + s.addr + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("pushgate exited: %v", s.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pushgate did not answer /healthz on %s within %v", s.addr, timeout)
		}
	}
}

// stop ends the server and removes its temporary directory.
func (s *spawned) stop() {
	if s == nil {
		return
	}
	s.kill()
	_ = os.RemoveAll(s.dir)
}

// kill ends the server: SIGTERM, SIGKILL after 10 s (at once where
// SIGTERM cannot be sent: Windows).
func (s *spawned) kill() {
	select {
	case <-s.exited:
	default:
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			_ = s.cmd.Process.Kill()
		}
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
}

// logTail returns the end of the server's log.
func (s *spawned) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "pushgate log:\n" + string(b)
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
