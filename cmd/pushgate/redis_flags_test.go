package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/redistest"
)

// TestRunRedisFencingFlag: --redis-fencing reaches the store. With it on,
// a Redis restart (a new replication ID) starts a new epoch at the next
// send, so offsets the old master handed out are never reused silently;
// with it off (auto, on a single server) the epoch survives the restart.
func TestRunRedisFencingFlag(t *testing.T) {
	for _, tc := range []struct {
		fencing  string
		newEpoch bool
	}{{"on", true}, {"off", false}, {"auto", false}} {
		t.Run(tc.fencing, func(t *testing.T) {
			r := redistest.Start(t)
			const ch = "fence:1"
			p := start(t, "--redis-url", r.URL(), "--redis-fencing", tc.fencing, "--redis-wait-timeout", "50ms")
			p.send(t, ch, 1)
			p.send(t, ch, 2)
			before := p.epoch(t, ch)
			r.Stop(t)
			r.Start(t)
			deadline := time.Now().Add(20 * time.Second)
			for {
				err := p.trySend(ch, 3)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("send after the Redis restart: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			after := p.epoch(t, ch)
			if (after != before) != tc.newEpoch {
				t.Fatalf("epoch %s before the restart, %s after: want a new one %v", before, after, tc.newEpoch)
			}
			// Either way nothing is lost: the three messages are retained.
			if h := p.history(t, ch); len(h) != 3 {
				t.Fatalf("history after the restart: %+v", h)
			}
		})
	}
}

// TestRunRedisWaitReplicasFlag: --redis-wait-replicas reaches the store.
// A server without replicas cannot confirm a publish: the send fails with
// UNAVAILABLE within the wait timeout. The master stored it (WAIT does not
// roll back); a retry with the same idempotency key, unconfirmed too,
// appends nothing more.
func TestRunRedisWaitReplicasFlag(t *testing.T) {
	r := redistest.Start(t)
	p := start(t, "--redis-url", r.URL(), "--redis-wait-replicas", "1", "--redis-wait-timeout", "50ms")
	send := `mutation { send(input: {channel: "wait:1", data: 1, idempotencyKey: "k"}) { message { id } } }`
	for range 2 {
		res := p.post(t, send)
		if len(res.Errors) != 1 || res.Errors[0].Extensions.Code != "UNAVAILABLE" {
			t.Fatalf("send without a replica: %+v, want UNAVAILABLE", res.Errors)
		}
	}
	if h := p.history(t, "wait:1"); len(h) != 1 {
		t.Fatalf("history: %+v, want the one stored message", h)
	}
}

func TestParseRedisFlags(t *testing.T) {
	c, err := parseConfig([]string{"--redis-fencing", "on", "--redis-wait-replicas", "2", "--redis-wait-timeout", "250ms"},
		func(string) string { return "" }, new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if c.RedisFencing != 1 || c.RedisWaitReplicas != 2 || c.RedisWaitTimeout != 250*time.Millisecond {
		t.Fatalf("parsed %v %v %v", c.RedisFencing, c.RedisWaitReplicas, c.RedisWaitTimeout)
	}
	for _, args := range [][]string{
		{"--redis-fencing", "maybe"}, {"--redis-wait-replicas", "-1"}, {"--redis-wait-replicas", "17"}, {"--redis-wait-timeout", "0s"},
	} {
		if _, err := parseConfig(args, func(string) string { return "" }, new(bytes.Buffer)); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

func (p *instance) epoch(t *testing.T, channel string) string {
	t.Helper()
	var out struct{ Channel struct{ Epoch string } }
	p.do(t, `query($ch: String!) { channel(name: $ch) { epoch } }`, map[string]any{"ch": channel}, &out)
	return out.Channel.Epoch
}

// trySend sends data, returning the error instead of failing the test.
func (p *instance) trySend(channel string, data any) error {
	r, err := p.tryPost(`mutation($ch: String!, $d: JSON!) { send(input: {channel: $ch, data: $d}) { message { id } } }`,
		map[string]any{"ch": channel, "d": data})
	if err == nil && len(r.Errors) > 0 {
		err = errors.New(r.Errors[0].Message)
	}
	return err
}

// post runs query with the API key and returns the result, errors included.
func (p *instance) post(t *testing.T, query string) gqlResult {
	t.Helper()
	r, err := p.tryPost(query, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (p *instance) tryPost(query string, vars map[string]any) (gqlResult, error) {
	var r gqlResult
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, p.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return r, err
	}
	defer res.Body.Close()
	err = json.NewDecoder(res.Body).Decode(&r)
	return r, err
}
