package server

import (
	"context"
	"strconv"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/executor"

	"github.com/pushgate/pushgate/graph"
)

// TestSendPlansBounded: past maxSendPlans documents, a new one is planned
// each time and not kept; known ones keep their plan.
func TestSendPlansBounded(t *testing.T) {
	exec := executor.New(graph.NewExecutableSchema(graph.Config{Resolvers: &graph.Resolver{}}))
	doc := func(i int) string {
		return `mutation($in: SendInput!) { s` + strconv.Itoa(i) + `: send(input: $in) { message { id } } }`
	}
	var ps sendPlans
	ctx := graphql.StartOperationTrace(context.Background()) // as gqlgen's handler starts a request
	first := ps.of(ctx, exec, doc(0), "")
	for i := 1; i < maxSendPlans+50; i++ {
		if ps.of(ctx, exec, doc(i), "") == nil {
			t.Fatalf("document %d was not planned", i)
		}
	}
	if n := len(ps.plans); n != maxSendPlans {
		t.Fatalf("%d plans kept, want %d", n, maxSendPlans)
	}
	if ps.of(ctx, exec, doc(0), "") != first {
		t.Fatal("a known document got a new plan")
	}
	past := doc(maxSendPlans + 100)
	if a, b := ps.of(ctx, exec, past, ""), ps.of(ctx, exec, past, ""); a == nil || a == b || a.alias != "s"+strconv.Itoa(maxSendPlans+100) {
		t.Fatalf("a document past the bound: %+v %+v", a, b)
	}
	// Not a plain send: remembered as such.
	if ps.of(ctx, exec, `mutation { send(input: {channel: "a", data: 1}) { message { id } } }`, "") != nil {
		t.Fatal("an inline input was planned")
	}
}
