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

// largeChannel returns a broker whose channel "big" holds 200 messages of
// 21 KB.
func largeChannel(tb testing.TB) pubsub.Broker {
	tb.Helper()
	b := pubsub.NewMemory(pubsub.Options{})
	tb.Cleanup(func() { _ = b.Close() })
	item := []byte(`"` + strings.Repeat("<m>", 7000) + `"`)
	for range 200 {
		if _, err := b.Publish(context.Background(), pubsub.PublishRequest{Channel: "big", Data: item}); err != nil {
			tb.Fatal(err)
		}
	}
	return b
}

// largePage returns a function that runs, through gqlgen's executor with
// exts, a history query of all of b's channel "big" (a 4 MB response).
func largePage(tb testing.TB, b pubsub.Broker, exts ...graphql.HandlerExtension) func() *graphql.Response {
	tb.Helper()
	exec := executor.New(NewExecutableSchema(Config{Resolvers: NewResolver(b, readAnything{}, Options{})}))
	for _, e := range exts {
		exec.Use(e)
	}
	const query = `{ history(channel: "big", last: 200) { nodes { id data createdAt cursor } edges { cursor node { id } } } }`
	return func() *graphql.Response {
		ctx := graphql.StartOperationTrace(context.Background())
		rc, errs := exec.CreateOperationContext(ctx, &graphql.RawParams{Query: query})
		if errs != nil {
			tb.Fatal(errs)
		}
		next, ctx := exec.DispatchOperation(ctx, rc)
		resp := next(ctx)
		if len(resp.Errors) > 0 {
			tb.Fatal(resp.Errors)
		}
		return resp
	}
}

// TestResponseLimitMakesRoom: with ResponseLimit, the executor renders a
// large history page into a buffer made room for at once, so rendering it
// allocates less than half again the response (a doubling buffer alone
// allocates twice it), and the response is byte for byte the one rendered
// without it.
func TestResponseLimitMakesRoom(t *testing.T) {
	measure := func(run func() *graphql.Response) ([]byte, uint64) {
		s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
		runtime.GC()
		metrics.Read(s)
		before := s[0].Value.Uint64()
		resp := run()
		metrics.Read(s)
		return resp.Data, s[0].Value.Uint64() - before
	}
	b := largeChannel(t)
	plain, plainAlloc := measure(largePage(t, b))
	sized, sizedAlloc := measure(largePage(t, b, ResponseLimit{Max: DefaultMaxResponseBytes}))
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

// BenchmarkLargePage: a 4 MB history page through the executor, with the
// response buffer made room for (ResponseLimit) and without.
func BenchmarkLargePage(b *testing.B) {
	broker := largeChannel(b)
	for _, bc := range []struct {
		name string
		exts []graphql.HandlerExtension
	}{{"sized", []graphql.HandlerExtension{ResponseLimit{Max: DefaultMaxResponseBytes}}}, {"doubling", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			run := largePage(b, broker, bc.exts...)
			b.ReportAllocs()
			for b.Loop() {
				run()
			}
		})
	}
}
