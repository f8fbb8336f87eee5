package main

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestParseDelivery(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		ok   bool
		want delivery
	}{
		{
			name: "SSE and long-poll shape",
			in:   `{"channel":"bench:shared","id":"42","data":{"r":7,"w":2,"s":41,"t":1764150000000000000,"p":"xxxx"},"createdAt":"2025-11-26T10:00:00.000Z"}`,
			ok:   true,
			want: delivery{channel: []byte("bench:shared"), id: 42, hasID: true, run: 7, sender: 2, seq: 41, sent: 1764150000000000000, bench: true},
		},
		{
			name: "GraphQL shape: other order, spaces, an event, a cursor",
			in:   `{ "__typename" : "Message", "data" : { "t" : 5, "s" : 0, "w" : 0, "r" : 9 }, "id" : "1", "event": "x", "channel" : "user:bench-3", "cursor": "a\"b" }`,
			ok:   true,
			want: delivery{channel: []byte("user:bench-3"), id: 1, hasID: true, run: 9, sender: 0, seq: 0, sent: 5, bench: true},
		},
		{
			name: "warm-up",
			in:   `{"channel":"c","id":"3","data":{"r":9,"warm":true}}`,
			ok:   true,
			want: delivery{channel: []byte("c"), id: 3, hasID: true, run: 9, warm: true, bench: true},
		},
		{
			name: "someone else's data",
			in:   `{"channel":"c","id":"4","data":{"hello":["w","o",{"r":1}]}}`,
			ok:   true,
			want: delivery{channel: []byte("c"), id: 4, hasID: true},
		},
		{
			name: "data that is not an object",
			in:   `{"channel":"c","id":"5","data":"s: 1"}`,
			ok:   true,
			want: delivery{channel: []byte("c"), id: 5, hasID: true},
		},
		{name: "no channel", in: `{"id":"5","data":{}}`},
		{name: "truncated", in: `{"channel":"c","id":"5","data":{"r":1`},
		{name: "not an object", in: `["channel"]`},
		{name: "empty", in: ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d delivery
			ok := parseDelivery([]byte(tc.in), &d)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if string(d.channel) != string(tc.want.channel) {
				t.Errorf("channel %q, want %q", d.channel, tc.want.channel)
			}
			d.channel, tc.want.channel = nil, nil
			if !reflect.DeepEqual(d, tc.want) {
				t.Errorf("got %+v\nwant %+v", d, tc.want)
			}
		})
	}
}

func TestScanner(t *testing.T) {
	// eachMember walks exactly what encoding/json sees as the object's keys.
	in := []byte(` {"a" : 1, "b":"x\\\"}y" , "c":{"d":[1,{"e":"]"}]}, "f":null,"g":[] } `)
	var keys []string
	vals := map[string]string{}
	if !eachMember(in, func(k, v []byte) bool {
		keys = append(keys, string(k))
		vals[string(k)] = string(v)
		return true
	}) {
		t.Fatal("eachMember failed")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(in, &m); err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(m) {
		t.Fatalf("keys %v, encoding/json sees %d", keys, len(m))
	}
	for k, raw := range m {
		if vals[k] != string(raw) {
			t.Errorf("%s = %s, want %s", k, vals[k], raw)
		}
	}
	var n int
	if !eachElement([]byte(`[1, "a,b", {"x":[2]}, [ ] ]`), func([]byte) bool { n++; return true }) || n != 4 {
		t.Errorf("eachElement saw %d elements", n)
	}
	for _, bad := range []string{`{"a" 1}`, `{"a":1,}`, `{"a":1`, `{a:1}`, `{"a":"x}`} {
		if eachMember([]byte(bad), func(k, v []byte) bool { return true }) {
			t.Errorf("eachMember accepted %s", bad)
		}
	}
	for _, tc := range []struct {
		in string
		n  int64
		ok bool
	}{
		{"0", 0, true}, {`"42"`, 42, true}, {"-7", -7, true}, {"9223372036854775807", 1<<63 - 1, true},
		{"9223372036854775808", 0, false}, {"1.5", 0, false}, {`""`, 0, false}, {"", 0, false}, {"-", 0, false},
	} {
		if n, ok := parseInt([]byte(tc.in)); n != tc.n || ok != tc.ok {
			t.Errorf("parseInt(%s) = %d, %v", tc.in, n, ok)
		}
	}
}

func TestParseDeliveryDoesNotAllocate(t *testing.T) {
	in := []byte(`{"channel":"bench:shared","id":"42","data":{"r":7,"w":2,"s":41,"t":1764150000000000000,"p":"xxxx"},"createdAt":"2025-11-26T10:00:00.000Z","cursor":"abc"}`)
	var d delivery
	if a := testing.AllocsPerRun(1000, func() { parseDelivery(in, &d) }); a != 0 {
		t.Errorf("%v allocations, want 0", a)
	}
	frame := []byte(`{"id":"1","type":"next","payload":{"data":{"feed":` + string(in) + `}}}`)
	s := &subscriber{tr: newTracker(7, []string{"bench:shared"}, []int{0}, 4, &liveCounters{}, &histogram{})}
	if a := testing.AllocsPerRun(1000, func() {
		_, _, payload, _ := wsEnvelope(frame)
		_ = s.feedResult(payload, &d, testNow)
	}); a != 0 {
		t.Errorf("ws frame: %v allocations, want 0", a)
	}
}
