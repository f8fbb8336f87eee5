package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/logbuf"
	"github.com/pushgate/pushgate/internal/testbuild"
)

// The end-to-end tests run pushbench against a real pushgate: the binary
// built from this module once, spawned by pushbench as -spawn does. Under
// -race the binary is built with the race detector too, and every spawned
// server writes its reports where TestMain looks for them (GORACE
// log_path: pushbench removes a server's log with its directory).

var (
	buildOnce sync.Once
	serverBin string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	raceDir, err := os.MkdirTemp("", "pushbench-race-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Read by the servers at their start; this process read GORACE at its own.
	os.Setenv("GORACE", "log_path="+filepath.Join(raceDir, "report"))
	code := m.Run()
	reports, _ := filepath.Glob(filepath.Join(raceDir, "report.*"))
	for _, r := range reports {
		b, _ := os.ReadFile(r)
		fmt.Fprintf(os.Stderr, "a spawned pushgate's race detector reported (%s):\n%s\n", filepath.Base(r), b)
		code = 1
	}
	_ = os.RemoveAll(raceDir)
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// pushgateBin builds ./cmd/pushgate once for every test.
func pushgateBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs pushgate")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "pushbench-test-")
		if buildErr != nil {
			return
		}
		serverBin = filepath.Join(buildDir, "pushgate")
		// A guard against a hung build, not a bound on its speed: a cold
		// -race build beside every other package's can take minutes on a
		// loaded 2-core machine.
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		buildErr = buildServer(ctx, serverBin, testbuild.BuildFlags()...)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return serverBin
}

// runJSON runs pushbench with args (plus -spawn -spawn-bin -json -quiet)
// within timeout and decodes its report. The timeout starts once the
// server binary is built: a cold build under -race, beside the other
// packages' builds, can take longer than a run.
func runJSON(t *testing.T, timeout time.Duration, args ...string) (*report, error) {
	t.Helper()
	args = append([]string{"-spawn", "-spawn-bin", pushgateBin(t), "-json", "-quiet"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, &stdout, &stderr)
	if stdout.Len() == 0 {
		return nil, errors.Join(err, errors.New("no report; stderr: "+stderr.String()))
	}
	var r report
	if derr := json.Unmarshal(stdout.Bytes(), &r); derr != nil {
		t.Fatalf("report %s: %v", stdout.Bytes(), derr)
	}
	t.Logf("report:\n%s", stdout.Bytes())
	return &r, err
}

// checkClean requires a run in which every expected delivery arrived once
// and in order, with sane figures.
func checkClean(t *testing.T, r *report, subs int) {
	t.Helper()
	if r.Connect.Connected != subs || r.Connect.NotReady != 0 {
		t.Errorf("connected %d of %d, %d not ready: %v", r.Connect.Connected, subs, r.Connect.NotReady, r.Connect.Errors)
	}
	s, d := r.Send, r.Delivery
	if s.OK == 0 || s.Failed != 0 {
		t.Errorf("send: %d ok, %d failed %v", s.OK, s.Failed, s.Errors)
	}
	if d.Expected == 0 || d.Expected != d.Received || d.Unique != d.Received {
		t.Errorf("expected %d, received %d, unique %d", d.Expected, d.Received, d.Unique)
	}
	if d.Lost != 0 || d.Duplicated != 0 || d.Reordered != 0 || d.IDGaps != 0 || d.IDDuplicates != 0 || d.IDReordered != 0 ||
		d.Resets != 0 || d.Foreign != 0 || d.ParseErrors != 0 || d.Disconnected != 0 {
		t.Errorf("delivery faults: %+v", d)
	}
	l := r.Latency
	if l.Count != uint64(d.Unique) || l.P50Ms <= 0 || l.P50Ms > l.P99Ms || l.P99Ms > l.MaxMs || l.MaxMs > 10_000 {
		t.Errorf("latency: %+v", l)
	}
	if r.Connect.P50Ms <= 0 || r.Connect.TotalSec <= 0 {
		t.Errorf("connect: %+v", r.Connect)
	}
	sv := r.Server
	if sv.Source != "proc" || sv.PID == 0 || sv.CPUSec <= 0 || sv.CPUPerDelivUs <= 0 || sv.RSSConnected <= 0 || sv.RSSPeak < sv.RSSConnected {
		t.Errorf("server: %+v", sv)
	}
}

func TestEndToEndMixedShared(t *testing.T) {
	t.Parallel()
	r, err := runJSON(t, time.Minute, "-sse", "20", "-ws", "20", "-poll", "5", "-rate", "200", "-duration", "1s")
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, r, 45)
	// The pacer never runs ahead: call k of a sender is due k periods
	// after its start, and none starts after the end, so at most one call
	// more than the rate allows per sender (a slow machine makes fewer:
	// how many is not this test's business, every one being delivered is).
	if limit := int64(200) + int64(r.Senders); r.Send.Calls > limit || r.Send.Calls != r.Send.OK+r.Send.Failed {
		t.Errorf("%d calls (%d ok, %d failed) in 1 s at 200/s, want at most %d", r.Send.Calls, r.Send.OK, r.Send.Failed, limit)
	}
	if r.Delivery.Expected != 45*r.Send.OK {
		t.Errorf("expected %d deliveries, want 45 × %d", r.Delivery.Expected, r.Send.OK)
	}
}

func TestEndToEndPerSubscriberBroadcast(t *testing.T) {
	t.Parallel()
	// user:bench-<i> channels with a token each, 3 channels per broadcast.
	r, err := runJSON(t, time.Minute, "-sse", "5", "-ws", "5", "-poll", "2", "-channels", "per-sub", "-broadcast", "3",
		"-rate", "100", "-senders", "2", "-duration", "500ms")
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, r, 12)
	if r.NChannels != 12 || r.Send.Messages != 3*r.Send.OK || r.Delivery.Expected != r.Send.Messages {
		t.Errorf("channels %d, messages %d of %d calls, expected %d", r.NChannels, r.Send.Messages, r.Send.OK, r.Delivery.Expected)
	}
}

// TestEndToEndFlood: as fast as possible (the senders in the feed loops),
// over every transport.
func TestEndToEndFlood(t *testing.T) {
	t.Parallel()
	r, err := runJSON(t, time.Minute, "-sse", "3", "-ws", "3", "-poll", "2", "-rate", "0", "-senders", "4", "-duration", "500ms")
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, r, 8)
	if r.Send.Calls != r.Send.OK+r.Send.Failed || r.Delivery.Expected != 8*r.Send.OK {
		t.Errorf("%d calls, %d ok, %d failed, expected %d deliveries", r.Send.Calls, r.Send.OK, r.Send.Failed, r.Delivery.Expected)
	}
}

// TestEndToEndGraphQLSSE: graphql-sse subscribers beside WebSocket ones
// on one channel, every delivery checked.
func TestEndToEndGraphQLSSE(t *testing.T) {
	t.Parallel()
	r, err := runJSON(t, time.Minute, "-gsse", "10", "-ws", "5", "-rate", "200", "-duration", "1s")
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, r, 15)
	if r.GSSE != 10 || r.Delivery.Expected != 15*r.Send.OK {
		t.Errorf("gsse %d, expected %d deliveries, want 15 × %d", r.GSSE, r.Delivery.Expected, r.Send.OK)
	}
}

func TestEndToEndIdle(t *testing.T) {
	t.Parallel()
	r, err := runJSON(t, time.Minute, "-idle", "-sse", "30", "-ws", "10", "-gsse", "10", "-anonymous", "-settle", "300ms")
	if err != nil {
		t.Fatal(err)
	}
	if r.Mode != "idle" || r.Connect.Connected != 50 || r.Send.Calls != 0 {
		t.Errorf("mode %s, connected %d, calls %d", r.Mode, r.Connect.Connected, r.Send.Calls)
	}
	if r.Server.MemPerConnKB <= 0 || r.Server.RSSConnected <= r.Server.RSSBefore {
		t.Errorf("server: %+v", r.Server)
	}
}

func TestInterruptStillReports(t *testing.T) {
	t.Parallel()
	bin := pushgateBin(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout bytes.Buffer
	var stderr logbuf.Buffer
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- run(ctx, []string{"-spawn", "-spawn-bin", bin, "-sse", "5", "-rate", "50", "-duration", "1m"}, &stdout, &stderr)
	}()
	for !strings.Contains(stderr.String(), "sending for") {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("never started sending: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Interrupted once something was delivered: a progress line (one a
	// second) counts deliveries.
	delivered := regexp.MustCompile(`deliveries [1-9]`)
	for !delivered.MatchString(stderr.String()) {
		if time.Since(start) > time.Minute {
			t.Fatalf("nothing delivered: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("pushbench did not stop after the interrupt")
	}
	out := stdout.String()
	if !strings.Contains(out, "(interrupted)") || !strings.Contains(out, "lost 0") {
		t.Errorf("report:\n%s", out)
	}
}

func TestRefusesRemoteTarget(t *testing.T) {
	err := run(context.Background(), []string{"-addr", "192.0.2.1:8080", "-sse", "1", "-anonymous", "-key", "k", "-quiet"}, discard{}, discard{})
	if !errors.Is(err, errRemote) {
		t.Fatalf("run against 192.0.2.1: %v, want errRemote", err)
	}
}
