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
	body, _ := json.Marshal(map[string]any{
		"query":     `mutation($ch: String!, $d: JSON!) { send(input: {channel: $ch, data: $d}) { message { id } } }`,
		"variables": map[string]any{"ch": channel, "d": data},
	})
	req, _ := http.NewRequest(http.MethodPost, p.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var r gqlResult
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		return err
	}
	if len(r.Errors) > 0 {
		return errors.New(r.Errors[0].Message)
	}
	return nil
}
