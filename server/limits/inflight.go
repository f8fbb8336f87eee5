package limits

import (
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// InFlight counts the requests in progress per client IP, streams aside
// (they have their own limits): a client that opens requests and stalls
// them (a body sent slowly, within ReadTimeout) takes its share, not the
// server's memory.
type InFlight struct {
	max     int // <= 0: off
	proxies []netip.Prefix
	hooks   Hooks
	mu      sync.Mutex
	n       map[netip.Prefix]int // by client: an IPv4 address, an IPv6 /64
}

// NewInFlight returns the count of l's MaxRequestsInFlightPerIP (its
// default filled) for a server whose trusted proxies are proxies; of h it
// uses Refused and IsStream.
func NewInFlight(l Limits, proxies []netip.Prefix, h Hooks) *InFlight {
	return &InFlight{max: l.WithDefaults().MaxRequestsInFlightPerIP, proxies: proxies, hooks: h, n: make(map[netip.Prefix]int)}
}

// key is the request's client as Limiter.clientKey sees it, without
// formatting it (no allocation per request).
func (f *InFlight) key(r *http.Request) (netip.Prefix, bool) {
	ip := clientIP(r, f.proxies)
	if !ip.IsValid() {
		return netip.Prefix{}, false
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p, true
	}
	return netip.PrefixFrom(ip, 32), true
}

// Limit admits a request, or answers 429 RATE_LIMITED when its client IP
// has max in progress.
func (f *InFlight) Limit(next http.Handler) http.Handler {
	if f.max <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := f.key(r)
		if !ok || f.hooks.IsStream != nil && f.hooks.IsStream(r) {
			next.ServeHTTP(w, r)
			return
		}
		f.mu.Lock()
		n := f.n[key]
		if n >= f.max {
			f.mu.Unlock()
			f.hooks.refused()
			writeLimitError(w, rateLimited(time.Second, "limit of %d requests in progress per client IP reached; "+
				"wait for one to end, or retry later", f.max))
			return
		}
		f.n[key] = n + 1
		f.mu.Unlock()
		defer f.done(key)
		next.ServeHTTP(w, r)
	})
}

func (f *InFlight) done(key netip.Prefix) {
	f.mu.Lock()
	if f.n[key]--; f.n[key] <= 0 {
		delete(f.n, key)
	}
	f.mu.Unlock()
}
