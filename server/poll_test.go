package server_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/pushgate/pushgate/pubsub"
)

type pollResponse struct {
	Messages []streamMessage `json:"messages"`
	Cursor   string          `json:"cursor"`
	Reset    *struct {
		Channel, Reason, Cursor string
	} `json:"reset"`
}

// poll runs one GET /poll; the request itself may not take longer than
// within, so a poll that holds when it should answer fails the test.
func poll(t *testing.T, base string, q url.Values, within time.Duration) pollResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	res, err := pollCtx(ctx, base, q)
	if err != nil {
		t.Fatalf("poll %v: %v", q, err)
	}
	return res
}

func pollCtx(ctx context.Context, base string, q url.Values) (pollResponse, error) {
	var out pollResponse
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/poll?"+q.Encode(), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return out, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		return out, &url.Error{Op: "poll", URL: res.Status, Err: http.ErrNotSupported}
	}
	err = json.NewDecoder(res.Body).Decode(&out)
	return out, err
}

func TestPoll(t *testing.T) {
	e := startEnv(t, anonConfig(), memoryBroker(t, pubsub.Options{HistorySize: 5}))
	ch := url.Values{"channel": {"p:1"}}
	with := func(kv ...string) url.Values {
		q := url.Values{"channel": ch["channel"]}
		for i := 0; i < len(kv); i += 2 {
			q.Set(kv[i], kv[i+1])
		}
		return q
	}

	// Without a cursor: at once, the current position and no messages.
	start := poll(t, e.url, with("timeout", "50"), 10*time.Second)
	if len(start.Messages) != 0 || start.Cursor == "" || start.Reset != nil {
		t.Fatalf("first poll = %+v", start)
	}

	// Retained after the cursor: answered at once (the hold would be 50 s).
	a, b := e.send(t, "p:1", "a"), e.send(t, "p:1", "b")
	got := poll(t, e.url, with("cursor", start.Cursor, "timeout", "50"), 10*time.Second)
	if len(got.Messages) != 2 || got.Messages[0].ID != a.ID || got.Messages[1].ID != b.ID || string(got.Messages[1].Data) != `"b"` {
		t.Fatalf("poll with retained messages = %+v", got)
	}
	if got.Cursor != b.Cursor {
		t.Fatalf("poll cursor %s, want the cursor of the last message %s", got.Cursor, b.Cursor)
	}

	// timeout=0 never holds but still answers with what is retained.
	if now := poll(t, e.url, with("cursor", start.Cursor, "timeout", "0"), 10*time.Second); len(now.Messages) != 2 || now.Cursor != b.Cursor {
		t.Fatalf("poll with timeout 0 = %+v", now)
	}

	// limit bounds the answer; the cursor continues exactly.
	c := e.send(t, "p:1", "c")
	one := poll(t, e.url, with("cursor", start.Cursor, "limit", "1"), 10*time.Second)
	if len(one.Messages) != 1 || one.Messages[0].ID != a.ID {
		t.Fatalf("poll with limit 1 = %+v", one)
	}
	rest := poll(t, e.url, with("cursor", one.Cursor, "limit", "10"), 10*time.Second)
	if len(rest.Messages) != 2 || rest.Messages[1].ID != c.ID {
		t.Fatalf("poll after limit = %+v", rest)
	}

	// Nothing pending: after the timeout, no messages and the same cursor.
	idle := poll(t, e.url, with("cursor", rest.Cursor, "timeout", "1"), 10*time.Second)
	if len(idle.Messages) != 0 || idle.Cursor != rest.Cursor || idle.Reset != nil {
		t.Fatalf("idle poll = %+v, want no messages and cursor %s", idle, rest.Cursor)
	}

	// A message sent during a held poll ends it with that message.
	type result struct {
		r   pollResponse
		err error
	}
	held := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		r, err := pollCtx(ctx, e.url, with("cursor", rest.Cursor, "timeout", "50"))
		held <- result{r, err}
	}()
	// Sent while it holds: the gauge counts a long-poll while it holds.
	waitMetrics(t, e.url, map[string]float64{`pushgate_connections{transport="poll"}`: 1})
	d := e.send(t, "p:1", "d")
	r := <-held
	if r.err != nil || len(r.r.Messages) != 1 || r.r.Messages[0].ID != d.ID || r.r.Cursor != d.Cursor {
		t.Fatalf("held poll = %+v, %v; want message %s", r.r, r.err, d.ID)
	}

	// A cursor older than retention: the reset, then what is retained.
	for i := 0; i < 6; i++ {
		e.send(t, "p:1", i)
	}
	reset := poll(t, e.url, with("cursor", start.Cursor), 10*time.Second)
	if reset.Reset == nil || reset.Reset.Reason != "expired" || reset.Reset.Channel != "p:1" || len(reset.Messages) != 5 || reset.Messages[0].ID != "6" {
		t.Fatalf("poll past retention = %+v", reset)
	}
}

// TestPollResumeUnderChurn: a long-poll loop whose requests are aborted at
// random points receives all of 10,000 messages sent across 3 channels by
// concurrent senders: per-channel order kept, no duplicates.
func TestPollResumeUnderChurn(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			const total = 10000
			b := be.new(t, pubsub.Options{HistorySize: total})
			e := startEnv(t, testConfig(), b)
			channels := []string{"pc:a", "pc:b", "pc:c"}
			tok := token(t, "u1", []string{"pc:*"}, time.Hour)
			q := url.Values{"channel": channels, "token": {tok}, "timeout": {"2"}, "limit": {"500"}}
			cursor := poll(t, e.url, q, 10*time.Second).Cursor
			got := newTally()
			done := make(chan error, 1)
			go func() {
				rng := rand.New(rand.NewPCG(5, 6))
				for got.count() < total {
					q.Set("cursor", cursor)
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					if rng.IntN(4) == 0 {
						// Abort this poll at a random point: its answer
						// is lost, the cursor does not move.
						time.AfterFunc(time.Duration(rng.IntN(3000))*time.Microsecond, cancel)
					}
					r, err := pollCtx(ctx, e.url, q)
					cancel()
					if err != nil {
						if ctx.Err() != nil {
							continue
						}
						done <- err
						return
					}
					if r.Reset != nil {
						done <- &url.Error{Op: "reset " + r.Reset.Reason}
						return
					}
					for _, m := range r.Messages {
						got.add(m)
					}
					cursor = r.Cursor
				}
				done <- nil
			}()
			want := sendConcurrently(t, b, channels, total, 4)
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(2 * time.Minute):
				t.Fatalf("received %d of %d", got.count(), total)
			}
			got.check(t, want)
			if got.count() != total {
				t.Fatalf("received %d messages, want %d", got.count(), total)
			}
		})
	}
}
