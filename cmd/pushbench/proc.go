package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The server's CPU time and resident memory come from /proc when its PID
// is known (given, spawned, or found as the owner of the listening socket),
// else from its Prometheus /metrics (process_cpu_seconds_total and
// process_resident_memory_bytes), when it has them.

// procSample is the server's CPU time and resident memory at one moment.
type procSample struct {
	at     time.Time
	cpu    float64 // seconds, user + system, all threads
	rss    int64   // bytes
	hwm    int64   // peak RSS in bytes, when the source knows it (else 0)
	source string
}

// procSource reads the server's figures.
type procSource interface {
	sample(ctx context.Context) (procSample, error)
	describe() string
}

// pidSource reads /proc/<pid>/stat and /proc/<pid>/status.
type pidSource struct {
	root  string // "/proc"
	pid   int
	ticks float64 // clock ticks per second
}

func newPIDSource(pid int) *pidSource {
	return &pidSource{root: "/proc", pid: pid, ticks: float64(clockTicks())}
}

func (s *pidSource) describe() string { return fmt.Sprintf("/proc/%d", s.pid) }

func (s *pidSource) sample(context.Context) (procSample, error) {
	dir := filepath.Join(s.root, strconv.Itoa(s.pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return procSample{}, err
	}
	utime, stime, err := parseStat(stat)
	if err != nil {
		return procSample{}, fmt.Errorf("%s/stat: %w", dir, err)
	}
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return procSample{}, err
	}
	rss, hwm, err := parseStatus(status)
	if err != nil {
		return procSample{}, fmt.Errorf("%s/status: %w", dir, err)
	}
	return procSample{
		at:     time.Now(),
		cpu:    float64(utime+stime) / s.ticks,
		rss:    rss,
		hwm:    hwm,
		source: "proc",
	}, nil
}

// parseStat returns utime and stime (clock ticks) from /proc/<pid>/stat.
// The command name (field 2) is in parentheses and may hold spaces and
// parentheses itself, so fields are counted after its last ')'.
func parseStat(b []byte) (utime, stime uint64, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	if utime, err = strconv.ParseUint(f[11], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("utime: %w", err)
	}
	if stime, err = strconv.ParseUint(f[12], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stime: %w", err)
	}
	return utime, stime, nil
}

// parseStatus returns VmRSS and VmHWM in bytes from /proc/<pid>/status.
func parseStatus(b []byte) (rss, hwm int64, err error) {
	found := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(value)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("%s: unexpected %q", key, value)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", key, err)
		}
		if key == "VmRSS" {
			rss, found = n<<10, true
		} else {
			hwm = n << 10
		}
	}
	if !found {
		return 0, 0, errors.New("no VmRSS (a kernel thread or a zombie?)")
	}
	return rss, hwm, nil
}

// clockTicks returns the kernel's USER_HZ, the unit of /proc/<pid>/stat
// times: AT_CLKTCK of the auxiliary vector, else 100 (every Linux
// architecture Go runs on).
func clockTicks() int64 {
	if b, err := os.ReadFile("/proc/self/auxv"); err == nil {
		if n, ok := auxvValue(b, 17 /* AT_CLKTCK */); ok && n > 0 {
			return int64(n)
		}
	}
	return 100
}

// auxvValue returns the value of key in an auxiliary vector of native
// 64-bit words.
func auxvValue(b []byte, key uint64) (uint64, bool) {
	for len(b) >= 16 {
		k, v := binary.NativeEndian.Uint64(b), binary.NativeEndian.Uint64(b[8:])
		if k == key {
			return v, true
		}
		if k == 0 {
			break
		}
		b = b[16:]
	}
	return 0, false
}

// listenInodes returns the inodes of the sockets in a /proc/net/tcp or
// tcp6 table that listen on port.
func listenInodes(table []byte, port int) []uint64 {
	var out []uint64
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		if len(f) < 10 || f[3] != "0A" { // TCP_LISTEN
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil || int(p) != port {
			continue
		}
		if inode, err := strconv.ParseUint(f[9], 10, 64); err == nil && inode != 0 {
			out = append(out, inode)
		}
	}
	return out
}

// findListenerPID returns the PID of the process that owns a socket
// listening on port, looking in /proc/net/tcp{,6} and /proc/*/fd. It sees
// only processes whose fds it may read (the same user, or root).
func findListenerPID(root string, port int) (int, error) {
	want := make(map[string]bool)
	for _, t := range []string{"net/tcp", "net/tcp6"} {
		b, err := os.ReadFile(filepath.Join(root, t))
		if err != nil {
			continue
		}
		for _, inode := range listenInodes(b, port) {
			want["socket:["+strconv.FormatUint(inode, 10)+"]"] = true
		}
	}
	if len(want) == 0 {
		return 0, fmt.Errorf("no socket listens on port %d", port)
	}
	procs, err := os.ReadDir(root)
	if err != nil {
		return 0, err
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fdDir := filepath.Join(root, p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if link, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && want[link] {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("a socket listens on port %d, but its process is not readable here", port)
}

// metricsSource scrapes a Prometheus text exposition.
type metricsSource struct {
	url    string
	client *http.Client
}

func (s *metricsSource) describe() string { return s.url }

func (s *metricsSource) sample(ctx context.Context) (procSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return procSample{}, err
	}
	res, err := s.client.Do(req)
	if err != nil {
		return procSample{}, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return procSample{}, fmt.Errorf("%s: status %d", s.url, res.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return procSample{}, err
	}
	cpu, rss, ok := parseMetrics(b)
	if !ok {
		return procSample{}, fmt.Errorf("%s has no process_cpu_seconds_total and process_resident_memory_bytes", s.url)
	}
	return procSample{at: time.Now(), cpu: cpu, rss: int64(rss), source: "metrics"}, nil
}

// parseMetrics returns process_cpu_seconds_total and
// process_resident_memory_bytes from a Prometheus text exposition; ok
// says both were there.
func parseMetrics(b []byte) (cpu, rss float64, ok bool) {
	var haveCPU, haveRSS bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(name, '{'); i >= 0 {
			// Labels may hold spaces: take what follows the closing brace.
			name = line[:strings.IndexByte(line, '{')]
			j := strings.LastIndexByte(line, '}')
			if j < 0 {
				continue
			}
			rest = line[j+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		switch name {
		case "process_cpu_seconds_total":
			cpu, haveCPU = v, true
		case "process_resident_memory_bytes":
			rss, haveRSS = v, true
		}
	}
	return cpu, rss, haveCPU && haveRSS
}

// sampler samples a source periodically and keeps the peak RSS.
type sampler struct {
	src  procSource
	mu   sync.Mutex
	peak int64
	last procSample
	err  error
}

// watch samples every interval until ctx is done.
func (s *sampler) watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = s.take(ctx)
		}
	}
}

// take samples now.
func (s *sampler) take(ctx context.Context) (procSample, error) {
	smp, err := s.src.sample(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.err = err
		return smp, err
	}
	s.last = smp
	s.peak = max(s.peak, smp.rss)
	return smp, nil
}

func (s *sampler) peakRSS() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// portOf returns the port of a host:port.
func portOf(hostport string) (int, error) {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(p)
}
