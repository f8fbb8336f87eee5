package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/pushgate/pushgate/internal/pushclient"
)

// makeRun runs `make run` with the Go command replaced by echo: the
// arguments it starts pushgate with, the curl commands it prints, and all
// it printed. It skips where make, curl or sh is missing (outside CI).
func makeRun(t *testing.T) (args, curls []string, out string) {
	t.Helper()
	for _, tool := range []string{"make", "curl", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not found: CI must install it (.ci/run does)", tool)
			}
			t.Skipf("%s not found", tool)
		}
	}
	b, err := exec.Command("make", "-s", "--no-print-directory", "-C", "../..", "run", "GO=echo").CombinedOutput()
	if err != nil {
		t.Fatalf("make run GO=echo: %v\n%s", err, b)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "curl ") {
			curls = append(curls, line)
		}
		if rest, ok := strings.CutPrefix(line, "run ./cmd/pushgate"); ok {
			args = strings.Fields(rest)
		}
	}
	if args == nil {
		t.Fatalf("make run printed:\n%s\nwant the pushgate command", b)
	}
	return args, curls, string(b)
}

// TestMakeRunAsNewUser follows the README's first steps on a fresh clone:
// `make run` (its recipe, with the Go command replaced by echo to learn the
// arguments it starts pushgate with), then the curl commands it prints,
// verbatim but for the port: the send with the dev key returns the
// message, a graphql-transport-ws client subscribed to feed anonymously
// receives it, and the history command returns it. Pages on
// http://localhost and http://127.0.0.1, any port, may use the server.
func TestMakeRunAsNewUser(t *testing.T) {
	args, curls, out := makeRun(t)
	if len(curls) != 2 || !strings.Contains(out, "devkey") {
		t.Fatalf("make run printed:\n%s\nwant the dev key, two curl commands and the pushgate command", out)
	}
	p := start(t, args...)
	host := strings.TrimPrefix(p.url, "http://")
	sh := func(cmd string) []byte {
		t.Helper()
		cmd = strings.ReplaceAll(cmd, "localhost:8080", host)
		b, err := exec.Command("sh", "-c", cmd).Output()
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return b
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	const ch = "news"
	if !strings.Contains(curls[0], `"channel":"`+ch+`"`) {
		t.Fatalf("the printed send does not target %s: %s", ch, curls[0])
	}
	pos, err := pushclient.PollOnce(ctx, p.url, []string{ch}, "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	feed, err := pushclient.OpenWS(ctx, p.url, []string{ch}, pos.Cursor, "")
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Close()

	var sent struct {
		Data struct {
			Send struct {
				Message struct{ ID, Cursor string }
			}
		}
		Errors []any
	}
	raw := sh(curls[0])
	if err := json.Unmarshal(raw, &sent); err != nil || len(sent.Errors) > 0 || sent.Data.Send.Message.ID != "1" || sent.Data.Send.Message.Cursor == "" {
		t.Fatalf("the printed send answered %s (%v)", raw, err)
	}
	ev, err := feed.Next(ctx)
	if err != nil || ev.Message == nil || ev.Message.ID != "1" || string(ev.Message.Data) != `{"hello":"world"}` {
		t.Fatalf("feed event %+v, %v; want message 1 {\"hello\":\"world\"}", ev, err)
	}

	var hist struct {
		Data struct {
			History struct {
				Nodes []struct {
					ID   string
					Data json.RawMessage
				}
			}
		}
	}
	raw = sh(curls[1])
	if err := json.Unmarshal(raw, &hist); err != nil || len(hist.Data.History.Nodes) != 1 ||
		hist.Data.History.Nodes[0].ID != "1" || string(hist.Data.History.Nodes[0].Data) != `{"hello":"world"}` {
		t.Fatalf("the printed history answered %s (%v)", raw, err)
	}

	// A page served by a front-end dev server on any local port may use
	// it; other origins may not.
	for _, tt := range []struct {
		origin string
		status int
	}{
		{"http://localhost:5173", http.StatusOK},
		{"http://127.0.0.1:3000", http.StatusOK},
		{"http://localhost", http.StatusOK},
		{"https://localhost:5173", http.StatusForbidden},
		{"http://evil.example:5173", http.StatusForbidden},
		{"http://localhost.evil.example:5173", http.StatusForbidden},
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/graphql?query=%7Bhistory(channel:%22news%22)%7Bnodes%7Bid%7D%7D%7D", nil)
		req.Header.Set("Origin", tt.origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("Origin %s: status %d, want %d", tt.origin, resp.StatusCode, tt.status)
		}
		if allowed := resp.Header.Get("Access-Control-Allow-Origin"); (tt.status == http.StatusOK) != (allowed == tt.origin) {
			t.Errorf("Origin %s: Access-Control-Allow-Origin %q", tt.origin, allowed)
		}
	}
	// The WebSocket handshake applies the same list.
	for origin, ok := range map[string]bool{"http://localhost:5173": true, "http://evil.example:5173": false} {
		d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}}
		c, resp, err := d.DialContext(ctx, "ws"+strings.TrimPrefix(p.url, "http")+"/graphql", http.Header{"Origin": {origin}})
		if err == nil {
			_ = c.Close()
		} else if resp != nil {
			_ = resp.Body.Close()
		}
		if (err == nil) != ok {
			t.Errorf("WebSocket from Origin %s: %v, want allowed %v", origin, err, ok)
		}
	}
}

// TestREADMEQuickStart runs the README's quick start as written, read from
// the README (its ```sh block under "## Quick start"), but for the port:
// `make run`'s server, the waiting `curl -N` on /events, then the send;
// the waiting curl prints the line the README says it prints.
func TestREADMEQuickStart(t *testing.T) {
	args, _, _ := makeRun(t)
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	_, section, ok := strings.Cut(readme, "\n## Quick start\n")
	block, _, _ := strings.Cut(section, "\n```\n")
	_, block, ok2 := strings.Cut(block, "```sh\n")
	if !ok || !ok2 {
		t.Fatal("README: no ```sh block under ## Quick start")
	}
	// Its commands: continuation lines joined, comments dropped.
	var cmds []string
	for _, line := range strings.Split(strings.ReplaceAll(block, "\\\n", " "), "\n") {
		if i := strings.Index(line, "   #"); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			cmds = append(cmds, line)
		}
	}
	if len(cmds) != 3 || cmds[0] != "make run" || !strings.HasPrefix(cmds[1], "curl -N ") || !strings.HasPrefix(cmds[2], "curl ") {
		t.Fatalf("README quick start commands %q, want make run, curl -N, curl", cmds)
	}
	// What the README says terminal 2 prints, up to its elided createdAt.
	_, said, _ := strings.Cut(section, "Terminal 2 prints the message as it is sent:\n`")
	said, _, _ = strings.Cut(said, `"...`)
	if !strings.HasPrefix(said, "data: {") {
		t.Fatalf("README: no line said to be printed by terminal 2 (%q)", said)
	}

	p := start(t, args...)
	host := strings.TrimPrefix(p.url, "http://")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	wait := exec.CommandContext(ctx, "sh", "-c", strings.ReplaceAll(cmds[1], "localhost:8080", host))
	stdout, err := wait.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = wait.Wait() }()
	lines := bufio.NewScanner(stdout)
	// The stream opens with retry: and id: once the subscription is live.
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "retry:") {
	}
	if b, err := exec.CommandContext(ctx, "sh", "-c", strings.ReplaceAll(cmds[2], "localhost:8080", host)).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmds[2], err, b)
	}
	for lines.Scan() {
		if line := lines.Text(); strings.HasPrefix(line, "data:") {
			if !strings.HasPrefix(line, said) {
				t.Fatalf("terminal 2 printed %q, the README says %q...", line, said)
			}
			return
		}
	}
	t.Fatalf("terminal 2 printed no message: %v", lines.Err())
}
