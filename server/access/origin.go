package access

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/coder/websocket"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/internal/httperr"
)

// Origins is the policy for browser origins on the routes browsers use
// (/graphql, its WebSocket, /events, /poll). A request without Origin (a
// mini-program, an app, a server) is always allowed; a same-origin request
// too; another origin must match the allow-list, else it is refused with
// 403. Allowed cross-origin requests get CORS headers and their preflights
// an answer.
//
// An Origin is read strictly as scheme://host[:port] (parseOrigin):
// anything else (userinfo, a path, a query, a fragment, an empty label)
// matches nothing, so "https://evil.com#.good.com" is not taken for a host
// under good.com. Patterns match whole DNS labels (originPattern).
type Origins struct {
	any      bool
	exact    map[origin]bool
	patterns []originPattern
}

// origin is a parsed Origin: lower case, the port as written ("" when
// none).
type origin struct{ scheme, host, port string }

// originPattern is an allow-list entry with wildcards: its scheme, host
// labels and port are each matched with path.Match, a host label against
// one label of the origin's, so a wildcard never reaches across a dot;
// a first label of just * matches one or more labels, as in
// https://*.example.com (a.example.com, a.b.example.com, not example.com).
type originPattern struct {
	raw    string // as listed, lower case
	scheme string
	labels []string
	port   string
}

// NewOrigins returns the policy of an allow-list: "*" allows any origin,
// an entry with *, ? or [ is a pattern (https://*.example.com), others are
// origins (https://h5.example.com). Matching ignores case; an invalid
// entry matches nothing.
func NewOrigins(allowed []string) Origins {
	o := Origins{exact: make(map[origin]bool)}
	for _, a := range allowed {
		a = strings.TrimSuffix(strings.TrimSpace(a), "/")
		switch {
		case a == "*":
			o.any = true
		case strings.ContainsAny(a, "*?["):
			if p, ok := parseOriginPattern(a); ok {
				o.patterns = append(o.patterns, p)
			}
		default:
			if org, ok := parseOrigin(a); ok {
				o.exact[org] = true
			}
		}
	}
	return o
}

// allows reports whether a request from origin (its Origin header, not
// empty) may proceed.
func (o Origins) allows(r *http.Request, header string) bool {
	if o.any {
		return true
	}
	org, ok := parseOrigin(header)
	if !ok {
		return false
	}
	if org.hostPort() == strings.ToLower(r.Host) {
		return true // same-origin
	}
	if o.exact[org] {
		return true
	}
	for _, p := range o.patterns {
		if p.matches(org) {
			return true
		}
	}
	return false
}

func (org origin) hostPort() string {
	if org.port == "" {
		return org.host
	}
	return org.host + ":" + org.port
}

// parseOrigin reads s as an origin, scheme://host[:port], and nothing
// more: url.Parse must find only those parts, written as they are, and the
// host must be an IP address or a DNS name without empty labels.
func parseOrigin(s string) (origin, bool) {
	s = strings.ToLower(s)
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Opaque != "" || u.User != nil || u.Path != "" || u.RawQuery != "" ||
		u.ForceQuery || u.Fragment != "" || u.Host == "" || s != u.Scheme+"://"+u.Host {
		return origin{}, false // "#", "?" or "@" with nothing after them included, by the last test
	}
	org := origin{scheme: u.Scheme, host: u.Hostname(), port: u.Port()}
	if strings.HasSuffix(u.Host, ":") || !validPort(org.port) {
		return origin{}, false
	}
	if strings.HasPrefix(u.Host, "[") { // an IPv6 literal
		ip, err := netip.ParseAddr(org.host)
		if err != nil || !ip.Is6() {
			return origin{}, false
		}
		org.host = "[" + org.host + "]"
		return org, true
	}
	for label := range strings.SplitSeq(org.host, ".") {
		if !validLabel(label) {
			return origin{}, false
		}
	}
	return org, true
}

// validLabel: a DNS label of letters, digits, - and _ (which some hosts
// carry), 1..63 bytes. Internationalised names arrive as punycode.
func validLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func validPort(p string) bool {
	if p == "" {
		return true
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && p[0] != '0'
}

// parseOriginPattern reads an allow-list entry with wildcards as
// scheme://host[:port], each part a path.Match pattern, the host one per
// label.
func parseOriginPattern(s string) (originPattern, bool) {
	scheme, hostPort, ok := strings.Cut(strings.ToLower(s), "://")
	if !ok || scheme == "" || strings.ContainsAny(hostPort, "/#@\\") {
		return originPattern{}, false
	}
	host, port, _ := strings.Cut(hostPort, ":")
	p := originPattern{raw: strings.ToLower(s), scheme: scheme, labels: strings.Split(host, "."), port: port}
	for _, part := range append([]string{scheme, port}, p.labels...) {
		if _, err := path.Match(part, ""); err != nil {
			return originPattern{}, false
		}
	}
	for _, l := range p.labels {
		if l == "" {
			return originPattern{}, false
		}
	}
	return p, true
}

// matches reports whether org matches the pattern, label by label.
func (p originPattern) matches(org origin) bool {
	if !globPart(p.scheme, org.scheme) || !globPart(p.port, org.port) || strings.HasPrefix(org.host, "[") {
		return false
	}
	labels := strings.Split(org.host, ".")
	want := p.labels
	if want[0] == "*" && len(labels) > len(want) {
		// The leading * takes the extra labels: a.b.example.com.
		labels = labels[len(labels)-len(want)+1:]
		want = want[1:]
	}
	if len(labels) != len(want) {
		return false
	}
	for i, l := range labels {
		if !globPart(want[i], l) {
			return false
		}
	}
	return true
}

// globPart matches one part of an origin against its pattern (path.Match;
// the part holds no '/', so * stays within it).
func globPart(pattern, s string) bool {
	ok, _ := path.Match(pattern, s)
	return ok
}

// AcceptOptions make coder/websocket's own origin check agree with the
// policy. Guard refuses other origins before the upgrade already, with a
// JSON answer; this keeps the WebSocket closed to them should a route skip
// Guard.
func (o Origins) AcceptOptions() websocket.AcceptOptions {
	if o.any {
		return websocket.AcceptOptions{InsecureSkipVerify: true}
	}
	var patterns []string
	for e := range o.exact {
		patterns = append(patterns, e.scheme+"://"+e.hostPort())
	}
	for _, p := range o.patterns {
		patterns = append(patterns, p.raw)
	}
	return websocket.AcceptOptions{OriginPatterns: patterns}
}

// preflightMaxAge is how long browsers may cache a preflight's answer (s).
const preflightMaxAge = "600"

// refusedOrigin says why a browser on origin is refused, and what lets it
// in: the setting, not just the rule. The origin is echoed (a header's
// text, at most 100 bytes of it).
func refusedOrigin(origin string) string {
	if len(origin) > 100 {
		origin = origin[:100] + "..."
	}
	return fmt.Sprintf("origin %s is not allowed: pushgate accepts browser requests from its own origin and the origins of "+
		"--allowed-origin (PUSHGATE_ALLOWED_ORIGINS, or allowed_origins in the config file); add it there, e.g. --allowed-origin %s",
		origin, suggestOrigin(origin))
}

// suggestOrigin is origin as an --allowed-origin value: itself when it
// parses as an origin, else a placeholder.
func suggestOrigin(origin string) string {
	if _, ok := parseOrigin(origin); ok && !strings.ContainsAny(origin, " \t\"'") {
		return origin
	}
	return "https://app.example.com"
}

// Guard applies the policy to next, whose route serves methods (for
// preflights: "GET, POST"). It answers preflights (OPTIONS with
// Access-Control-Request-Method) itself; other OPTIONS requests go to
// next, or get 204 with Allow when next is nil.
func (o Origins) Guard(methods string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if origin != "" {
			if !o.allows(r, origin) {
				httperr.Write(w, http.StatusForbidden, graph.CodeForbidden, refusedOrigin(origin))
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
		}
		if r.Method == http.MethodOptions {
			if origin != "" && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Add("Vary", "Access-Control-Request-Method")
				h.Add("Vary", "Access-Control-Request-Headers")
				h.Set("Access-Control-Allow-Methods", methods)
				if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
					h.Set("Access-Control-Allow-Headers", req) // the origin is trusted
				}
				h.Set("Access-Control-Max-Age", preflightMaxAge)
				w.WriteHeader(http.StatusNoContent)
				return
			}
			if next == nil {
				h.Set("Allow", methods)
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		if origin != "" {
			h.Set("Access-Control-Expose-Headers", "Retry-After, X-Request-Id")
		}
		next.ServeHTTP(w, r)
	})
}
