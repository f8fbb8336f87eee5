package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pushgate/pushgate/internal/pushclient"
	"github.com/pushgate/pushgate/internal/redistest"
)

// slowSend starts a send mutation on a raw connection and writes all of
// its body but the last byte: the request is in flight until finish.
type slowSend struct {
	conn net.Conn
	rest []byte
}

func startSlowSend(t *testing.T, addr, channel, idemKey string) *slowSend {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"query":     `mutation($in: SendInput!) { send(input: $in) { message { id } } }`,
		"variables": map[string]any{"in": map[string]any{"channel": channel, "data": map[string]int{"slow": 1}, "idempotencyKey": idemKey}},
	})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	head := fmt.Sprintf("POST /graphql HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		addr, apiKey, len(body))
	if _, err := conn.Write(append([]byte(head), body[:len(body)-1]...)); err != nil {
		t.Fatal(err)
	}
	return &slowSend{conn: conn, rest: body[len(body)-1:]}
}

// finish writes the last byte and returns the status and body of the
// answer.
func (s *slowSend) finish(t *testing.T) (int, string) {
	t.Helper()
	if _, err := s.conn.Write(s.rest); err != nil {
		t.Fatalf("finish the request in flight: %v", err)
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(s.conn), nil)
	if err != nil {
		t.Fatalf("answer to the request in flight: %v", err)
	}
	defer res.Body.Close()
	var b strings.Builder
	_, _ = bufio.NewReader(res.Body).WriteTo(&b)
	return res.StatusCode, b.String()
}

// cut checks that the request in flight got no answer: its connection
// was closed.
func (s *slowSend) cut(t *testing.T) {
	t.Helper()
	_ = s.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(s.conn), nil)
	var ne net.Error
	switch {
	case err == nil:
		res.Body.Close()
		t.Errorf("the request never finished was answered: %s", res.Status)
	case errors.As(err, &ne) && ne.Timeout():
		t.Errorf("the request never finished is still open after the node exited")
	}
}

// metric returns the value of one sample (name with its labels) of the
// node's /metrics, or -1 when absent; each call opens a new connection.
func metric(t *testing.T, base, sample string) float64 {
	t.Helper()
	c := http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("/metrics: %s: %v", sc.Text(), err)
			}
			return f
		}
	}
	return -1
}

// exited reports whether the node's process has ended.
func (n *node) exited() bool {
	n.mu.Lock()
	exit := n.exit
	n.mu.Unlock()
	select {
	case <-exit:
		return true
	default:
		return false
	}
}

func (n *node) waitExit(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	n.mu.Lock()
	exit := n.exit
	n.mu.Unlock()
	start := time.Now()
	select {
	case <-exit:
		return time.Since(start)
	case <-time.After(within):
		t.Fatalf("pushgate on %s still running %v after SIGTERM", n.addr, within)
		return 0
	}
}

// TestShutdownDrains: a real process on Redis gets SIGTERM with a
// WebSocket, an SSE stream, a held poll and a send in flight. It closes the
// WebSocket with 1012, ends the SSE stream, answers the poll, stops
// accepting connections, and lets the send in flight finish (stored, and
// answered with its message) within --shutdown-timeout; a request that
// does not finish is cut when the grace period ends.
func TestShutdownDrains(t *testing.T) {
	redis := redistest.Start(t)
	// Long enough for the steps between SIGTERM and finishing the send in
	// flight on a loaded machine under -race (they take milliseconds).
	const grace = 6 * time.Second
	n := startNode(t, "drain", "--redis-url", redis.URL(), "--allow-anonymous", "--shutdown-timeout", grace.String())
	other := startNode(t, "other", "--redis-url", redis.URL(), "--allow-anonymous")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ch := []string{"drain:1"}
	start := startCursor(ch...)
	ws, err := pushclient.OpenWS(ctx, n.url(), ch, start, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	sse, err := pushclient.OpenSSE(ctx, n.url(), ch, start, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sse.Close()
	if _, err := sender.Send(ctx, n.url(), ch[0], map[string]int{"i": 1}, "drain-1"); err != nil {
		t.Fatal(err)
	}
	// The same slow request without a shutdown: answered and stored.
	if code, body := startSlowSend(t, n.addr, ch[0], "drain-control").finish(t); code != http.StatusOK || !strings.Contains(body, `"id":"2"`) {
		t.Fatalf("slow send: %d %s, want message 2", code, body)
	}
	var cursor string
	for _, s := range []pushclient.Stream{ws, sse} {
		for range 2 {
			ev, err := s.Next(ctx)
			if err != nil || ev.Message == nil {
				t.Fatalf("event: %+v %v", ev, err)
			}
			cursor = ev.Cursor
		}
	}
	type answer struct {
		r      pushclient.PollResponse
		err    error
		exited bool // the node had exited when the answer came
	}
	held := make(chan answer, 1)
	go func() {
		r, err := pushclient.PollOnce(ctx, n.url(), ch, cursor, "", 30)
		held <- answer{r, err, n.exited()}
	}()
	inFlight := startSlowSend(t, n.addr, ch[0], "drain-slow")
	stuck := startSlowSend(t, n.addr, ch[0], "drain-stuck") // never finished
	// The poll holds (the gauge counts it), and the sends' connections are
	// the server's: each scrape comes on a new connection, accepted after
	// theirs (the listen queue is first in, first out).
	waitFor(t, "the poll to be held", func() bool {
		return metric(t, n.url(), `pushgate_connections{transport="poll"}`) == 1
	})

	sigterm := time.Now()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, err = ws.Next(ctx)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1012 {
		t.Errorf("WebSocket ended with %v, want close 1012", err)
	}
	if ev, err := sse.Next(ctx); err == nil {
		t.Errorf("SSE stream still open after SIGTERM: %+v", ev)
	}
	// At once: answered while the node drains (the stuck send keeps it
	// until the grace period ends), not cut when it ends.
	a := <-held
	if a.err != nil || len(a.r.Messages) != 0 || a.r.Cursor != cursor || a.exited {
		t.Errorf("held poll at SIGTERM: %+v %v (node exited: %v), want no messages and cursor %s before the node exits", a.r, a.err, a.exited, cursor)
	}
	// No new connection is accepted while the node drains (it stops
	// listening before it waits for requests in flight).
	waitFor(t, "the node to stop accepting connections", func() bool {
		if n.exited() {
			t.Fatal("the node accepted connections until it exited")
		}
		c, err := net.DialTimeout("tcp", n.addr, 5*time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if n.exited() {
		t.Fatal("the node exited with requests in flight, before its grace period")
	}
	// The request in flight completes: answered, and stored.
	code, body := inFlight.finish(t)
	if code != http.StatusOK || !strings.Contains(body, `"id":"3"`) {
		t.Errorf("send in flight at SIGTERM: %d %s, want message 3", code, body)
	}
	// The stuck send holds the node for the whole grace period (time is
	// the behaviour: not before it ends; the wait after is generous for a
	// loaded machine), then is cut without an answer.
	took := n.waitExit(t, grace+30*time.Second)
	if since := time.Since(sigterm); since < grace {
		t.Errorf("exited %v after SIGTERM (waited %v after the drain), before the grace period %v ended with a request in flight", since, took, grace)
	}
	stuck.cut(t)
	// What the node acknowledged is there for the other node.
	r, err := pushclient.PollOnce(ctx, other.url(), ch, start, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range r.Messages {
		ids = append(ids, m.ID)
	}
	if len(ids) < 3 || ids[0] != "1" || ids[1] != "2" || ids[2] != "3" {
		t.Errorf("history on the other node: %v, want 1, 2, 3 (and maybe the stuck send)", ids)
	}
}
