package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// report is every figure of a run; -json prints it as is.
type report struct {
	Mode        string  `json:"mode"` // "load" or "idle"
	Target      string  `json:"target"`
	Spawned     bool    `json:"spawned"`
	SourceAddrs int     `json:"sourceAddrs"`     // loopback addresses the subscribers connect from; 0: the system's choice
	Store       string  `json:"store,omitempty"` // of a spawned server: memory or redis
	WS          int     `json:"ws"`
	SSE         int     `json:"sse"`
	GSSE        int     `json:"gsse"` // graphql-sse
	Poll        int     `json:"poll"`
	Channels    string  `json:"channels"` // shared or per-sub
	NChannels   int     `json:"channelCount"`
	Broadcast   int     `json:"broadcast"`
	Senders     int     `json:"senders"`
	Rate        float64 `json:"rate"` // target calls per second, 0: as fast as possible
	Size        int     `json:"size"`
	DurationSec float64 `json:"durationSec"` // the send phase as run
	Interrupted bool    `json:"interrupted"`

	Connect  connectReport  `json:"connect"`
	Send     sendReport     `json:"send"`
	Delivery deliveryReport `json:"delivery"`
	Latency  latencyReport  `json:"latency"`
	Server   serverReport   `json:"server"`
	Client   clientReport   `json:"client"`
	Warnings []string       `json:"warnings"`
	// Budgets are the -budget checks, in the order given.
	Budgets []budgetResult `json:"budgets,omitempty"`
}

type connectReport struct {
	Attempted int              `json:"attempted"`
	Connected int              `json:"connected"`
	Failed    int              `json:"failed"`
	Errors    map[string]int64 `json:"errors"`
	P50Ms     float64          `json:"p50Ms"`
	P99Ms     float64          `json:"p99Ms"`
	MaxMs     float64          `json:"maxMs"`
	TotalSec  float64          `json:"totalSec"` // until every connection was up (or failed)
	ReadySec  float64          `json:"readySec"` // until every subscriber got the warm-up on each channel
	NotReady  int              `json:"notReady"`
}

type sendReport struct {
	Calls     int64            `json:"calls"`
	OK        int64            `json:"ok"`
	Failed    int64            `json:"failed"`
	Messages  int64            `json:"messages"` // appended by successful calls
	PerSecond float64          `json:"callsPerSec"`
	Errors    map[string]int64 `json:"errors"`
	P50Ms     float64          `json:"p50Ms"`
	P99Ms     float64          `json:"p99Ms"`
	MaxMs     float64          `json:"maxMs"`
}

type deliveryReport struct {
	Expected     int64            `json:"expected"`
	Received     int64            `json:"received"` // duplicates included
	Unique       int64            `json:"unique"`
	Lost         int64            `json:"lost"`
	Duplicated   int64            `json:"duplicated"`
	Reordered    int64            `json:"reordered"`
	IDGaps       int64            `json:"idGaps"`
	IDDuplicates int64            `json:"idDuplicates"`
	IDReordered  int64            `json:"idReordered"`
	Resets       int64            `json:"resets"`
	Foreign      int64            `json:"foreign"`
	ParseErrors  int64            `json:"parseErrors"`
	PollLimited  int64            `json:"pollRateLimited"` // polls refused (429) and tried again
	PerSecond    float64          `json:"perSec"`
	Disconnected int              `json:"disconnected"`
	EndErrors    map[string]int64 `json:"disconnectErrors"`
}

type latencyReport struct {
	Count  uint64  `json:"count"`
	P50Ms  float64 `json:"p50Ms"`
	P90Ms  float64 `json:"p90Ms"`
	P99Ms  float64 `json:"p99Ms"`
	P999Ms float64 `json:"p999Ms"`
	MaxMs  float64 `json:"maxMs"`
	MeanMs float64 `json:"meanMs"`
}

type serverReport struct {
	PID    int    `json:"pid,omitempty"`
	Source string `json:"source"` // proc, metrics, or "" when not measured
	Error  string `json:"error,omitempty"`
	// CPU over the send phase and the drain after it.
	CPUSec        float64 `json:"cpuSec"`
	CPUCores      float64 `json:"cpuCores"`
	CPUPerDelivUs float64 `json:"cpuPerDeliveryUs"`
	ConnectCPUSec float64 `json:"connectCpuSec"` // connecting and the warm-up
	IdleCPUPerSec float64 `json:"idleCpuPerSec"` // -idle: CPU seconds per second while settling
	RSSBefore     int64   `json:"rssBeforeBytes"`
	RSSConnected  int64   `json:"rssConnectedBytes"`
	RSSPeak       int64   `json:"rssPeakBytes"` // the highest sample (every 250 ms)
	RSSEnd        int64   `json:"rssEndBytes"`
	MemPerConnKB  float64 `json:"memPerConnKB"`
}

type clientReport struct {
	Error         string  `json:"error,omitempty"` // why CPUSec is not measured
	CPUSec        float64 `json:"cpuSec"`          // pushbench itself over the send phase and drain
	CPUPerDelivUs float64 `json:"cpuPerDeliveryUs"`
}

func ms(nanos int64) float64 { return float64(nanos) / 1e6 }

func (r *report) writeJSON(w io.Writer) error {
	if r.Warnings == nil {
		r.Warnings = []string{}
	}
	// /proc counts CPU in clock ticks: no more digits than that.
	for _, f := range []*float64{&r.Server.CPUSec, &r.Server.ConnectCPUSec, &r.Client.CPUSec} {
		*f = math.Round(*f*1e3) / 1e3
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeTable prints the report for people.
func (r *report) writeTable(w io.Writer) error {
	var b strings.Builder
	subs := []string{}
	for _, t := range []struct {
		name string
		n    int
	}{{"ws", r.WS}, {"sse", r.SSE}, {"gsse", r.GSSE}, {"poll", r.Poll}} {
		if t.n > 0 {
			subs = append(subs, fmt.Sprintf("%s %d", t.name, t.n))
		}
	}
	server := r.Target
	if r.Spawned {
		server += " (spawned, " + r.Store + " store)"
	}
	from := ""
	if r.SourceAddrs > 1 {
		from = fmt.Sprintf(" from %d loopback addresses", r.SourceAddrs)
	}
	fmt.Fprintf(&b, "pushbench %s: %d subscribers (%s)%s, %s; server %s\n",
		r.Mode, r.WS+r.SSE+r.GSSE+r.Poll, strings.Join(subs, ", "), from, r.channelsText(), server)
	if r.Mode == "load" {
		rate := "as fast as possible"
		if r.Rate > 0 {
			rate = fmt.Sprintf("%g calls/s", r.Rate)
		}
		call := "send"
		if r.Broadcast > 0 {
			call = fmt.Sprintf("broadcast to %d", r.Broadcast)
		}
		fmt.Fprintf(&b, "  %s, %s from %d senders for %.1fs, %d-byte data", call, rate, r.Senders, r.DurationSec, r.Size)
		if r.Interrupted {
			b.WriteString(" (interrupted)")
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	row := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")) }
	c := r.Connect
	row("connect", fmt.Sprintf("%d/%d ok", c.Connected, c.Attempted),
		fmt.Sprintf("p50 %s", fmtMs(c.P50Ms)), fmt.Sprintf("p99 %s", fmtMs(c.P99Ms)), fmt.Sprintf("max %s", fmtMs(c.MaxMs)),
		fmt.Sprintf("all in %.2fs", c.TotalSec))
	if r.Mode == "load" {
		ready := fmt.Sprintf("ready (warm-up seen) in %.2fs", c.ReadySec)
		if c.NotReady > 0 {
			ready += fmt.Sprintf(", %d never ready", c.NotReady)
		}
		row("", ready)
	}
	for _, k := range sortedKeys(c.Errors) {
		row("", fmt.Sprintf("error ×%d: %s", c.Errors[k], k))
	}
	if r.Mode == "load" {
		s := r.Send
		row("send", fmt.Sprintf("%d calls", s.Calls), fmt.Sprintf("%.1f/s", s.PerSecond),
			fmt.Sprintf("%d failed", s.Failed), fmt.Sprintf("p50 %s", fmtMs(s.P50Ms)), fmt.Sprintf("p99 %s", fmtMs(s.P99Ms)),
			fmt.Sprintf("max %s", fmtMs(s.MaxMs)))
		for _, k := range sortedKeys(s.Errors) {
			row("", fmt.Sprintf("error ×%d: %s", s.Errors[k], k))
		}
		d := r.Delivery
		row("deliveries", fmt.Sprintf("expected %d", d.Expected), fmt.Sprintf("received %d", d.Received),
			fmt.Sprintf("%.0f/s", d.PerSecond))
		row("", fmt.Sprintf("lost %d", d.Lost), fmt.Sprintf("duplicated %d", d.Duplicated), fmt.Sprintf("reordered %d", d.Reordered),
			fmt.Sprintf("resets %d", d.Resets))
		row("", fmt.Sprintf("by id: gaps %d", d.IDGaps), fmt.Sprintf("dups %d", d.IDDuplicates), fmt.Sprintf("backwards %d", d.IDReordered))
		if d.PollLimited > 0 {
			row("", fmt.Sprintf("%d polls rate-limited (429) and retried", d.PollLimited))
		}
		if d.Foreign > 0 || d.ParseErrors > 0 {
			row("", fmt.Sprintf("foreign %d", d.Foreign), fmt.Sprintf("unparsable %d", d.ParseErrors))
		}
		if d.Disconnected > 0 {
			row("", fmt.Sprintf("%d feeds ended early", d.Disconnected))
			for _, k := range sortedKeys(d.EndErrors) {
				row("", fmt.Sprintf("×%d: %s", d.EndErrors[k], k))
			}
		}
		l := r.Latency
		row("latency", fmt.Sprintf("p50 %s", fmtMs(l.P50Ms)), fmt.Sprintf("p90 %s", fmtMs(l.P90Ms)),
			fmt.Sprintf("p99 %s", fmtMs(l.P99Ms)), fmt.Sprintf("p99.9 %s", fmtMs(l.P999Ms)), fmt.Sprintf("max %s", fmtMs(l.MaxMs)))
	}
	sv := r.Server
	if sv.Source == "" {
		row("server", "not measured: "+sv.Error)
	} else {
		who := sv.Source
		if sv.PID > 0 {
			who = fmt.Sprintf("pid %d", sv.PID)
		}
		if r.Mode == "load" {
			row("server cpu", fmt.Sprintf("%.2fs", sv.CPUSec), fmt.Sprintf("%.2f cores", sv.CPUCores),
				fmt.Sprintf("%.2f µs/delivery", sv.CPUPerDelivUs), fmt.Sprintf("(connect %.2fs)", sv.ConnectCPUSec), who)
		} else {
			row("server cpu", fmt.Sprintf("connect %.2fs", sv.ConnectCPUSec), fmt.Sprintf("idle %.3f cores", sv.IdleCPUPerSec), who)
		}
		row("server rss", fmt.Sprintf("before %s", fmtBytes(sv.RSSBefore)), fmt.Sprintf("connected %s", fmtBytes(sv.RSSConnected)),
			fmt.Sprintf("peak %s", fmtBytes(sv.RSSPeak)), fmt.Sprintf("end %s", fmtBytes(sv.RSSEnd)))
		if r.Mode == "idle" || r.WS+r.SSE+r.Poll >= minConnsForMemPerConn {
			row("", fmt.Sprintf("%.1f KB per connection", sv.MemPerConnKB))
		}
	}
	switch {
	case r.Mode != "load":
	case r.Client.Error != "":
		row("pushbench cpu", "not measured: "+r.Client.Error)
	default:
		row("pushbench cpu", fmt.Sprintf("%.2fs", r.Client.CPUSec), fmt.Sprintf("%.2f µs/delivery", r.Client.CPUPerDelivUs))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	for _, c := range r.Budgets {
		b.WriteString(c.String() + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// minConnsForMemPerConn is the fewest connections of a load run whose
// memory per connection the table shows: it is the growth of the server's
// RSS from before connecting to after the warm-up, divided by the
// connections, and under a few hundred of them the growth is mostly the
// server's own warm-up (buffers, the heap of the first sends), so a
// scenario with one reader, as the send scenarios of make bench have,
// would show megabytes "per connection". -idle runs always show it.
const minConnsForMemPerConn = 100

// A budget is a bound on one figure of the report, checked after the run
// (-budget): its name is the figure's path in the -json report, as in
// latency.p99Ms<=15 or send.callsPerSec>=54000.
type budget struct {
	figure string
	atMost bool // <=; else >=
	limit  float64
}

// budgetResult is a budget checked against a run.
type budgetResult struct {
	Figure string  `json:"figure"`
	Op     string  `json:"op"` // "<=" or ">="
	Limit  float64 `json:"limit"`
	Value  float64 `json:"value"`
	Pass   bool    `json:"pass"`
}

// String is the budget's line in the table: "budget <figure> <value> <op>
// <limit>: pass" (or FAIL), one line each, for scripts to collect.
func (c budgetResult) String() string {
	verdict := "pass"
	if !c.Pass {
		verdict = "FAIL"
	}
	// Two decimals, as the table, unless they would make the verdict
	// look wrong (7.004 <= 7: FAIL): then every digit.
	value := math.Round(c.Value*100) / 100
	roundedPass := value <= c.Limit
	if c.Op == ">=" {
		roundedPass = value >= c.Limit
	}
	if roundedPass != c.Pass || value == c.Limit && c.Value != c.Limit {
		value = c.Value
	}
	return fmt.Sprintf("budget %s %s %s %s: %s", c.Figure, strconv.FormatFloat(value, 'f', -1, 64), c.Op,
		strconv.FormatFloat(c.Limit, 'f', -1, 64), verdict)
}

// parseBudget reads a -budget value, name<=limit or name>=limit, whose name
// must be a number of the report.
func parseBudget(v string) (budget, error) {
	var b budget
	name, limit, ok := strings.Cut(v, "<=")
	b.atMost = ok
	if !ok {
		if name, limit, ok = strings.Cut(v, ">="); !ok {
			return b, fmt.Errorf("-budget %q: want figure<=limit or figure>=limit, as in latency.p99Ms<=15", v)
		}
	}
	b.figure = strings.TrimSpace(name)
	l, err := strconv.ParseFloat(strings.TrimSpace(limit), 64)
	if err != nil || math.IsNaN(l) || math.IsInf(l, 0) {
		return b, fmt.Errorf("-budget %q: the limit must be a number", v)
	}
	b.limit = l
	if _, err := (&report{}).figure(b.figure); err != nil {
		return b, fmt.Errorf("-budget %q: %w", v, err)
	}
	return b, nil
}

// checkBudgets sets r.Budgets and returns how many failed.
func (r *report) checkBudgets(budgets []budget) (failed int, err error) {
	r.Budgets = nil
	for _, b := range budgets {
		v, err := r.figure(b.figure)
		if err != nil {
			return 0, err
		}
		c := budgetResult{Figure: b.figure, Op: ">=", Limit: b.limit, Value: v, Pass: v >= b.limit}
		if b.atMost {
			c.Op, c.Pass = "<=", v <= b.limit
		}
		if !c.Pass {
			failed++
		}
		r.Budgets = append(r.Budgets, c)
	}
	return failed, nil
}

// figure returns the number at path (dot-separated JSON names) in the
// report as -json prints it.
func (r *report) figure(path string) (float64, error) {
	raw, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return 0, err
	}
	for name := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return 0, fmt.Errorf("%s is not a figure of the report", path)
		}
		if v, ok = m[name]; !ok {
			return 0, fmt.Errorf("%s is not a figure of the report (no %q)", path, name)
		}
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%s is not a number of the report", path)
	}
	return n.Float64()
}

func (r *report) channelsText() string {
	if r.Channels == "shared" {
		if r.NChannels == 1 {
			return "one shared channel"
		}
		return fmt.Sprintf("%d shared channels", r.NChannels)
	}
	return fmt.Sprintf("one channel each (%d)", r.NChannels)
}

func fmtMs(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 1:
		return fmt.Sprintf("%.0fµs", v*1000)
	case v < 100:
		return fmt.Sprintf("%.2fms", v)
	default:
		return (time.Duration(v * 1e6)).Round(time.Millisecond).String()
	}
}

func fmtBytes(n int64) string {
	return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
