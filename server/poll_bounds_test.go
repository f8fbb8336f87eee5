package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/pushgate/pushgate/pubsub"
)

// TestPollDefaultsAndBounds: limit defaults to 100 and accepts 1000,
// timeout accepts 0..50, a poll without timeout holds (the default is not
// 0) until a message ends it, and a credential in the Authorization header
// works as well as ?token=. Out-of-range values are in TestStreamBadInput.
func TestPollDefaultsAndBounds(t *testing.T) {
	b := memoryBroker(t, pubsub.Options{HistorySize: 2000})
	e := startEnv(t, testConfig(), b)
	tok := token(t, "u1", []string{"pb:*"}, time.Hour)
	q := func(kv ...string) url.Values {
		v := url.Values{"channel": {"pb:a", "pb:b"}, "token": {tok}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	start := poll(t, e.url, q(), 5*time.Second).Cursor
	for i := 1; i <= 1200; i++ {
		ch := "pb:a"
		if i%2 == 0 {
			ch = "pb:b"
		}
		if _, err := b.Publish(context.Background(), pubsub.PublishRequest{Channel: ch, Data: json.RawMessage(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}

	// Default limit: 100 at once; the cursor continues right after them.
	first := poll(t, e.url, q("cursor", start, "timeout", "50"), 5*time.Second)
	if len(first.Messages) != 100 {
		t.Fatalf("default limit: %d messages, want 100", len(first.Messages))
	}
	got := newTally()
	for _, m := range first.Messages {
		got.add(m)
	}
	// limit=1000 is allowed, and timeout=50 answers at once when data is there.
	big := poll(t, e.url, q("cursor", first.Cursor, "limit", "1000", "timeout", "50"), 5*time.Second)
	if len(big.Messages) != 1000 {
		t.Fatalf("limit 1000: %d messages", len(big.Messages))
	}
	for _, m := range big.Messages {
		got.add(m)
	}
	rest := poll(t, e.url, q("cursor", big.Cursor, "limit", "1000"), 5*time.Second)
	for _, m := range rest.Messages {
		got.add(m)
	}
	got.check(t, map[string]uint64{"pb:a": 600, "pb:b": 600})
	if got.count() != 1200 {
		t.Fatalf("paged through %d messages, want 1200", got.count())
	}

	// timeout=0 answers at once with nothing pending; timeout=50 is in range.
	if now := poll(t, e.url, q("cursor", rest.Cursor, "timeout", "0"), 2*time.Second); len(now.Messages) != 0 || now.Cursor != rest.Cursor {
		t.Fatalf("timeout 0 = %+v", now)
	}

	// No timeout parameter: the poll holds (default 25 s), through the
	// Authorization header, until a message ends it.
	type answer struct {
		r   pollResponse
		err error
	}
	held := make(chan answer, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		v := url.Values{"channel": {"pb:a", "pb:b"}, "cursor": {rest.Cursor}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/poll?"+v.Encode(), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			held <- answer{err: err}
			return
		}
		defer res.Body.Close()
		var r pollResponse
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
			held <- answer{err: &url.Error{Op: "poll", URL: res.Status, Err: http.ErrNotSupported}}
			return
		}
		err = json.NewDecoder(res.Body).Decode(&r)
		held <- answer{r: r, err: err}
	}()
	// The gauge counts a long-poll while it holds.
	waitMetrics(t, e.url, map[string]float64{`pushgate_connections{transport="poll"}`: 1})
	select {
	case a := <-held:
		t.Fatalf("a poll without timeout answered at once: %+v %v", a.r, a.err)
	default:
	}
	// Answered with the message well before the default hold (25 s) ends:
	// the send ended the hold.
	last := e.send(t, "pb:b", "ends the hold")
	select {
	case a := <-held:
		if a.err != nil || len(a.r.Messages) != 1 || a.r.Messages[0].ID != last.ID || a.r.Messages[0].Channel != "pb:b" {
			t.Fatalf("held poll = %+v, %v; want message %s", a.r, a.err, last.ID)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the held poll did not end with the message")
	}
}
