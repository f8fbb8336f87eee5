package console_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/pushgate/pushgate/console"
)

// TestEmbeddedSDKIsFresh: the SDK the page loads is the one clients/js
// builds. The copy is committed so that go build needs no Node.
func TestEmbeddedSDKIsFresh(t *testing.T) {
	want, err := os.ReadFile("../clients/js/dist/pushgate.min.js")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("static/pushgate.min.js")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("console/static/pushgate.min.js differs from clients/js/dist/pushgate.min.js: run go generate ./console and commit it")
	}
}

func get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	// No transparent gzip: the test asks for it itself.
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

// links are the page's src and href attributes.
var links = regexp.MustCompile(`(?:src|href)="([^"]*)"`)

// TestPage: /console is the page, with its security headers, revalidated on
// each load; every file it links is served with its type and cached for
// good under the hash it is linked with.
func TestPage(t *testing.T) {
	srv := httptest.NewServer(console.Handler())
	defer srv.Close()

	res, page := get(t, srv.URL+"/console")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /console: %d", res.StatusCode)
	}
	for k, v := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Content-Security-Policy": console.ContentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-cache",
	} {
		if got := res.Header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	for _, d := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(console.ContentSecurityPolicy, d) {
			t.Errorf("the policy lacks %s", d)
		}
	}
	if strings.Contains(console.ContentSecurityPolicy, "unsafe") || strings.Contains(console.ContentSecurityPolicy, "http") {
		t.Errorf("the policy allows more than the page's origin: %s", console.ContentSecurityPolicy)
	}
	if !bytes.Contains(page, []byte("<title>pushgate console</title>")) {
		t.Fatalf("not the page:\n%s", page)
	}
	if bytes.Contains(page, []byte("<script>")) || bytes.Contains(page, []byte("style=")) {
		t.Error("the page has inline script or style, which its policy refuses")
	}

	types := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
	seen := map[string]bool{}
	for _, m := range links.FindAllSubmatch(page, -1) {
		link := string(m[1])
		if link == "" {
			continue // the brand's link to the page itself
		}
		name, hash, ok := strings.Cut(strings.TrimPrefix(link, "console/"), "?v=")
		if !ok || !strings.HasPrefix(link, "console/") || len(hash) != 12 {
			t.Errorf("link %q: want console/<file>?v=<hash>, relative to the page", link)
			continue
		}
		seen[name] = true
		res, body := get(t, srv.URL+"/"+link)
		ext := name[strings.LastIndex(name, "."):]
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != types[ext] {
			t.Errorf("%s: %d %q", link, res.StatusCode, res.Header.Get("Content-Type"))
		}
		if cc := res.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
			t.Errorf("%s: Cache-Control %q", link, cc)
		}
		if res.Header.Get("Content-Security-Policy") == "" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no policy or nosniff", link)
		}
		want, err := fs.ReadFile(os.DirFS("static"), name)
		if err != nil || !bytes.Equal(body, want) {
			t.Errorf("%s: the body is not static/%s (%v)", link, name, err)
		}
		// The same file under another hash (an older page) is not cached for good.
		res, _ = get(t, srv.URL+"/console/"+name+"?v=000000000000")
		if res.StatusCode != http.StatusOK || res.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("%s with another hash: %d, Cache-Control %q", name, res.StatusCode, res.Header.Get("Cache-Control"))
		}
	}
	for _, name := range []string{"pushgate.min.js", "lib.js", "console.js", "console.css", "icon.svg"} {
		if !seen[name] {
			t.Errorf("the page does not link %s", name)
		}
	}
}

// TestPageNamesNoOtherHost: nothing the page is made of names another host
// (the browser test checks the requests; this, the files).
func TestPageNamesNoOtherHost(t *testing.T) {
	url := regexp.MustCompile(`(?i)\b(?:https?:|wss?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	for _, name := range []string{"index.html", "console.js", "lib.js", "console.css", "icon.svg"} {
		b, err := os.ReadFile("static/" + name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range url.FindAll(b, -1) {
			if string(m) != "http://www.w3.org" { // the SVG namespace, not a request
				t.Errorf("static/%s names %s", name, m)
			}
		}
	}
}

// TestRequests: conditional and compressed GETs, HEAD, other methods and
// paths.
func TestRequests(t *testing.T) {
	srv := httptest.NewServer(console.Handler())
	defer srv.Close()
	res, page := get(t, srv.URL+"/console")
	etag := res.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if res, body := get(t, srv.URL+"/console", "If-None-Match", `"other", `+etag); res.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("If-None-Match with the ETag: %d, %d bytes", res.StatusCode, len(body))
	}
	if res, _ := get(t, srv.URL+"/console", "If-None-Match", `"other"`); res.StatusCode != http.StatusOK {
		t.Errorf("If-None-Match with another ETag: %d", res.StatusCode)
	}

	res, gz := get(t, srv.URL+"/console", "Accept-Encoding", "br, gzip;q=0.8")
	if res.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(res.Header.Get("Vary"), "Accept-Encoding") {
		t.Fatalf("gzip asked for: Content-Encoding %q, Vary %q", res.Header.Get("Content-Encoding"), res.Header.Get("Vary"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	if plain, err := io.ReadAll(zr); err != nil || !bytes.Equal(plain, page) {
		t.Fatalf("the gzipped page is not the page: %v", err)
	}
	if len(gz) >= len(page) {
		t.Errorf("gzip: %d bytes for %d", len(gz), len(page))
	}
	if res, _ := get(t, srv.URL+"/console", "Accept-Encoding", "gzip;q=0"); res.Header.Get("Content-Encoding") != "" {
		t.Error("gzip;q=0 got gzip")
	}

	req, _ := http.NewRequest(http.MethodHead, srv.URL+"/console", nil)
	hres, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	hbody, _ := io.ReadAll(hres.Body)
	hres.Body.Close()
	if hres.StatusCode != http.StatusOK || len(hbody) != 0 || hres.ContentLength != int64(len(page)) {
		t.Errorf("HEAD: %d, %d bytes, Content-Length %d", hres.StatusCode, len(hbody), hres.ContentLength)
	}

	pres, err := http.Post(srv.URL+"/console", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	pres.Body.Close()
	if pres.StatusCode != http.StatusMethodNotAllowed || pres.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d, Allow %q", pres.StatusCode, pres.Header.Get("Allow"))
	}

	// The trailing slash goes to the page, relatively (a proxy's path prefix stays).
	if res, _ := get(t, srv.URL+"/console/"); res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "../console" {
		t.Errorf("/console/: %d, Location %q", res.StatusCode, res.Header.Get("Location"))
	}
	for _, p := range []string{"/console/index.html", "/console/nope.js", "/console/static/lib.js", "/consolex"} {
		res, body := get(t, srv.URL+p)
		var e struct{ Error struct{ Code string } }
		if res.StatusCode != http.StatusNotFound || json.Unmarshal(body, &e) != nil || e.Error.Code != "NOT_FOUND" {
			t.Errorf("%s: %d %s", p, res.StatusCode, body)
		}
	}
}
