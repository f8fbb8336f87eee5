package server_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/server/limits"
)

// Hostile clients and mutations of several sends (issue 12, item 7): the
// checks are all or nothing, and what was appended is always in the
// answer.

// multiError is a GraphQL error with its path.
type multiError struct {
	Message    string `json:"message"`
	Path       []any  `json:"path"`
	Extensions struct {
		Code string `json:"code"`
	} `json:"extensions"`
}

type multiResponse struct {
	Data   map[string]json.RawMessage `json:"data"`
	Errors []multiError               `json:"errors"`
}

// postMulti posts a mutation and decodes its answer (data null decodes as
// a nil map).
func (e *env) postMulti(t *testing.T, cred, query string, vars map[string]any) (multiResponse, []byte) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	_, _, raw := postRaw(t, e.url+"/graphql", cred, nil, body)
	var out multiResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("answer %s: %v", raw, err)
	}
	return out, raw
}

// onlyFieldError decodes an answer that must be one error, on field, whose
// value is null: a refusal of that field alone.
func onlyFieldError(t *testing.T, raw []byte, field string) limitError {
	t.Helper()
	var out struct {
		Data   map[string]json.RawMessage `json:"data"`
		Errors []limitError               `json:"errors"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("body %s: %v", raw, err)
	}
	if len(out.Errors) != 1 || len(out.Data) != 1 || string(out.Data[field]) != "null" {
		t.Fatalf("want one error and %s null, got %s", field, raw)
	}
	return out.Errors[0]
}

// refusedWhole checks an answer refused before anything ran: data null,
// one error at path with code, saying nothing was sent.
func refusedWhole(t *testing.T, res multiResponse, raw []byte, path, code string) {
	t.Helper()
	if res.Data != nil || len(res.Errors) != 1 {
		t.Fatalf("want one error and no data, got %s", raw)
	}
	e := res.Errors[0]
	if e.Extensions.Code != code || len(e.Path) != 1 || e.Path[0] != path || !strings.Contains(e.Message, "nothing of this mutation was sent") {
		t.Fatalf("want %s at [%s] saying nothing was sent, got %s", code, path, raw)
	}
}

const twoSends = `mutation($a: SendInput!, $b: SendInput!) {
  a: send(input: $a) { message { channel id } }
  b: send(input: $b) { message { channel id } }
}`

// TestMultiSendAllOrNothing: a mutation of several sends and broadcasts
// in which any one field is refused (access, channel, size, event, key,
// duplicate channels, the send rate or burst) appends nothing at all, on
// HTTP and on the WebSocket, and answers the refused field's error at its
// path; one in which none is refused sends them all, in order.
func TestMultiSendAllOrNothing(t *testing.T) {
	cfg := accessConfig()
	cfg.Limits.SendRatePerKey = limits.Rate{PerSecond: 0.001, Burst: 6}
	e := startEnv(t, cfg, accessBroker(t, cfg))
	in := func(ch string, data any, extra ...string) map[string]any {
		m := map[string]any{"channel": ch, "data": data}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	watched := []string{"orders:1", "orders:2", "orders:3", "news:1"}
	nothing := func(t *testing.T) {
		t.Helper()
		for _, ch := range watched {
			if ids := e.ids(t, ch); len(ids) != 0 {
				t.Fatalf("%s holds %v after a refused mutation", ch, ids)
			}
		}
	}

	for _, tt := range []struct {
		name, cred, query string
		vars              map[string]any
		path, code        string
	}{
		{"second outside the key", ordersKey, twoSends,
			map[string]any{"a": in("orders:1", 1), "b": in("news:1", 2)}, "b", "FORBIDDEN"},
		{"first outside the key", ordersKey, twoSends,
			map[string]any{"a": in("news:1", 1), "b": in("orders:1", 2)}, "a", "FORBIDDEN"},
		{"invalid channel", testKey, twoSends,
			map[string]any{"a": in("orders:1", 1), "b": in("bad channel", 2)}, "b", "BAD_USER_INPUT"},
		{"user: without id", testKey, twoSends,
			map[string]any{"a": in("orders:1", 1), "b": in("user:", 2)}, "b", "BAD_USER_INPUT"},
		{"invalid event", testKey, twoSends,
			map[string]any{"a": in("orders:1", 1), "b": in("orders:2", 2, "event", "no spaces")}, "b", "BAD_USER_INPUT"},
		{"invalid idempotency key", testKey, twoSends,
			map[string]any{"a": in("orders:1", 1), "b": in("orders:2", 2, "idempotencyKey", strings.Repeat("k", 129))}, "b", "BAD_USER_INPUT"},
		{"too large", testKey, twoSends,
			map[string]any{"a": in("orders:1", 1), "b": in("orders:2", strings.Repeat("x", 2000))}, "b", "PAYLOAD_TOO_LARGE"},
		{"broadcast after a send, one channel outside", ordersKey,
			`mutation($a: SendInput!) { a: send(input: $a) { message { id } } b: broadcast(input: {channels: ["orders:2", "news:1"], data: 1}) { messages { id } } }`,
			map[string]any{"a": in("orders:1", 1)}, "b", "FORBIDDEN"},
		{"broadcast naming a channel twice", testKey,
			`mutation($a: SendInput!) { a: send(input: $a) { message { id } } b: broadcast(input: {channels: ["orders:2", "orders:2"], data: 1}) { messages { id } } }`,
			map[string]any{"a": in("orders:1", 1)}, "b", "BAD_USER_INPUT"},
		{"inline data that is not JSON", testKey,
			`mutation($a: SendInput!) { a: send(input: $a) { message { id } } b: send(input: {channel: "orders:2", data: hello}) { message { id } } }`,
			map[string]any{"a": in("orders:1", 1)}, "", "BAD_USER_INPUT"},
		{"a fragment", ordersKey,
			`mutation($a: SendInput!, $b: SendInput!) { a: send(input: $a) { message { id } } ...F } fragment F on Mutation { b: send(input: $b) { message { id } } }`,
			map[string]any{"a": in("orders:1", 1), "b": in("news:1", 2)}, "b", "FORBIDDEN"},
		{"over the send burst", testKey,
			`mutation($a: SendInput!) { a: send(input: $a) { message { id } } b: broadcast(input: {channels: ["orders:2", "orders:3", "a", "b", "c", "d"], data: 1}) { messages { id } } }`,
			map[string]any{"a": in("orders:1", 1)}, "", "BAD_USER_INPUT"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, raw := e.postMulti(t, tt.cred, tt.query, tt.vars)
			switch {
			case tt.path != "":
				refusedWhole(t, res, raw, tt.path, tt.code)
			case res.Data != nil || len(res.Errors) == 0 || (tt.code != "" && res.Errors[0].Extensions.Code != tt.code):
				t.Fatalf("want a refusal with no data, got %s", raw)
			}
			nothing(t)
		})
	}

	// The same refusal over the WebSocket.
	for _, proto := range protocols {
		c := e.dialWS(t, proto, "", nil)
		c.init(map[string]any{"token": ordersKey})
		raw, _ := json.Marshal(map[string]any{"query": twoSends, "variables": map[string]any{"a": in("orders:1", 1), "b": in("news:1", 2)}})
		typ := map[string]string{transportWS: "subscribe", legacyWS: "start"}[proto]
		c.write(wsMsg{Type: typ, ID: "m", Payload: raw})
		if code := c.errorCode("m"); code != "FORBIDDEN" {
			t.Fatalf("%s: %s", proto, code)
		}
		nothing(t)
	}

	// Nothing refused: everything is sent, in order, and the refusals
	// above took nothing from the rate (the burst of 6 covers these 4).
	res, raw := e.postMulti(t, ordersKey, `mutation($a: SendInput!, $b: SendInput!) {
  a: send(input: $a) { message { channel id } }
  b: send(input: $b) { message { channel id } }
  c: broadcast(input: {channels: ["orders:2", "orders:3"], data: 3}) { messages { channel id } }
}`, map[string]any{"a": in("orders:1", 1), "b": in("orders:2", 2)})
	if len(res.Errors) > 0 || len(res.Data) != 3 {
		t.Fatalf("mutation of allowed sends: %s", raw)
	}
	for ch, want := range map[string][]string{"orders:1": {"1"}, "orders:2": {"1", "2"}, "orders:3": {"1"}} {
		if ids := e.ids(t, ch); !slices.Equal(ids, want) {
			t.Fatalf("%s holds %v, want %v (%s)", ch, ids, want, raw)
		}
	}
	// The rate: 2 tokens left; three sends are refused as a whole.
	res, raw = e.postMulti(t, ordersKey, `mutation($a: SendInput!) { a: send(input: $a) { message { id } } b: send(input: $a) { message { id } } c: send(input: $a) { message { id } } }`,
		map[string]any{"a": in("orders:1", 9)})
	if res.Data != nil || len(res.Errors) != 1 || res.Errors[0].Extensions.Code != "RATE_LIMITED" {
		t.Fatalf("over the rate: %s", raw)
	}
	if ids := e.ids(t, "orders:1"); !slices.Equal(ids, []string{"1"}) {
		t.Fatalf("orders:1 holds %v after a rate-limited mutation", ids)
	}
}

// redisEnv serves pushgate over a Redis store of its own, and returns a
// client of that Redis too.
func redisEnv(t *testing.T, cfg server.Config) (*env, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	ropts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(ropts)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	b, err := pubsub.NewRedis(ctx, client, pubsub.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.Close()
		_ = client.Close()
	})
	return startEnv(t, cfg, b), client
}

// TestMultiSendStoreFailureMidway: when the store fails a field of a
// mutation of several sends (real Redis, whose keys for one channel hold a
// value of the wrong type, so its appends fail), the fields before it keep
// their messages in the answer, the failed field and every send after it
// are null with an error (those after it are not sent), and a broadcast
// the store stops midway answers the messages it appended with its error.
func TestMultiSendStoreFailureMidway(t *testing.T) {
	e, rdb := redisEnv(t, testConfig())
	ctx := context.Background()
	for _, suffix := range []string{":m", ":s"} {
		if err := rdb.Set(ctx, pubsub.DefaultRedisPrefix+"{broken}"+suffix, "not a stream", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	res, raw := e.postMulti(t, testKey, `mutation {
  a: send(input: {channel: "ok:1", data: 1}) { message { channel id } }
  b: send(input: {channel: "broken", data: 2}) { message { channel id } }
  c: send(input: {channel: "ok:2", data: 3}) { message { channel id } }
  d: broadcast(input: {channels: ["ok:3"], data: 4}) { messages { channel id } }
}`, nil)
	var a struct{ Message message }
	if err := json.Unmarshal(res.Data["a"], &a); err != nil || a.Message.Channel != "ok:1" || a.Message.ID != "1" {
		t.Fatalf("a: the message sent is not in the answer: %s", raw)
	}
	for _, f := range []string{"b", "c", "d"} {
		if string(res.Data[f]) != "null" {
			t.Fatalf("%s: want null, got %s", f, raw)
		}
	}
	byPath := map[string]multiError{}
	for _, e := range res.Errors {
		if len(e.Path) == 1 {
			byPath[e.Path[0].(string)] = e
		}
	}
	if len(res.Errors) != 3 || byPath["b"].Extensions.Code == "" ||
		byPath["c"].Extensions.Code != "UNAVAILABLE" || !strings.Contains(byPath["c"].Message, `field "b"`) ||
		byPath["d"].Extensions.Code != "UNAVAILABLE" {
		t.Fatalf("want errors at b, c and d: %s", raw)
	}
	for ch, want := range map[string][]string{"ok:1": {"1"}, "ok:2": {}, "ok:3": {}} {
		if ids := e.ids(t, ch); !slices.Equal(ids, want) {
			t.Fatalf("%s holds %v, want %v", ch, ids, want)
		}
	}

	// A broadcast the store stops at its second channel.
	res, raw = e.postMulti(t, testKey, broadcastMutation, broadcastVars([]string{"ok:4", "broken", "ok:5"}, 5))
	var bc struct{ Messages []message }
	if err := json.Unmarshal(res.Data["broadcast"], &bc); err != nil || len(bc.Messages) != 1 || bc.Messages[0].Channel != "ok:4" ||
		len(res.Errors) != 1 || res.Errors[0].Path[0] != "broadcast" || !strings.Contains(res.Errors[0].Message, "after 1 of 3 channels") {
		t.Fatalf("broadcast stopped midway: %s", raw)
	}
	if ids := e.ids(t, "ok:4"); !slices.Equal(ids, []string{"1"}) {
		t.Fatalf("ok:4 holds %v", ids)
	}
	// Retried with the channels it did not reach, the rest is sent.
	rdb.Del(ctx, pubsub.DefaultRedisPrefix+"{broken}:m", pubsub.DefaultRedisPrefix+"{broken}:s")
	res, raw = e.postMulti(t, testKey, twoSends, map[string]any{"a": map[string]any{"channel": "broken", "data": 2},
		"b": map[string]any{"channel": "ok:2", "data": 3}})
	if len(res.Errors) > 0 || len(res.Data) != 2 {
		t.Fatalf("the retry: %s", raw)
	}
}
