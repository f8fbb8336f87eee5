package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestVersionFlag: --version prints one line with the version, commit and
// Go version to stdout and exits 0 (run returns nil) without starting a
// server, whatever else is on the command line; main.version (-ldflags -X)
// wins over the module version.
func TestVersionFlag(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"--addr", "127.0.0.1:1", "--version"}} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, func(string) string { return "" }, &stdout, &stderr); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		out := stdout.String()
		want := readBuild(version).String() + "\n"
		if out != want || !strings.HasPrefix(out, "pushgate ") || !strings.Contains(out, runtime.Version()) || stderr.Len() != 0 {
			t.Errorf("%v: stdout %q stderr %q; want %q", args, out, stderr.String(), want)
		}
	}
	if f := readBuild("v9.8.7"); f.Version != "v9.8.7" || f.GoVersion == "" || f.Commit == "" {
		t.Errorf("readBuild with -X main.version: %+v", f)
	}
	if f := readBuild(""); f.Version == "" || f.Version == "v9.8.7" {
		t.Errorf("readBuild without -X: %+v", f)
	}
}

// TestBuildInfoServed: the start-up line and /metrics carry the build facts.
func TestBuildInfoServed(t *testing.T) {
	p := start(t)
	f := readBuild(version)
	if !strings.Contains(p.log.String(), fmt.Sprintf(`"version":%q,"commit":%q,"go":%q`, f.Version, f.Commit, f.GoVersion)) {
		t.Errorf("start-up log without the build facts %+v:\n%s", f, p.log)
	}
	status, body := p.get(t, "/metrics", "")
	series := fmt.Sprintf(`pushgate_build_info{commit=%q,goversion=%q,version=%q}`, f.Commit, f.GoVersion, f.Version)
	if status != http.StatusOK || metric(body, series) != 1 {
		t.Errorf("/metrics %d: no %s 1", status, series)
	}
}

// TestHealthcheck: `pushgate healthcheck` exits 0 (nil) against a serving
// pushgate, with the port from --addr or PUSHGATE_ADDR, and 1 (an error)
// when nothing listens or /healthz is not 200.
func TestHealthcheck(t *testing.T) {
	p := start(t)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(p.url, "http://"))
	noEnv := func(string) string { return "" }
	check := func(args []string, getenv func(string) string) error {
		return run(context.Background(), append([]string{"healthcheck"}, args...), getenv, io.Discard, io.Discard)
	}
	if err := check([]string{"--addr", ":" + port}, noEnv); err != nil {
		t.Errorf("healthcheck --addr :%s: %v", port, err)
	}
	if err := check(nil, func(k string) string {
		if k == "PUSHGATE_ADDR" {
			return "0.0.0.0:" + port
		}
		return ""
	}); err != nil {
		t.Errorf("healthcheck with PUSHGATE_ADDR: %v", err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	if err := check([]string{"--addr", closed}, noEnv); err == nil {
		t.Errorf("healthcheck of %s, where nothing listens: no error", closed)
	}

	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			t.Errorf("healthcheck asked for %s", r.URL.Path)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer sick.Close()
	err = check([]string{"--addr", strings.TrimPrefix(sick.URL, "http://")}, noEnv)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("healthcheck of a 503 /healthz: %v", err)
	}
}

// TestConfigDocInSync: docs/configuration.md is what `make docs` generates
// from the flag definitions; a flag added, renamed or given a new default
// without regenerating it fails here.
func TestConfigDocInSync(t *testing.T) {
	committed, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"print-config-doc"}, func(string) string { return "" }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if out.String() != string(committed) {
		t.Fatal("docs/configuration.md differs from the flag definitions: run make docs")
	}
	fs, _, _, _ := newFlagSet(io.Discard)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if !strings.Contains(out.String(), "| `--"+f.Name+"` |") {
			t.Errorf("--%s has no row", f.Name)
		}
	})
	for name := range configDocText {
		if fs.Lookup(name) == nil {
			t.Errorf("configDocText documents --%s, which is not a flag", name)
		}
	}
	if n < 30 {
		t.Fatalf("only %d flags", n)
	}
}
