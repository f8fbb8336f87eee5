package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/limits"
)

// sendPaths holds two in-process servers, each on a memory broker of its
// own, that have seen the same requests: fast gets each body as it came
// (the send transport reads it: the scanner, else encoding/json, then the
// fast path or gqlgen), ref the same body with "extensions":{} added, which
// the send transport always leaves to gqlgen. Whatever the scanner is or
// is not sure of, a body the fast path answers must be answered exactly as
// gqlgen answers it; the stores stay in step because each request appends
// to both or to neither.
type sendPaths struct {
	fast, ref http.Handler
}

const pathsKey = "paths-key"

func newSendPaths(tb testing.TB) *sendPaths {
	tb.Helper()
	cfg := Config{
		APIKeys: []access.APIKey{{Name: "paths", Secret: pathsKey}},
		// The same requests reach both servers at different moments: no
		// limit may tell them apart.
		Limits:         limits.Limits{SendRatePerKey: limits.Rate{PerSecond: -1}, ConnectRatePerIP: limits.Rate{PerSecond: -1}},
		MaxMessageSize: 512,
	}
	p := &sendPaths{}
	for _, h := range []*http.Handler{&p.fast, &p.ref} {
		b := pubsub.NewMemory(pubsub.Options{HistorySize: 10})
		tb.Cleanup(func() { _ = b.Close() })
		*h = New(cfg, b, zerolog.Nop())
	}
	return p
}

// withExtensions returns raw, a JSON object, with "extensions":{} added as
// its last member, every other byte as it was; ok false when raw is not a
// JSON object.
func withExtensions(raw []byte) ([]byte, bool) {
	body := bytes.TrimRight(raw, " \t\r\n")
	if !json.Valid(body) || len(bytes.TrimLeft(body, " \t\r\n")) == 0 || bytes.TrimLeft(body, " \t\r\n")[0] != '{' {
		return nil, false
	}
	inner := body[:len(body)-1] // without the closing brace
	out := bytes.Clone(inner)
	if len(bytes.TrimSpace(inner)) > 1 { // a member before
		out = append(out, ',')
	}
	out = append(out, `"extensions":{}}`...)
	return out, true
}

// post serves one request; one that has not ended within 10 s fails the
// test (no request but a stream may hold its caller).
func (p *sendPaths) post(t *testing.T, h http.Handler, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+pathsKey)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if ctx.Err() != nil {
		t.Fatalf("body %q: the request did not end within 10 s", body)
	}
	return w
}

// holdsOpen reports whether raw is a subscription, which gqlgen's POST
// transport answers with its first event, however long that takes (a
// subscription over plain POST is held; streams ask for
// text/event-stream). The fast path never takes one, and none appends.
func holdsOpen(raw []byte) bool {
	var params struct {
		Query string `json:"query"`
	}
	if json.NewDecoder(bytes.NewReader(raw)).Decode(&params) != nil { // as gqlgen reads it
		return false
	}
	doc, err := parser.ParseQuery(&ast.Source{Input: params.Query})
	if err != nil {
		return false
	}
	for _, op := range doc.Operations {
		if op.Operation == ast.Subscription {
			return true
		}
	}
	return false
}

// check posts raw to both servers (as it is to ref too when it is no JSON
// object: both then run gqlgen alike) and, when the fast path answered it,
// fails unless gqlgen's answer is the same; it reports whether the fast
// path answered.
func (p *sendPaths) check(t *testing.T, raw []byte) bool {
	t.Helper()
	if holdsOpen(raw) {
		return false
	}
	before := sendFastServed.Load()
	fast := p.post(t, p.fast, raw)
	served := sendFastServed.Load() != before
	refBody, ok := withExtensions(raw)
	if !ok {
		refBody = raw
		if served {
			t.Fatalf("the fast path answered %q, which is no JSON object", raw)
		}
	}
	ref := p.post(t, p.ref, refBody)
	if !served {
		return false
	}
	fb, rb := fast.Body.Bytes(), ref.Body.Bytes()
	if fast.Code != ref.Code || fast.Header().Get("Content-Type") != ref.Header().Get("Content-Type") {
		t.Fatalf("body %q\nfast path %d %q %s\ngqlgen    %d %q %s", raw, fast.Code, fast.Header().Get("Content-Type"), fb, ref.Code, ref.Header().Get("Content-Type"), rb)
	}
	nf, err1 := normalizedTokens(fb)
	nr, err2 := normalizedTokens(rb)
	if err1 != nil || err2 != nil || nf != nr {
		t.Fatalf("body %q\nfast path %s\ngqlgen    %s\n(%v, %v)", raw, fb, rb, err1, err2)
	}
	return true
}

// normalizedTokens lists the JSON tokens of an answer in order, with what
// differs between two stores that saw the same sends blanked: times, and
// the epochs inside cursors (channels and offsets stay).
func normalizedTokens(b []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out strings.Builder
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return out.String(), nil
		}
		if err != nil {
			return "", err
		}
		if s, ok := tok.(string); ok {
			if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
				tok = "<time>"
			} else if c, err := pubsub.ParseCursor(s); err == nil && !c.IsZero() {
				var ps []string
				for _, p := range c.Positions() {
					ps = append(ps, fmt.Sprintf("%s@%d", p.Channel, p.Offset))
				}
				tok = "<cursor " + strings.Join(ps, " ") + ">"
			}
		}
		fmt.Fprintf(&out, "%v\x00", tok)
	}
}

// TestSendPathsAgree: the differential check on bodies the scanner is
// sure of, bodies it leaves to encoding/json that the fast path still
// takes, and bodies only gqlgen takes.
func TestSendPathsAgree(t *testing.T) {
	p := newSendPaths(t)
	q := quoteJSON(sendQ)
	for _, c := range []struct {
		body string
		fast bool // the fast path answers it
	}{
		{`{"query":` + q + `,"variables":{"in":{"channel":"c","data":{"b":1,"a":[true,null]}}}}`, true},
		{`{"query":` + q + `,"variables":{"in":{"channel":"c","data":"a\nb","event":"e","idempotencyKey":"k"}}}`, true}, // an escape: encoding/json reads it
		{`{"query":` + q + `,"variables":{"in":{"channel":"c","data":2,"event":"e","idempotencyKey":"k"}}}`, true},      // the same key: the original
		{`{"query":` + q + `,"variables":{"in":{"channel":"c","data":{"\u0061":1,"a":2}}}}`, true},                      // a duplicate key after an escape
		{`{"query":` + q + `,"QUERY":` + q + `,"variables":{"in":{"channel":"c","data":1}}}`, true},                     // a key in other case
		{`{"query":` + q + `,"variables":{"in":{"channel":"bad channel","data":1}}}`, true},                             // refused alike
		{`{"query":` + q + `,"variables":{"in":{"channel":"c","data":"` + strings.Repeat("x", 600) + `"}}}`, true},      // too large
		{`{"query":` + q + `,"variables":{"in":{"channel":"c","data":1}}}` + "\n\t", true},                              // trailing space
		{`{"query":` + q + `,"variables":{"in":{"channel":"c","data":1,"ttl":1}}}`, false},                              // an unknown field
		{`{"query":"mutation { send(input: {channel: \"c\", data: 1}) { message { id } } }"}`, false},                   // an inline input
		{`{"query":` + q + `,"variables":{"in":{"channel":"c","data":1}}}x`, false},                                     // trailing garbage
		{`{"query":"subscription { feed(channels: [\"c\"]) { __typename } }"}`, false},                                  // held: not posted
		{`[]`, false},
		{``, false},
	} {
		if served := p.check(t, []byte(c.body)); served != c.fast {
			t.Errorf("%.80s: the fast path answered: %v, want %v", c.body, served, c.fast)
		}
	}
	// Both stores saw the same: the next send has the same id on both.
	p.check(t, []byte(`{"query":`+q+`,"variables":{"in":{"channel":"c","data":"last"}}}`))
}

func TestWithExtensions(t *testing.T) {
	for in, want := range map[string]string{
		`{}`:           `{"extensions":{}}`,
		` { } `:        ` { "extensions":{}}`,
		`{"a":1}`:      `{"a":1,"extensions":{}}`,
		"{\"a\":{}}\n": `{"a":{},"extensions":{}}`,
		`[]`:           "",
		`{"a":1}x`:     "",
		`"{}"`:         "",
		``:             "",
	} {
		got, ok := withExtensions([]byte(in))
		if ok != (want != "") || string(got) != want {
			t.Errorf("withExtensions(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
