package graph

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/pushgate/pushgate/pubsub"
)

// TestSchemaListsEveryErrorCode: every error code the server can answer
// (each constant named Code* or code* in graph and server and their
// subpackages, gqlgen's parse
// and validation codes) is in the list at the top of schema.graphqls, and
// the list names no code that does not exist.
func TestSchemaListsEveryErrorCode(t *testing.T) {
	codes := map[string]bool{"GRAPHQL_PARSE_FAILED": true, "GRAPHQL_VALIDATION_FAILED": true}
	for _, dir := range []string{".", "../server"} {
		var files []string
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
				files = append(files, path)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range files {
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				spec, ok := n.(*ast.ValueSpec)
				if !ok {
					return true
				}
				for i, name := range spec.Names {
					if !strings.HasPrefix(strings.ToLower(name.Name), "code") || i >= len(spec.Values) {
						continue
					}
					if lit, ok := spec.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						v, _ := strconv.Unquote(lit.Value)
						codes[v] = true
					}
				}
				return true
			})
		}
	}
	if !codes[CodeRateLimited] || !codes[CodeResponseTooLarge] || !codes["REQUEST_TIMEOUT"] {
		t.Fatalf("the scan missed codes: %v", codes)
	}
	header := schemaHeader(t)
	listed := map[string]bool{}
	for _, c := range regexp.MustCompile(`\b[A-Z][A-Z_]{3,}[A-Z]\b`).FindAllString(header, -1) {
		listed[c] = true
	}
	for c := range codes {
		if !listed[c] {
			t.Errorf("error code %s is not listed at the top of schema.graphqls", c)
		}
	}
	for c := range listed {
		if !codes[c] && c != "HTTP" {
			t.Errorf("schema.graphqls lists %s, which the server does not answer", c)
		}
	}
}

// TestSchemaStatesIdempotencyKeyLimit: the idempotencyKey descriptions
// state the longest key pubsub accepts, found by asking it.
func TestSchemaStatesIdempotencyKeyLimit(t *testing.T) {
	longest := 0
	for n := 1; n <= 4096; n++ {
		err := pubsub.ValidatePublish(pubsub.PublishRequest{Channel: "news", Data: []byte("1"), IdempotencyKey: strings.Repeat("k", n)})
		if err != nil {
			break
		}
		longest = n
	}
	if longest == 0 || longest == 4096 {
		t.Fatalf("pubsub accepts idempotency keys up to %d bytes", longest)
	}
	raw, err := os.ReadFile("../schema.graphqls")
	if err != nil {
		t.Fatal(err)
	}
	want := "At most " + strconv.Itoa(longest) + " bytes"
	for _, input := range []string{"input SendInput", "input BroadcastInput"} {
		_, body, _ := strings.Cut(string(raw), input+" {")
		body, _, _ = strings.Cut(body, "\n}")
		desc, _, ok := strings.Cut(body, "idempotencyKey: String")
		if !ok {
			t.Fatalf("%s has no idempotencyKey", input)
		}
		if i := strings.LastIndex(desc, "\n\n"); i >= 0 {
			desc = desc[i:]
		}
		if lines := strings.Split(strings.TrimSpace(desc), "\n"); !strings.Contains(strings.Join(lines[max(0, len(lines)-6):], " "), want) {
			t.Errorf("%s's idempotencyKey description does not say %q:\n%s", input, want, desc)
		}
	}
}

// schemaHeader is the comment at the top of schema.graphqls.
func schemaHeader(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../schema.graphqls")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "#") {
			break
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}
