package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/pubsub"
)

// rawRequest writes head (a request without its body's end) on a new
// connection and returns the connection.
func rawRequest(t *testing.T, e *env, head string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	return conn
}

// TestStalledBodyAnsweredAtReadTimeout: a POST /graphql whose body stalls
// after "{" (with a length, or chunked) is answered 408 REQUEST_TIMEOUT
// once the read timeout passes and its connection is closed; before the
// fix it stayed open for as long as the client liked (330 s seen). A
// graphql-sse stream, whose body is read within the timeout, outlives it.
func TestStalledBodyAnsweredAtReadTimeout(t *testing.T) {
	cfg := anonConfig()
	cfg.ReadTimeout = 300 * time.Millisecond
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	for name, head := range map[string]string{
		"length":  "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
		"chunked": "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			conn := rawRequest(t, e, head)
			_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), `"code":"REQUEST_TIMEOUT"`) {
				t.Fatalf("answer %d %s, want 408 REQUEST_TIMEOUT", res.StatusCode, body)
			}
			if _, err := conn.Read(make([]byte, 1)); err == nil {
				t.Fatal("the connection is still open after the answer")
			}
		})
	}

	t.Run("graphql-sse outlives it", func(t *testing.T) {
		body, _ := json.Marshal(map[string]any{"query": feedQuery, "variables": map[string]any{"channels": []string{"long"}}})
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url+"/graphql", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "text/event-stream")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		// The scenario, not a synchronisation: the stream must be older
		// than the read timeout when the message is sent.
		time.Sleep(4 * cfg.ReadTimeout)
		go func() {
			// Sent until the stream has it (its subscription may not be
			// registered yet when the first goes).
			for ctx.Err() == nil {
				e.send(t, "long", "still here")
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
		if data := hostileSSEData(t, res.Body, "next"); !strings.Contains(data, "still here") {
			t.Fatalf("event %s", data)
		}
		cancel()
	})
}

// TestRequestsInFlightPerIP: with two requests of one IP in progress (their
// bodies stalled), a third is refused with 429 RATE_LIMITED and
// Retry-After; once one ends, the next is served. Streams are not
// counted.
func TestRequestsInFlightPerIP(t *testing.T) {
	cfg := anonConfig()
	cfg.Limits.MaxRequestsInFlightPerIP = 2
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	query := `{"query":"{ channel(name: \"x\") { name } }"}`
	head := "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
		itoa(len(query)) + "\r\n\r\n"
	first := rawRequest(t, e, head+query[:1])
	rawRequest(t, e, head+query[:1])

	status := func() (int, string) {
		res, err := http.Post(e.url+"/graphql", "application/json", strings.NewReader(query))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode == http.StatusTooManyRequests && res.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
		return res.StatusCode, string(b)
	}
	// The stalled requests are in flight once the server has read their
	// headers.
	hostileWait(t, "a third request refused", func() bool {
		code, body := status()
		if code == http.StatusTooManyRequests && !strings.Contains(body, `"code":"RATE_LIMITED"`) {
			t.Fatalf("429 body %s", body)
		}
		return code == http.StatusTooManyRequests
	})
	// A stream is not a request in flight.
	ws := e.dialWS(t, transportWS, "", nil)
	ws.init(nil)

	if _, err := io.WriteString(first, query[1:]); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(first), nil)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("the first request: %v %v", res, err)
	}
	res.Body.Close()
	hostileWait(t, "a request served once one ended", func() bool {
		code, _ := status()
		return code == http.StatusOK
	})
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
