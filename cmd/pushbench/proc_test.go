package main

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name         string
		in           string
		utime, stime uint64
		ok           bool
	}{
		{
			name:  "plain",
			in:    "1234 (pushgate) S 1 1234 1234 0 -1 4194560 2315 0 0 0 153 47 0 0 20 0 9 0 123456 1302528000 4862 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0\n",
			utime: 153, stime: 47, ok: true,
		},
		{
			name:  "a command name with spaces and parentheses",
			in:    "42 (a) b (c)) R 1 42 42 0 -1 0 0 0 0 0 7 8 0 0 20 0 1 0 1 1 1\n",
			utime: 7, stime: 8, ok: true,
		},
		{name: "no command name", in: "42 pushgate R 1"},
		{name: "too short", in: "42 (x) R 1 2 3"},
		{name: "not numbers", in: "42 (x) R 1 42 42 0 -1 0 0 0 0 0 a b 0 0 20 0 1 0 1 1 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, s, err := parseStat([]byte(tc.in))
			if (err == nil) != tc.ok || u != tc.utime || s != tc.stime {
				t.Errorf("= %d, %d, %v; want %d, %d, ok %v", u, s, err, tc.utime, tc.stime, tc.ok)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	in := "Name:\tpushgate\nVmPeak:\t 1302528 kB\nVmHWM:\t   40960 kB\nVmRSS:\t   19448 kB\nThreads:\t9\n"
	rss, hwm, err := parseStatus([]byte(in))
	if err != nil || rss != 19448<<10 || hwm != 40960<<10 {
		t.Errorf("= %d, %d, %v", rss, hwm, err)
	}
	if _, _, err := parseStatus([]byte("Name:\tkthreadd\nState:\tS\n")); err == nil {
		t.Error("a status without VmRSS parsed")
	}
	if _, _, err := parseStatus([]byte("VmRSS:\t 12 MB\n")); err == nil {
		t.Error("an unexpected unit parsed")
	}
}

func TestListenInodes(t *testing.T) {
	// Port 8080 is 1F90: listening (0A) on 127.0.0.1 and on ::, plus an
	// established connection to it and a listener on another port.
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0000000000000000 20 4 30 10 -1
`
	tcp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 444 1 0000000000000000 100 0 0 10 0
`
	if got := listenInodes([]byte(tcp), 8080); len(got) != 1 || got[0] != 111 {
		t.Errorf("tcp: %v", got)
	}
	if got := listenInodes([]byte(tcp6), 8080); len(got) != 1 || got[0] != 444 {
		t.Errorf("tcp6: %v", got)
	}
	if got := listenInodes([]byte(tcp), 9999); len(got) != 0 {
		t.Errorf("port 9999: %v", got)
	}
}

func TestFindListenerPIDFindsThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	pid, err := findListenerPID("/proc", port)
	if err != nil || pid != os.Getpid() {
		t.Fatalf("= %d, %v; want %d", pid, err, os.Getpid())
	}
	ln.Close()
	if _, err := findListenerPID("/proc", port); err == nil {
		t.Error("found a listener on a closed port")
	}
}

func TestPIDSourceReadsThisProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	src := newPIDSource(os.Getpid())
	for i := 0; i < 3_000_000; i++ { // some CPU time
		_ = strings.Repeat("x", i%7)
	}
	s, err := src.sample(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.cpu <= 0 || s.rss < 1<<20 || s.source != "proc" {
		t.Errorf("sample %+v", s)
	}
	if _, err := newPIDSource(1 << 30).sample(context.Background()); err == nil {
		t.Error("a PID that does not exist sampled")
	}
	if ct := clockTicks(); ct < 1 || ct > 10000 {
		t.Errorf("clock ticks %d", ct)
	}
}

func TestPIDSourceFixture(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "77")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("stat", "77 (pushgate) S 1 77 77 0 -1 0 0 0 0 0 250 50 0 0 20 0 9 0 1 1 1\n")
	write("status", "VmHWM:\t 2048 kB\nVmRSS:\t 1024 kB\n")
	s, err := (&pidSource{root: root, pid: 77, ticks: 100}).sample(context.Background())
	if err != nil || s.cpu != 3 || s.rss != 1<<20 || s.hwm != 2<<20 {
		t.Errorf("= %+v, %v", s, err)
	}
}

func TestAuxvValue(t *testing.T) {
	var b []byte
	for _, kv := range [][2]uint64{{6, 4096}, {17, 250}, {0, 0}} {
		b = binary.NativeEndian.AppendUint64(b, kv[0])
		b = binary.NativeEndian.AppendUint64(b, kv[1])
	}
	if v, ok := auxvValue(b, 17); !ok || v != 250 {
		t.Errorf("AT_CLKTCK = %d, %v", v, ok)
	}
	if _, ok := auxvValue(b, 99); ok {
		t.Error("found a key that is not there")
	}
}

func TestMetricsSource(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "process_cpu_seconds_total 1.5\nprocess_resident_memory_bytes 1048576\n")
	}))
	defer ts.Close()
	src := &metricsSource{url: ts.URL + "/metrics", client: ts.Client()}
	s, err := src.sample(context.Background())
	if err != nil || s.cpu != 1.5 || s.rss != 1<<20 || s.source != "metrics" {
		t.Errorf("= %+v, %v", s, err)
	}
	src.url = ts.URL + "/nothing"
	if _, err := src.sample(context.Background()); err == nil {
		t.Error("a 404 sampled")
	}
}

func TestParseMetrics(t *testing.T) {
	in := `# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.34
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 4.5056e+07
process_resident_memory_bytes_total 1
go_goroutines{instance="a b"} 1012
pushgate_deliveries_total{transport="sse"} 99 1764150000000
`
	cpu, rss, ok := parseMetrics([]byte(in))
	if !ok || cpu != 12.34 || rss != 45056000 {
		t.Errorf("= %v, %v, %v", cpu, rss, ok)
	}
	if _, _, ok := parseMetrics([]byte("go_goroutines 3\n")); ok {
		t.Error("metrics without process figures parsed")
	}
}
