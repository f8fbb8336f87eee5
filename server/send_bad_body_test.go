package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/pubsub"
)

// TestSendDataNotJSON: a send whose data is not JSON in the request body
// itself (a truncated value, a bare word) gets 400 with
// extensions.code BAD_USER_INPUT and appends nothing. (Data in variables is
// JSON by construction; inline literals are in TestBadInput.)
func TestSendDataNotJSON(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	e.send(t, "nj", 1)
	q, _ := json.Marshal(sendMutation)
	for name, body := range map[string]string{
		"truncated value": `{"query":` + string(q) + `,"variables":{"in":{"channel":"nj","data":{"a":}}}}`,
		"bare word":       `{"query":` + string(q) + `,"variables":{"in":{"channel":"nj","data":hello}}}`,
		"not JSON at all": `send nj hello`,
	} {
		t.Run(name, func(t *testing.T) {
			status, out, raw := postGraphQL(t, e.url+"/graphql", testKey, []byte(body))
			if status != http.StatusBadRequest || out.code(t) != "BAD_USER_INPUT" {
				t.Fatalf("status %d, body %s; want 400 BAD_USER_INPUT", status, raw)
			}
			if got := e.ids(t, "nj"); len(got) != 1 {
				t.Fatalf("history %v, want only the first message", got)
			}
		})
	}
}

// TestSendBodyReadError: a send whose body ends short of its
// Content-Length (the client half-closes) fails to be read: the send
// transport hands the read error to gqlgen's POST transport, which answers
// BAD_USER_INPUT naming it, and nothing is appended, even when what was
// read is a whole send.
func TestSendBodyReadError(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	q, _ := json.Marshal(sendMutation)
	for name, body := range map[string]string{
		"a whole send, short of its length": `{"query":` + string(q) + `,"variables":{"in":{"channel":"rb","data":1}}}`,
		"cut inside the variables":          `{"query":` + string(q) + `,"variables":{"in":{"chan`,
	} {
		t.Run(name, func(t *testing.T) {
			u, _ := url.Parse(e.url)
			conn, err := net.Dial("tcp", u.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(waitTimeout))
			fmt.Fprintf(conn, "POST /graphql HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
				u.Host, testKey, len(body)+10, body)
			// The body ends here, 10 bytes short: the server's read fails
			// with an unexpected EOF, and its answer can still come back.
			if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			defer res.Body.Close()
			raw, _ := io.ReadAll(res.Body)
			var out gqlResponse
			if err := json.Unmarshal(raw, &out); err != nil {
				t.Fatalf("status %d, body %q: %v", res.StatusCode, raw, err)
			}
			if out.code(t) != "BAD_USER_INPUT" || !strings.Contains(out.Errors[0].Message, "could not read request body: unexpected EOF") {
				t.Fatalf("status %d, body %s; want BAD_USER_INPUT naming the read error", res.StatusCode, raw)
			}
		})
	}
	if got := e.ids(t, "rb"); len(got) != 0 {
		t.Fatalf("history %v, want nothing appended", got)
	}
}
