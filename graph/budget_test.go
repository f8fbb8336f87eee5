package graph

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/executor"

	"github.com/pushgate/pushgate/internal/testbuild"
	"github.com/pushgate/pushgate/pubsub"
)

type readAnything struct{}

func (readAnything) MaySend(context.Context, []string) error { return nil }
func (readAnything) MayRead(context.Context, []string) error { return nil }
func (readAnything) IssueToken(context.Context, TokenRequest) (IssuedToken, error) {
	return IssuedToken{}, errors.New("no tokens here")
}

// TestResponseLimitMakesRoom: with ResponseLimit, the executor renders a
// large history page into a buffer made room for at once, so rendering it
// allocates less than half again the response (a doubling buffer alone
// allocates twice it), and the response is byte for byte the one rendered
// without it.
func TestResponseLimitMakesRoom(t *testing.T) {
	b := pubsub.NewMemory(pubsub.Options{})
	t.Cleanup(func() { _ = b.Close() })
	item := []byte(`"` + strings.Repeat("<m>", 7000) + `"`)
	for range 200 {
		if _, err := b.Publish(context.Background(), pubsub.PublishRequest{Channel: "big", Data: item}); err != nil {
			t.Fatal(err)
		}
	}
	es := NewExecutableSchema(Config{Resolvers: NewResolver(b, readAnything{}, Options{})})
	const query = `{ history(channel: "big", last: 200) { nodes { id data createdAt cursor } edges { cursor node { id } } } }`
	run := func(t *testing.T, exts ...graphql.HandlerExtension) (data []byte, allocated uint64) {
		t.Helper()
		exec := executor.New(es)
		for _, e := range exts {
			exec.Use(e)
		}
		ctx := graphql.StartOperationTrace(context.Background())
		rc, errs := exec.CreateOperationContext(ctx, &graphql.RawParams{Query: query})
		if errs != nil {
			t.Fatal(errs)
		}
		s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
		runtime.GC()
		metrics.Read(s)
		before := s[0].Value.Uint64()
		next, ctx := exec.DispatchOperation(ctx, rc)
		resp := next(ctx)
		metrics.Read(s)
		if len(resp.Errors) > 0 {
			t.Fatal(resp.Errors)
		}
		return resp.Data, s[0].Value.Uint64() - before
	}
	plain, plainAlloc := run(t)
	sized, sizedAlloc := run(t, ResponseLimit{Max: DefaultMaxResponseBytes})
	t.Logf("a %d-byte response: %d bytes allocated without ResponseLimit, %d with", len(sized), plainAlloc, sizedAlloc)
	if !bytes.Equal(plain, sized) {
		t.Fatalf("the response differs with ResponseLimit: %.200s", sized)
	}
	if !strings.HasPrefix(string(sized), `{"history":{"nodes":[{"id":"1","data":"<m><m>`) {
		t.Fatalf("response %.200s", sized)
	}
	// The race detector's runtime allocates on its own account.
	if limit := uint64(len(sized)) * 3 / 2; sizedAlloc > limit && !testbuild.Race {
		t.Fatalf("%d bytes allocated for a %d-byte response, want at most %d", sizedAlloc, len(sized), limit)
	}
}
