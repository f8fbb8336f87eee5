package main

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestBenchDataSize(t *testing.T) {
	for _, size := range []int{0, 10, 60, 61, 100, 1000} {
		b := appendBenchData(nil, 4503599627370495, 3, 12345, 1764150000000000000, size)
		var v struct {
			R, W, S, T int64
			P          string
		}
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("size %d: %s: %v", size, b, err)
		}
		if v.R != 4503599627370495 || v.W != 3 || v.S != 12345 || v.T != 1764150000000000000 {
			t.Errorf("size %d: %+v", size, v)
		}
		if v.P != "" && len(b) != size {
			t.Errorf("size %d: %d bytes with a filler: %s", size, len(b), b)
		}
		if len(b) < size {
			t.Errorf("size %d: only %d bytes", size, len(b))
		}
		var d delivery
		wrapped := `{"channel":"c","id":"1","data":` + string(b) + `}`
		if !parseDelivery([]byte(wrapped), &d) || !d.bench || d.seq != 12345 || d.sender != 3 {
			t.Errorf("size %d: the subscriber reads %+v", size, d)
		}
	}
}

func TestCallBodies(t *testing.T) {
	type in struct {
		Channel  string          `json:"channel"`
		Channels []string        `json:"channels"`
		Data     json.RawMessage `json:"data"`
	}
	type body struct {
		Query     string `json:"query"`
		Variables struct {
			In in `json:"in"`
		} `json:"variables"`
	}
	decode := func(b []byte) body {
		t.Helper()
		var v body
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return v
	}
	p := &sendPlan{groups: [][]string{{"user:bench-0", "user:bench-1"}, {"user:bench-2"}}, broadcast: true, run: 9, size: 80}
	v := decode(appendCallBody(nil, p, 0, 1, 5, 100))
	if v.Query != broadcastMutation || !reflect.DeepEqual(v.Variables.In.Channels, p.groups[0]) || len(v.Variables.In.Data) != 80 {
		t.Errorf("broadcast body: %+v", v)
	}
	p.broadcast = false
	v = decode(appendCallBody(nil, p, 1, 1, 5, 100))
	if v.Query != sendMutation || v.Variables.In.Channel != "user:bench-2" {
		t.Errorf("send body: %+v", v)
	}
	v = decode(appendWarmBody(nil, 9, []string{"a"}))
	if v.Query != sendMutation || v.Variables.In.Channel != "a" || string(v.Variables.In.Data) != `{"r":9,"warm":true}` {
		t.Errorf("warm send body: %+v", v)
	}
	v = decode(appendWarmBody(nil, 9, []string{"a", "b"}))
	if v.Query != broadcastMutation || len(v.Variables.In.Channels) != 2 {
		t.Errorf("warm broadcast body: %+v", v)
	}
}

func TestPlanLayout(t *testing.T) {
	c := &config{sse: 5, channels: "per-sub", broadcast: 2}
	l := planLayout(c)
	if want := [][]string{{"user:bench-0", "user:bench-1"}, {"user:bench-2", "user:bench-3"}, {"user:bench-4"}}; !reflect.DeepEqual(l.groups, want) {
		t.Errorf("per-sub groups %v", l.groups)
	}
	if l.subGroups[3][0] != 1 || l.subChannels[3][0] != "user:bench-3" {
		t.Errorf("subscriber 3: %v %v", l.subChannels[3], l.subGroups[3])
	}
	c = &config{ws: 2, sse: 1, channels: "shared", broadcast: 3, anonymous: true}
	l = planLayout(c)
	if len(l.groups) != 1 || len(l.groups[0]) != 3 || l.groups[0][2] != "bench:shared-2" || len(l.subChannels[2]) != 3 {
		t.Errorf("shared broadcast: %v %v", l.groups, l.subChannels)
	}
	c = &config{poll: 2, channels: "per-sub", anonymous: true}
	if l = planLayout(c); l.subChannels[1][0] != "bench:1" || len(l.groups) != 2 {
		t.Errorf("anonymous per-sub: %v", l.groups)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"-spawn", "-sse", "10"}, true},
		{[]string{"-sse", "10", "-key", "k", "-anonymous"}, true},
		{[]string{"-sse", "10", "-key", "k"}, false}, // no token secret, not anonymous
		{[]string{"-spawn"}, false},                  // no subscribers
		{[]string{"-spawn", "-sse", "20001"}, false}, // over -max-conns
		{[]string{"-spawn", "-sse", "20001", "-max-conns", "30000"}, true},
		{[]string{"-spawn", "-sse", "1", "-duration", "11m"}, false},
		{[]string{"-spawn", "-sse", "1", "-channels", "each"}, false},
		{[]string{"-spawn", "-sse", "1", "-broadcast", "33"}, false}, // shared: one subscription holds them all
		{[]string{"-spawn", "-sse", "1", "-broadcast", "33", "-channels", "per-sub"}, true},
		{[]string{"-sse", "1", "-key", "k", "-anonymous", "-redis-url", "redis://x"}, false}, // only with -spawn
		{[]string{"-spawn", "-sse", "1", "extra"}, false},
	} {
		_, err := parseConfig(tc.args, discard{})
		if (err == nil) != tc.ok {
			t.Errorf("%v: %v, want ok %v", tc.args, err, tc.ok)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestPacerInterleaves: senders started one call apart interleave evenly
// (4 senders at 25/s each: one call every 10 ms, never a burst of 4), and
// a rate above the tick frequency is reached in 1 ms bursts.
func TestPacerInterleaves(t *testing.T) {
	origin := time.Unix(1000, 0)
	// calls returns the times at which a pacer calls within [origin, origin+d).
	calls := func(p *pacer, d time.Duration) []time.Duration {
		var out []time.Duration
		for now := p.start; now.Before(origin.Add(d)); now = p.next(now) {
			for n := p.due(now); n > 0; n-- {
				out = append(out, now.Sub(origin))
				p.sent++
			}
		}
		return out
	}
	const senders, rate = 4, 100.0
	var all []time.Duration
	for w := range senders {
		p := &pacer{start: origin.Add(time.Duration(float64(w) / rate * float64(time.Second))), rate: rate / senders}
		all = append(all, calls(p, time.Second)...)
	}
	slices.Sort(all)
	if len(all) != 100 {
		t.Fatalf("%d calls in 1 s at %v/s", len(all), rate)
	}
	for i := 1; i < len(all); i++ {
		if gap := all[i] - all[i-1]; gap < 9*time.Millisecond || gap > 11*time.Millisecond {
			t.Fatalf("calls %d and %d are %v apart, want 10ms (times %v)", i-1, i, gap, all[:min(len(all), 12)])
		}
	}

	fast := calls(&pacer{start: origin, rate: 5000}, time.Second)
	if len(fast) < 4995 || len(fast) > 5005 {
		t.Fatalf("%d calls in 1 s at 5000/s", len(fast))
	}
	bursts := map[time.Duration]int{}
	for _, c := range fast {
		bursts[c]++
	}
	if len(bursts) > 1001 {
		t.Fatalf("%d wake-ups in 1 s, want one per millisecond at most", len(bursts))
	}
}
