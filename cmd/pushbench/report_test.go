package main

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestBudgets: a -budget names a number of the -json report and is
// checked with its bound; a bad one is refused when parsed.
func TestBudgets(t *testing.T) {
	for _, bad := range []string{"latency.p99Ms", "latency.p99Ms<15", "latency.p99Ms<=fast", "latency.p99Ms<=NaN",
		"latency.p98Ms<=15", "mode<=1", "latency<=1", "<=3"} {
		if _, err := parseBudget(bad); err == nil {
			t.Errorf("-budget %q accepted", bad)
		}
	}
	var budgets []budget
	for _, v := range []string{"latency.p99Ms<=15", "server.cpuPerDeliveryUs<=7", "send.callsPerSec>=54000", "server.memPerConnKB <= 16"} {
		b, err := parseBudget(v)
		if err != nil {
			t.Fatalf("-budget %q: %v", v, err)
		}
		budgets = append(budgets, b)
	}
	r := &report{Mode: "load", SSE: 1000}
	r.Latency.P99Ms, r.Server.CPUPerDelivUs, r.Send.PerSecond, r.Server.MemPerConnKB = 15, 7.004, 54000.4, 12.5
	failed, err := r.checkBudgets(budgets)
	if err != nil || failed != 1 {
		t.Fatalf("%d failed (%v), want 1: %+v", failed, err, r.Budgets)
	}
	want := []string{
		"budget latency.p99Ms 15 <= 15: pass",
		"budget server.cpuPerDeliveryUs 7.004 <= 7: FAIL",
		"budget send.callsPerSec 54000.4 >= 54000: pass",
		"budget server.memPerConnKB 12.5 <= 16: pass",
	}
	var table bytes.Buffer
	if err := r.writeTable(&table); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(table.String(), strings.Join(want, "\n")+"\n") {
		t.Errorf("the table ends:\n%s\nwant the budget lines:\n%s", table.String(), strings.Join(want, "\n"))
	}
	var js bytes.Buffer
	if err := r.writeJSON(&js); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js.String(), `"figure": "server.cpuPerDeliveryUs"`) || !strings.Contains(js.String(), `"pass": false`) {
		t.Errorf("-json has no budgets:\n%s", js.String())
	}
}

// TestTableMemoryPerConnection: the table shows memory per connection for
// idle runs and for load runs with many connections, not for a send
// scenario's single reader.
func TestTableMemoryPerConnection(t *testing.T) {
	for _, tt := range []struct {
		r    report
		want bool
	}{
		{report{Mode: "load", SSE: 1, Senders: 64}, false},
		{report{Mode: "load", SSE: 10, WS: 10}, false},
		{report{Mode: "load", SSE: 1000}, true},
		{report{Mode: "idle", WS: 40}, true},
	} {
		tt.r.Channels, tt.r.NChannels, tt.r.DurationSec = "shared", 1, time.Second.Seconds()
		tt.r.Server = serverReport{Source: "proc", PID: 1, MemPerConnKB: 1234.5}
		var b bytes.Buffer
		if err := tt.r.writeTable(&b); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(b.String(), "KB per connection"); got != tt.want {
			t.Errorf("%s ws %d sse %d: memory per connection shown %v, want %v:\n%s", tt.r.Mode, tt.r.WS, tt.r.SSE, got, tt.want, b.String())
		}
	}
}

// TestBudgetMissedExitsNonZero: a real run whose budget cannot hold (a
// p50 latency of at most 0 ms) reports it and returns an error, so
// make bench can tell; one that holds does not.
func TestBudgetMissedExitsNonZero(t *testing.T) {
	t.Parallel()
	r, err := runJSON(t, time.Minute, "-sse", "2", "-rate", "100", "-duration", "300ms",
		"-budget", "latency.p50Ms<=0", "-budget", "delivery.lost<=0")
	if err == nil || !strings.Contains(err.Error(), "1 of 2 budgets missed") {
		t.Fatalf("run returned %v, want 1 of 2 budgets missed", err)
	}
	if len(r.Budgets) != 2 || r.Budgets[0].Pass || !r.Budgets[1].Pass || r.Budgets[0].Value != r.Latency.P50Ms {
		t.Fatalf("budgets %+v (p50 %v)", r.Budgets, r.Latency.P50Ms)
	}
}

// TestBenchBudgetsMatchDocs: the -budget flags of bench/run.sh parse, and
// their bounds are those of the budget column of docs/performance.md's
// table, no more and no fewer.
func TestBenchBudgetsMatchDocs(t *testing.T) {
	script, err := os.ReadFile("../../bench/run.sh")
	if err != nil {
		t.Fatal(err)
	}
	var inScript []string
	for _, m := range regexp.MustCompile(`-budget '([^']+)'`).FindAllStringSubmatch(string(script), -1) {
		b, err := parseBudget(m[1])
		if err != nil {
			t.Errorf("bench/run.sh: %v", err)
			continue
		}
		op := "≥"
		if b.atMost {
			op = "≤"
		}
		inScript = append(inScript, op+strconv.FormatFloat(b.limit, 'f', -1, 64))
	}
	doc, err := os.ReadFile("../../docs/performance.md")
	if err != nil {
		t.Fatal(err)
	}
	var inDoc []string
	bound := regexp.MustCompile(`([≤≥]) ([0-9.]+)(k?)`)
	for _, line := range strings.Split(string(doc), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 7 || !strings.HasPrefix(line, "| ") || strings.Contains(line, "| budget |") {
			continue
		}
		for _, m := range bound.FindAllStringSubmatch(cells[5], -1) {
			v, _ := strconv.ParseFloat(m[2], 64)
			if m[3] == "k" {
				v *= 1000
			}
			inDoc = append(inDoc, m[1]+strconv.FormatFloat(v, 'f', -1, 64))
		}
	}
	slices.Sort(inScript)
	slices.Sort(inDoc)
	if len(inDoc) < 8 || !slices.Equal(inScript, inDoc) {
		t.Errorf("bench/run.sh's budgets %v, docs/performance.md's %v", inScript, inDoc)
	}
}
