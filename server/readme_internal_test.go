package server

import (
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/limits"
)

// readmeTable returns the rows of the README table whose header row starts
// with header, as cells (backquotes dropped).
func readmeTable(t *testing.T, readme, header string) map[string][]string {
	t.Helper()
	i := strings.Index(readme, header)
	if i < 0 {
		t.Fatalf("README has no table headed %q", header)
	}
	rows := map[string][]string{}
	for n, line := range strings.Split(readme[i:], "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		if n < 2 { // header and separator
			continue
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.Trim(strings.TrimSpace(c), "`"))
		}
		rows[cells[0]] = cells
	}
	return rows
}

// TestREADMEErrorAndCloseCodes: the tables of docs/access.md (moved there
// from the README, which links to it) list every error code
// the GraphQL API returns, with the status plain HTTP endpoints answer for
// it (HTTPStatus), and every WebSocket close code the server chooses.
func TestREADMEErrorAndCloseCodes(t *testing.T) {
	raw, err := os.ReadFile("../docs/access.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)

	codes := readmeTable(t, readme, "| code | meaning | plain HTTP |")
	for _, code := range []string{
		graph.CodeBadUserInput, graph.CodeUnauthenticated, graph.CodeForbidden, graph.CodePayloadTooLarge,
		graph.CodeRateLimited, graph.CodeUnavailable, graph.CodeInternal, "NOT_FOUND", "METHOD_NOT_ALLOWED",
	} {
		row, ok := codes[code]
		if !ok || len(row) < 3 {
			t.Errorf("error code %s is not in the table of docs/access.md", code)
			continue
		}
		want := HTTPStatus(code)
		switch code { // written by the routes themselves (errors.go)
		case "NOT_FOUND":
			want = http.StatusNotFound
		case "METHOD_NOT_ALLOWED":
			want = http.StatusMethodNotAllowed
		}
		status, _, _ := strings.Cut(row[2], " ")
		if got, err := strconv.Atoi(status); err != nil || got != want {
			t.Errorf("docs/access.md: %s is plain HTTP %q, the server answers %d", code, row[2], want)
		}
	}
	if row := codes[graph.CodeRateLimited]; len(row) < 3 || !strings.Contains(row[2], "Retry-After") {
		t.Errorf("docs/access.md: the RATE_LIMITED row does not mention Retry-After: %v", row)
	}
	for _, code := range []string{"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED"} {
		if !strings.Contains(readme, code) {
			t.Errorf("docs/access.md does not mention %s", code)
		}
	}

	closes := readmeTable(t, readme, "| code | when | what a client should do |")
	for _, code := range []int{CloseServiceRestart, access.CloseTokenExpired, limits.CloseTooManyConnections, 1009,
		closeBadRequest, closeUnauthorized, closeInitTimeout, closeSubscriberExists, closeTooManyInits, 1002} {
		if _, ok := closes[strconv.Itoa(code)]; !ok {
			t.Errorf("close code %d is not in the table of docs/access.md", code)
		}
	}
	if !strings.Contains(readme, "event: expired") {
		t.Error("docs/access.md does not document SSE's event: expired")
	}
}
