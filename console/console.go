// Package console serves pushgate's console page at /console: a page to
// watch channels live, send, page through history, run GraphQL queries and
// read the server's metrics, built on the client SDK (@pushgate/client).
//
// It owns the page's files (static/, embedded in the binary) and the HTTP
// headers they are served with. It knows nothing of the server: the page
// talks to pushgate as any browser client does, through /graphql, /events,
// /poll and /metrics, with the key or token its user enters. The server
// mounts Handler on /console and /console/ when the console is on.
//
// static/pushgate.min.js is a copy of clients/js/dist/pushgate.min.js made
// by `go generate ./console` and committed, so that go build and go install
// never need Node; TestEmbeddedSDKIsFresh fails when the copy is stale.
package console

//go:generate cp ../clients/js/dist/pushgate.min.js static/pushgate.min.js

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed static
var static embed.FS

// Path is where the page is served.
const Path = "/console"

// ContentSecurityPolicy lets the page load and connect to its own origin
// only: no inline script or style, no other host (the page uses no CDN
// and no web font), no framing. connect-src 'self' covers the same host's
// ws:// and wss:// (CSP Level 3).
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// types are the Content-Types of the files in static/.
var types = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// file is one served file, prepared once: its body, gzipped when that is
// smaller, and its ETag.
type file struct {
	ctype string
	body  []byte
	gz    []byte // nil: served as is
	etag  string
	hash  string // of the body: the ?v= of the page's links to it
}

// site is every file, by name under static/; index.html links to each
// asset with ?v=<hash>, so that a browser may cache an asset for good
// while the page itself is revalidated on each load.
type site struct {
	index  *file
	assets map[string]*file
}

var page = mustLoad()

func mustLoad() *site {
	s, err := load(static)
	if err != nil {
		panic("console: " + err.Error()) // the embedded files are part of the binary
	}
	return s
}

func load(fsys embed.FS) (*site, error) {
	s := &site{assets: make(map[string]*file)}
	var index []byte
	err := fs.WalkDir(fsys, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fsys.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(p, "static/")
		if name == "index.html" {
			index = b
			return nil
		}
		ctype, ok := types[path.Ext(name)]
		if !ok {
			return nil // not served
		}
		s.assets[name] = newFile(ctype, b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if index == nil {
		return nil, fs.ErrNotExist
	}
	for name, f := range s.assets {
		index = bytes.ReplaceAll(index, []byte(`"console/`+name+`"`), []byte(`"console/`+name+`?v=`+f.hash+`"`))
	}
	s.index = newFile(types[".html"], index)
	return s, nil
}

func newFile(ctype string, body []byte) *file {
	sum := sha256.Sum256(body)
	f := &file{ctype: ctype, body: body, hash: hex.EncodeToString(sum[:6])}
	f.etag = `"` + hex.EncodeToString(sum[:12]) + `"`
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(body)
	_ = zw.Close()
	if buf.Len() < len(body)*9/10 {
		f.gz = buf.Bytes()
	}
	return f
}

// Handler serves the page on /console and its files under /console/:
// GET and HEAD only, with a strict Content-Security-Policy. /console/
// redirects to /console (relatively, so that a path prefix of a reverse
// proxy stays). The page revalidates on every load (ETag); an asset asked
// for with the hash the page links it with is cached for a year, since
// that URL always names these bytes.
func Handler() http.Handler {
	return http.HandlerFunc(page.serve)
}

func (s *site) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", r.Method+" is not allowed on "+r.URL.Path)
		return
	}
	var f *file
	immutable := false
	switch name, sub := strings.CutPrefix(r.URL.Path, Path+"/"); {
	case r.URL.Path == Path:
		f = s.index
	case sub && name == "":
		w.Header().Set("Location", "../console")
		w.WriteHeader(http.StatusMovedPermanently)
		return
	case sub && s.assets[name] != nil:
		f = s.assets[name]
		immutable = r.URL.Query().Get("v") == f.hash
	default:
		writeError(w, http.StatusNotFound, "NOT_FOUND", "no route for "+r.URL.Path)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("ETag", f.etag)
	if immutable {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	body := f.body
	if f.gz != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			body = f.gz
		}
	}
	if etagMatch(r.Header.Get("If-None-Match"), f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}

// acceptsGzip reports whether an Accept-Encoding lists gzip without q=0.
func acceptsGzip(ae string) bool {
	for part := range strings.SplitSeq(ae, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q := strings.ReplaceAll(strings.ToLower(params), " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}

// etagMatch reports whether If-None-Match names etag (weakly, as RFC 9110
// has it for If-None-Match), or is *.
func etagMatch(inm, etag string) bool {
	for t := range strings.SplitSeq(inm, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// writeError answers with pushgate's error body for plain HTTP routes:
// {"error":{"code":...,"message":...}}.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]map[string]string{"error": {"code": code, "message": msg}})
}
