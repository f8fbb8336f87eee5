package server

import (
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/coder/websocket"

	"github.com/pushgate/pushgate/graph"
)

// origins is the policy for browser origins on the routes browsers use
// (/graphql, its WebSocket, /events, /poll). A request without Origin (a
// mini-program, an app, a server) is always allowed; a same-origin request
// too; another origin must match the allow-list, else it is refused with
// 403. Allowed cross-origin requests get CORS headers and their preflights
// an answer.
type origins struct {
	any      bool
	exact    map[string]bool
	patterns []string // path.Match patterns: https://*.example.com
}

// newOrigins returns the policy of an allow-list: "*" allows any origin,
// an entry with * is a pattern whose * matches within a host name
// (https://*.example.com), others are origins (https://h5.example.com).
// Matching ignores case; an invalid pattern matches nothing.
func newOrigins(allowed []string) origins {
	o := origins{exact: make(map[string]bool)}
	for _, a := range allowed {
		a = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(a), "/"))
		switch {
		case a == "*":
			o.any = true
		case strings.ContainsAny(a, "*?["):
			o.patterns = append(o.patterns, a)
		case a != "":
			o.exact[a] = true
		}
	}
	return o
}

// allows reports whether a request from origin (its Origin header, not
// empty) may proceed.
func (o origins) allows(r *http.Request, origin string) bool {
	if o.any {
		return true
	}
	if u, err := url.Parse(origin); err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host) {
		return true // same-origin
	}
	origin = strings.ToLower(origin)
	if o.exact[origin] {
		return true
	}
	for _, p := range o.patterns {
		if ok, _ := path.Match(p, origin); ok {
			return true
		}
	}
	return false
}

// acceptOptions make coder/websocket's own origin check agree with the
// policy. guard refuses other origins before the upgrade already, with a
// JSON answer; this keeps the WebSocket closed to them should a route skip
// guard.
func (o origins) acceptOptions() websocket.AcceptOptions {
	if o.any {
		return websocket.AcceptOptions{InsecureSkipVerify: true}
	}
	var patterns []string
	for e := range o.exact {
		patterns = append(patterns, e)
	}
	return websocket.AcceptOptions{OriginPatterns: append(patterns, o.patterns...)}
}

// preflightMaxAge is how long browsers may cache a preflight's answer (s).
const preflightMaxAge = "600"

// guard applies the policy to next, whose route serves methods (for
// preflights: "GET, POST"). It answers preflights (OPTIONS with
// Access-Control-Request-Method) itself; other OPTIONS requests go to
// next, or get 204 with Allow when next is nil.
func (o origins) guard(methods string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if origin != "" {
			if !o.allows(r, origin) {
				writeError(w, http.StatusForbidden, graph.CodeForbidden, "origin "+origin+
					" is not allowed: pushgate accepts browser requests from its own origin and its allowed origins only")
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
