package limits

import (
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
)

func TestClientIP(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name, peer string
		xff        []string
		trusted    []netip.Prefix
		want       string
	}{
		{"peer", "203.0.113.7:5000", nil, nil, "203.0.113.7"},
		{"untrusted peer: X-Forwarded-For ignored", "203.0.113.7:5000", []string{"198.51.100.1"}, proxies, "203.0.113.7"},
		{"no trusted proxies: X-Forwarded-For ignored", "10.0.0.1:5000", []string{"198.51.100.1"}, nil, "10.0.0.1"},
		{"trusted peer", "10.0.0.1:5000", []string{"198.51.100.1"}, proxies, "198.51.100.1"},
		{"chain of trusted proxies", "10.0.0.1:5000", []string{"198.51.100.1, 10.1.1.1", "10.2.2.2"}, proxies, "198.51.100.1"},
		{"spoofed leftmost entry", "10.0.0.1:5000", []string{"1.2.3.4, 198.51.100.1"}, proxies, "198.51.100.1"},
		{"all trusted", "10.0.0.1:5000", []string{"10.9.9.9"}, proxies, "10.9.9.9"},
		{"garbage stops the walk", "10.0.0.1:5000", []string{"198.51.100.1, junk, 10.3.3.3"}, proxies, "10.3.3.3"},
		{"hop with a port", "10.0.0.1:5000", []string{"198.51.100.1:443"}, proxies, "198.51.100.1"},
		{"IPv6 peer", "[::1]:5000", []string{"2001:db8::1"}, proxies, "2001:db8::1"},
		{"IPv4-mapped peer", "[::ffff:203.0.113.7]:5000", nil, nil, "203.0.113.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/events", nil)
			r.RemoteAddr = tt.peer
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := clientIP(r, tt.trusted); got.String() != tt.want {
				t.Fatalf("clientIP = %s, want %s", got, tt.want)
			}
		})
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "@"
	if ip := clientIP(r, nil); ip.IsValid() {
		t.Fatalf("a peer without an address got %s", ip)
	}
}

func TestClientKeyIPv6Prefix(t *testing.T) {
	lim := New(Limits{}, nil, Hooks{})
	key := func(peer string) string {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = peer
		k, ok := lim.clientKey(r)
		if !ok {
			t.Fatalf("no key for %s", peer)
		}
		return k
	}
	if a, b := key("[2001:db8:1:2::1]:1"), key("[2001:db8:1:2:ffff::9]:1"); a != b {
		t.Fatalf("one /64, two keys: %s %s", a, b)
	}
	if a, b := key("[2001:db8:1:2::1]:1"), key("[2001:db8:1:3::1]:1"); a == b {
		t.Fatalf("two /64s, one key %s", a)
	}
}

func TestRateDefaults(t *testing.T) {
	def := Rate{PerSecond: 10, Burst: 20}
	for _, tt := range []struct{ in, want Rate }{
		{Rate{}, def},
		{Rate{PerSecond: 4}, Rate{PerSecond: 4, Burst: 8}},
		{Rate{PerSecond: 0.2}, Rate{PerSecond: 0.2, Burst: 1}},
		{Rate{Burst: 5}, Rate{PerSecond: 10, Burst: 5}},
		{Rate{PerSecond: -1, Burst: 5}, Rate{PerSecond: -1}},
	} {
		if got := tt.in.withDefault(def); got != tt.want {
			t.Errorf("%+v: got %+v, want %+v", tt.in, got, tt.want)
		}
	}
	l := Limits{MaxSubscriptionChannels: 99, MaxConnectionsPerIP: -1}.WithDefaults()
	if l.MaxSubscriptionChannels != 32 || l.MaxConnectionsPerIP != -1 || l.MaxConnectionsPerSubject != 100 ||
		l.SendRatePerToken != DefaultSendRatePerToken || l.MaxQueryDepth != 10 || l.MaxQueryComplexity != 10000 {
		t.Fatalf("defaults: %+v", l)
	}
}

func TestBucketsRefillAndWait(t *testing.T) {
	b := newBuckets(Rate{PerSecond: 10, Burst: 20}, 100)
	now := time.Now()
	for i := range 20 {
		if ok, _ := b.take("holder", 1, now); !ok {
			t.Fatalf("take %d of a burst of 20 refused", i+1)
		}
	}
	ok, wait := b.take("holder", 1, now)
	if ok || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("21st take: ok %v, wait %v; want refused with ~100ms", ok, wait)
	}
	if ok, _ := b.take("other", 1, now); !ok {
		t.Fatal("another key shares the bucket")
	}
	if ok, _ := b.take("holder", 1, now.Add(100*time.Millisecond)); !ok {
		t.Fatal("no token after the refill time")
	}
	if ok, wait := b.take("holder", 5, now.Add(100*time.Millisecond)); ok || wait < 450*time.Millisecond {
		t.Fatalf("take of 5 on an empty bucket: ok %v, wait %v", ok, wait)
	}
	if newBuckets(Rate{PerSecond: -1}, 1) != nil {
		t.Fatal("an off rate has a table")
	}
	var off *buckets
	if ok, _ := off.take("x", 1000, now); !ok {
		t.Fatal("an off rate refused")
	}
}

// TestBucketsStayBounded: refilled buckets are swept, and the table never
// holds more than its size, whatever the number of keys.
func TestBucketsStayBounded(t *testing.T) {
	b := newBuckets(Rate{PerSecond: 100, Burst: 2}, 50)
	now := time.Now()
	for i := range 1000 {
		b.take("k"+strconv.Itoa(i), 1, now)
		if n := b.size(); n > 50 {
			t.Fatalf("%d buckets after %d keys", n, i+1)
		}
	}
	// A second later every bucket has refilled: the next take sweeps.
	b.take("late", 1, now.Add(time.Second))
	if n := b.size(); n != 1 {
		t.Fatalf("%d buckets after the sweep, want 1", n)
	}
}

func TestCounter(t *testing.T) {
	c := newCounter(2)
	r1, ok1 := c.acquire("a")
	_, ok2 := c.acquire("a")
	_, ok3 := c.acquire("a")
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("acquire: %v %v %v, want true true false", ok1, ok2, ok3)
	}
	r1()
	r1() // idempotent
	if n := c.open("a"); n != 1 {
		t.Fatalf("open %d after one release, want 1", n)
	}
	if _, ok := c.acquire("b"); !ok {
		t.Fatal("keys share slots")
	}
}

func TestDocWalker(t *testing.T) {
	schema := gqlparser.MustLoadSchema(&ast.Source{Input: `
		type Query { a: A }
		type A { b: A, n: Int }`})
	measure := func(q string) (depth, count int) {
		t.Helper()
		doc, err := gqlparser.LoadQuery(schema, q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		w := newDocWalker(doc)
		return w.depth(doc.Operations[0].SelectionSet), w.count(doc.Operations[0].SelectionSet)
	}
	for _, tt := range []struct {
		q            string
		depth, count int
	}{
		{`{ a { n } }`, 2, 2},
		{`{ a { b { b { n } } } }`, 4, 4},
		{`{ x: a { n } y: a { n } }`, 2, 4},
		{`{ a { ...F } } fragment F on A { b { n } }`, 3, 3},
		{`{ a { ... on A { b { n } } } }`, 3, 3},
		{`{ __type(name: "A") { ofType { ofType { ofType { name } } } } }`, 5, 5},
		{`{ __schema { types { fields { type { name } } } } }`, 5, 5},
	} {
		d, c := measure(tt.q)
		if d != tt.depth || c != tt.count {
			t.Errorf("%s: depth %d count %d, want %d %d", tt.q, d, c, tt.depth, tt.count)
		}
	}

	// Fragments that each spread the next twice expand to 2^30 fields; the
	// walk measures each fragment once.
	var q strings.Builder
	q.WriteString(`{ a { ...F0 } }`)
	for i := range 30 {
		q.WriteString(" fragment F" + strconv.Itoa(i) + " on A { x: b { ...F" + strconv.Itoa(i+1) + " } y: b { ...F" + strconv.Itoa(i+1) + " } }")
	}
	q.WriteString(" fragment F30 on A { n }")
	start := time.Now()
	d, c := measure(q.String())
	if d != 32 || c < 1<<30 {
		t.Fatalf("exponential fragments: depth %d count %d", d, c)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("measuring took %v", el)
	}
}
