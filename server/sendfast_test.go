package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/limits"
)

// sendCase is one POST /graphql of TestSendFastPath.
type sendCase struct {
	name      string
	query     string
	variables string // JSON
	operation string
	cred      string // "" : the test key
	accept    string
	fast      bool // the fast path answers it
}

const plainSend = `mutation($in: SendInput!) { send(input: $in) { message { id channel event data createdAt cursor } duplicate } }`

var sendCases = []sendCase{
	{name: "plain", query: plainSend, variables: `{"in":{"channel":"fast","data":{"b":1,"a":[true,null,"x"]}}}`, fast: true},
	{name: "aliases, typenames, order", query: `mutation Push($m: SendInput!) { s: send(input: $m) { __typename d: duplicate msg: message { c: cursor __typename id } } }`,
		variables: `{"m":{"channel":"fast","data":"hi"}}`, operation: "Push", fast: true},
	{name: "event and idempotency key", query: plainSend, variables: `{"in":{"channel":"fast","data":1,"event":"ev","idempotencyKey":"k1"}}`, fast: true},
	{name: "the same key again: the original", query: plainSend, variables: `{"in":{"channel":"fast","data":2,"event":"ev","idempotencyKey":"k1"}}`, fast: true},
	{name: "null optionals", query: plainSend, variables: `{"in":{"channel":"fast","data":[],"event":null,"idempotencyKey":null}}`, fast: true},
	{name: "data re-encoded as gqlgen does", query: plainSend,
		variables: `{"in":{"channel":"fast","data":{"z":"\u2028<&>","y":1.50e+3,"x":"\ud83d\ude00","big":123456789012345678901234567890}}}`, fast: true},
	{name: "invalid channel", query: plainSend, variables: `{"in":{"channel":"bad channel","data":1}}`, fast: true},
	{name: "forbidden channel", query: plainSend, variables: `{"in":{"channel":"other:1","data":1}}`, cred: "scoped-key", fast: true},
	{name: "too large", query: plainSend, variables: `{"in":{"channel":"fast","data":"` + strings.Repeat("x", 300) + `"}}`, fast: true},
	{name: "invalid event", query: plainSend, variables: `{"in":{"channel":"fast","data":1,"event":"no spaces"}}`, fast: true},
	{name: "no credentials", query: plainSend, variables: `{"in":{"channel":"fast","data":1}}`, cred: "-", fast: true},
	{name: "bad key", query: plainSend, variables: `{"in":{"channel":"fast","data":1}}`, cred: "nope", fast: true},
	{name: "accept graphql-response+json", query: plainSend, variables: `{"in":{"channel":"fast","data":1}}`,
		accept: "application/graphql-response+json", fast: true},
	{name: "accept graphql-response+json, error", query: plainSend, variables: `{"in":{"channel":"other:1","data":1}}`,
		cred: "scoped-key", accept: "application/graphql-response+json", fast: true},
	{name: "accept with parameters and a list", query: plainSend, variables: `{"in":{"channel":"fast","data":1}}`,
		accept: "text/html;q=0.9, application/json;q=0.5, */*", fast: true},
	{name: "accept nothing known", query: plainSend, variables: `{"in":{"channel":"fast","data":1}}`, accept: "text/html", fast: true},
	{name: "accept malformed", query: plainSend, variables: `{"in":{"channel":"fast","data":1}}`, accept: ";;, application/*", fast: true},

	// gqlgen's: the fast path declines them.
	{name: "unknown input field", query: plainSend, variables: `{"in":{"channel":"fast","data":1,"extra":1}}`},
	{name: "channel a number", query: plainSend, variables: `{"in":{"channel":7,"data":1}}`},
	{name: "data null", query: plainSend, variables: `{"in":{"channel":"fast","data":null}}`},
	{name: "no data", query: plainSend, variables: `{"in":{"channel":"fast"}}`},
	{name: "event a number", query: plainSend, variables: `{"in":{"channel":"fast","data":1,"event":5}}`},
	{name: "input null", query: plainSend, variables: `{"in":null}`},
	{name: "input a list", query: plainSend, variables: `{"in":[{"channel":"fast","data":1}]}`},
	{name: "two variables", query: plainSend, variables: `{"in":{"channel":"fast","data":1},"x":1}`},
	{name: "misnamed variable", query: plainSend, variables: `{"input":{"channel":"fast","data":1}}`},
	{name: "unknown operation", query: plainSend, variables: `{"in":{"channel":"fast","data":1}}`, operation: "Nope"},
	{name: "inline input", query: `mutation { send(input: {channel: "fast", data: 1}) { message { id } } }`, variables: `{}`},
	{name: "skip directive", query: `mutation($in: SendInput!, $s: Boolean!) { send(input: $in) { message { id @skip(if: $s) } } }`,
		variables: `{"in":{"channel":"fast","data":1},"s":true}`},
	{name: "fragment", query: `mutation($in: SendInput!) { send(input: $in) { ...P } } fragment P on SendPayload { message { id } }`,
		variables: `{"in":{"channel":"fast","data":1}}`},
	{name: "two sends", query: `mutation($in: SendInput!) { a: send(input: $in) { message { id } } b: send(input: $in) { message { id } } }`,
		variables: `{"in":{"channel":"fast","data":1}}`},
	{name: "nullable variable", query: `mutation($in: SendInput) { send(input: $in) { message { id } } }`, variables: `{"in":{"channel":"fast","data":1}}`},
	{name: "unknown field", query: `mutation($in: SendInput!) { send(input: $in) { message { id nope } } }`, variables: `{"in":{"channel":"fast","data":1}}`},
	{name: "syntax error", query: `mutation($in: SendInput!) { send(input: $in) { message { id }`, variables: `{"in":{"channel":"fast","data":1}}`},
	{name: "a query", query: `query($in: SendInput!) { send(input: $in) { message { id } } }`, variables: `{"in":{"channel":"fast","data":1}}`},
}

// TestSendFastPath: every send, on the fast path or not, answers exactly
// as gqlgen's executor does (the same request with extensions goes to
// gqlgen), and what the fast path stores reads back the same in history.
func TestSendFastPath(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMessageSize = 256
	cfg.APIKeys = append(cfg.APIKeys, access.APIKey{Name: "scoped", Secret: "scoped-key", Channels: []string{"orders:*"}})
	fastEnv := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	refEnv := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	for _, c := range sendCases {
		before := server.SendFastServed()
		fs, fh, fb := rawPost(t, fastEnv.url, c, false)
		if got := server.SendFastServed() - before; got != map[bool]int64{true: 1}[c.fast] {
			t.Errorf("%s: fast path answered %d times, want fast=%v", c.name, got, c.fast)
		}
		rs, rh, rb := rawPost(t, refEnv.url, c, true)
		if fs != rs || fh.Get("Content-Type") != rh.Get("Content-Type") || fh.Get("Retry-After") != rh.Get("Retry-After") {
			t.Errorf("%s: status %d %q vs gqlgen's %d %q", c.name, fs, fh.Get("Content-Type"), rs, rh.Get("Content-Type"))
		}
		if nf, nr := normalizeSend(fb), normalizeSend(rb); nf != nr {
			t.Errorf("%s:\nfast   %s\ngqlgen %s", c.name, fb, rb)
		}
		if c.fast && bytes.Contains(fb, []byte(`"cursor"`)) {
			checkStored(t, fastEnv, fb)
		}
	}
}

// TestSendFastPathRateLimited: over the send rate, both paths answer
// RATE_LIMITED with the same Retry-After.
func TestSendFastPathRateLimited(t *testing.T) {
	cfg := testConfig()
	cfg.Limits.SendRatePerKey = limits.Rate{PerSecond: 0.01, Burst: 1}
	fastEnv := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	refEnv := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	c := sendCase{query: plainSend, variables: `{"in":{"channel":"fast","data":1}}`}
	for i := range 2 {
		fs, fh, fb := rawPost(t, fastEnv.url, c, false)
		rs, rh, rb := rawPost(t, refEnv.url, c, true)
		if fs != rs || fh.Get("Retry-After") != rh.Get("Retry-After") || normalizeSend(fb) != normalizeSend(rb) {
			t.Errorf("send %d: fast %d %q %s\ngqlgen %d %q %s", i, fs, fh.Get("Retry-After"), fb, rs, rh.Get("Retry-After"), rb)
		}
		if i == 1 && !bytes.Contains(fb, []byte("RATE_LIMITED")) {
			t.Errorf("the second send was not refused: %s", fb)
		}
	}
}

// rawPost sends c; toGqlgen adds empty extensions, which only gqlgen's
// path takes.
func rawPost(t *testing.T, url string, c sendCase, toGqlgen bool) (int, http.Header, []byte) {
	t.Helper()
	q, _ := json.Marshal(c.query)
	body := `{"query":` + string(q) + `,"variables":` + c.variables
	if c.operation != "" {
		body += `,"operationName":"` + c.operation + `"`
	}
	if toGqlgen {
		body += `,"extensions":{}`
	}
	body += "}"
	cred := c.cred
	switch cred {
	case "":
		cred = testKey
	case "-":
		cred = ""
	}
	var h http.Header
	if c.accept != "" {
		h = http.Header{"Accept": {c.accept}}
	}
	return postRaw(t, url+"/graphql", cred, h, []byte(body))
}

var sendVolatile = regexp.MustCompile(`"(createdAt|cursor|c)":"[^"]*"`)

// normalizeSend blanks what differs between two servers: times, cursors
// (their epochs differ).
func normalizeSend(b []byte) string {
	return sendVolatile.ReplaceAllString(string(b), `"$1":"~"`)
}

// checkStored: the message a send answered is the one history holds.
func checkStored(t *testing.T, e *env, answer []byte) {
	t.Helper()
	var out struct {
		Data struct {
			Send struct{ Message message } `json:"send"`
		} `json:"data"`
	}
	if err := json.Unmarshal(answer, &out); err != nil {
		t.Fatal(err)
	}
	m := out.Data.Send.Message
	if m.Channel == "" {
		return // another selection
	}
	q, _ := json.Marshal(map[string]any{"query": `query($c: String!) { history(channel: $c, last: 1) { nodes { id channel event data createdAt cursor } } }`,
		"variables": map[string]any{"c": m.Channel}})
	_, _, raw := postGraphQL(t, e.url+"/graphql", testKey, q)
	var h struct {
		Data struct {
			History struct{ Nodes []message } `json:"history"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &h); err != nil || len(h.Data.History.Nodes) != 1 {
		t.Fatalf("history: %s", raw)
	}
	got := h.Data.History.Nodes[0]
	if got.ID != m.ID || got.Cursor != m.Cursor || got.CreatedAt != m.CreatedAt || !bytes.Equal(got.Data, m.Data) ||
		(got.Event == nil) != (m.Event == nil) || (got.Event != nil && *got.Event != *m.Event) {
		t.Errorf("history holds %+v, the send answered %+v", got, m)
	}
}
