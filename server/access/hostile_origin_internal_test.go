package access

import (
	"net/http/httptest"
	"regexp"
	"testing"
)

// fuzzOrigins is the allow-list FuzzOriginAllowed checks, for a server
// whose own host is push.example:8443.
var fuzzOrigins = NewOrigins([]string{"https://*.good.com", "http://h5-?.shop.example:8080", "https://exact.example"})

// originOracle is what fuzzOrigins must allow, written independently of
// it: an origin is exactly scheme://host[:port] with DNS labels of
// [a-z0-9_-]{1,63} (any case), and it is the server's own host and port,
// or a subdomain (one label or more) of good.com over https without a
// port, or h5-<one character>.shop.example over http on 8080, or
// https://exact.example.
var originOracle = regexp.MustCompile(`(?i)^(` +
	`[a-z][a-z0-9+.-]*://push\.example:8443` +
	`|https://([a-z0-9_-]{1,63}\.)+good\.com` +
	`|http://h5-[a-z0-9_-]\.shop\.example:8080` +
	`|https://exact\.example` +
	`)$`)

// FuzzOriginAllowed: the origin policy allows exactly what the oracle
// does, whatever the Origin header holds (userinfo, paths, queries,
// fragments, empty labels, odd ports, percent escapes, IPv6), and never
// panics.
func FuzzOriginAllowed(f *testing.F) {
	for _, s := range []string{
		"https://a.good.com", "https://a.b.good.com", "https://good.com", "https://evil.com#.good.com",
		"https://evil.com?.good.com", "https://evil.com@x.good.com", "https://.good.com", "https://a..good.com",
		"https://a.good.com.", "https://a.good.com:443", "https://a.good.com/", "https://A.GOOD.COM",
		"http://h5-a.shop.example:8080", "http://h5-ab.shop.example:8080", "http://h5-a.shop.example:08080",
		"https://exact.example", "https://exact.example:", "null", "http://push.example:8443",
		"wss://push.example:8443", "https://[::1]", "https://a%2egood.com", "https://evil.com\\.good.com",
	} {
		f.Add(s)
	}
	r := httptest.NewRequest("GET", "http://push.example:8443/events", nil)
	f.Fuzz(func(t *testing.T, header string) {
		got := fuzzOrigins.allows(r, header)
		want := originOracle.MatchString(header)
		if got != want {
			t.Fatalf("allows(%q) = %v, the oracle says %v", header, got, want)
		}
	})
}
