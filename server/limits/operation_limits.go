package limits

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/pubsub"
)

// Operations is the gqlgen extension that checks every GraphQL operation once it is parsed and
// validated, before anything of it runs: introspection when it is off,
// depth, complexity, the channels of a feed, the operations active on its
// WebSocket and the sender's rate. A refused operation changes nothing.
//
// It must be the last OperationContextMutator: the WebSocket slot it takes
// is given back by InterceptOperation, which runs only when operation
// creation succeeded.
type Operations struct {
	lim        *Limiter
	complexity *extension.ComplexityLimit // nil: off
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
	graphql.OperationInterceptor
} = (*Operations)(nil)

// NewOperations returns the extension of lim's limits.
func NewOperations(lim *Limiter) *Operations {
	o := &Operations{lim: lim}
	if lim.MaxQueryComplexity > 0 {
		o.complexity = extension.FixedComplexityLimit(lim.MaxQueryComplexity)
	}
	return o
}

func (o *Operations) ExtensionName() string { return "PushgateOperationLimits" }

func (o *Operations) Validate(schema graphql.ExecutableSchema) error {
	if o.complexity != nil {
		return o.complexity.Validate(schema)
	}
	return nil
}

// introspectionDepth is the least depth allowed to __schema and __type:
// tools' introspection queries unwrap list and non-null types with nested
// ofType (graphql-js's reaches depth 15). gqlparser's validation already
// refuses nesting fields, interfaces or possibleTypes more than 3 deep.
const introspectionDepth = 20

var rootType = map[ast.Operation]string{ast.Query: "Query", ast.Mutation: "Mutation", ast.Subscription: "Subscription"}

// WebSocketSlot names, in an operation's stats, the WebSocket slot it
// holds (a *WebSocket; whoever runs the operation without gqlgen's
// interceptors calls its Release when the operation ends).
const WebSocketSlot = "pushgate.wsSlot"

func (o *Operations) MutateOperationContext(ctx context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	lim := o.lim
	op := oc.Operation
	if word := bareWordInJSON(oc.Doc); word != "" {
		return badInput("data: %s is not JSON (a bare word; a string is quoted: %q)", word, word)
	}
	w := newDocWalker(oc.Doc)
	w.vars = oc.Variables // history's first and last
	complexity := w.count(op.SelectionSet)
	if lim.DisableIntrospection && w.introspects {
		return badInput("introspection (__schema, __type) is disabled on this server")
	}
	if lim.MaxQueryDepth > 0 {
		for _, f := range graphql.CollectFields(oc, op.SelectionSet, []string{rootType[op.Operation]}) {
			d := 1 + w.depth(f.Selections)
			if f.Name == "__schema" || f.Name == "__type" {
				if limit := max(lim.MaxQueryDepth, introspectionDepth); d > limit {
					return badInput("the operation's depth of %d is over the limit of %d for introspection", d, limit)
				}
			} else if d > lim.MaxQueryDepth {
				return badInput("the operation's depth of %d is over the limit of %d", d, lim.MaxQueryDepth)
			}
		}
	}
	if o.complexity != nil {
		if limit := lim.MaxQueryComplexity; complexity > limit {
			return badInput("the operation's complexity of %d is over the limit of %d (one per field, aliases and fragments counted where used, "+
				"a list's fields once per item it may hold: history's nodes and edges per message of its page, presence subjects 1000)",
				complexity, limit)
		}
		// gqlgen's calculation applies the schema's own complexity
		// functions, if any; the count above keeps it from walking an
		// expansion of fragments that is too large.
		if err := o.complexity.MutateOperationContext(ctx, oc); err != nil {
			if s := extension.GetComplexityStats(graphql.WithOperationContext(ctx, oc)); s != nil {
				return badInput("the operation's complexity of %d is over the limit of %d", s.Complexity, s.ComplexityLimit)
			}
			return badInput("%s", err.Message)
		}
	}

	var sends int
	switch op.Operation {
	case ast.Subscription:
		for _, f := range graphql.CollectFields(oc, op.SelectionSet, []string{"Subscription"}) {
			if f.Name != "feed" {
				continue
			}
			if n := listLen(f.ArgumentMap(oc.Variables)["channels"]); n > lim.MaxSubscriptionChannels {
				return limitGQLError(lim.tooManyChannels(n))
			}
		}
	case ast.Mutation:
		for _, f := range graphql.CollectFields(oc, op.SelectionSet, []string{"Mutation"}) {
			switch f.Name {
			case "send":
				sends++
			case "broadcast":
				in, _ := f.ArgumentMap(oc.Variables)["input"].(map[string]any)
				sends += min(max(listLen(in["channels"]), 1), graph.MaxBroadcastChannels)
			}
		}
	}

	ws, _ := ctx.Value(wsLimitsKey{}).(*WebSocket)
	if ws != nil {
		if !ws.acquire() {
			return limitGQLError(rateLimited(0, "subscription limit of %d active operations per WebSocket connection reached; "+
				"complete one first, or open another connection", ws.max))
		}
		oc.Stats.SetExtension(WebSocketSlot, ws)
	}
	if planning, _ := ctx.Value(planningKey{}).(bool); sends > 0 && !planning {
		if err := lim.takeSend(ctx, sends); err != nil {
			if ws != nil {
				ws.Release()
				oc.Stats.SetExtension(WebSocketSlot, nil)
			}
			if err.retry > 0 {
				lim.hooks.noteRetry(ctx, err.retry)
			}
			return limitGQLError(err)
		}
	}
	return nil
}

// InterceptOperation gives an operation's WebSocket slot back when the
// operation ends (its context is cancelled then: on complete, on the
// client's stop, or when the connection closes).
func (o *Operations) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if oc := graphql.GetOperationContext(ctx); oc != nil {
		if ws, ok := oc.Stats.GetExtension(WebSocketSlot).(*WebSocket); ok {
			context.AfterFunc(ctx, ws.Release)
		}
	}
	return next(ctx)
}

// planningKey marks the context of a validation that plans a document
// (Planning).
type planningKey struct{}

// Planning marks ctx as the context of a validation that only plans a
// document (the send fast path's): Operations takes no send from the rate
// for it.
func Planning(ctx context.Context) context.Context {
	return context.WithValue(ctx, planningKey{}, true)
}

func badInput(format string, args ...any) *gqlerror.Error {
	return &gqlerror.Error{Message: fmt.Sprintf(format, args...), Extensions: map[string]any{"code": graph.CodeBadUserInput}}
}

// limitGQLError is e as a GraphQL error; a wait is extensions.retryAfter,
// in seconds.
func limitGQLError(e *limitError) *gqlerror.Error {
	out := &gqlerror.Error{Message: e.msg, Extensions: map[string]any{"code": e.code}}
	if e.retry > 0 {
		out.Extensions["retryAfter"] = RetrySeconds(e.retry)
	}
	return out
}

func listLen(v any) int {
	l, _ := v.([]any)
	return len(l)
}

// docWalker measures selection sets with fragments expanded, each fragment
// measured once, so a document whose expansion is exponential costs no
// more than its size.
//
// Its count is the operation's cost: one per field, and a list field costs
// its fields once per item it may hold, so that what an operation may make
// the server build is bounded by the complexity limit, not by the number
// of its fields: history's nodes and edges count their selection once per
// message of the page (first or last, else graph.DefaultPageSize, at most
// pubsub.MaxHistoryLimit), a presence's subjects graph.MaxPresenceSubjects.
// history(last: 1000) { nodes { data } } costs 1 + 1 + 1000 × 1.
type docWalker struct {
	frags       ast.FragmentDefinitionList
	vars        map[string]any
	counts      map[pageKey]int
	depths      map[string]int
	introspects bool // a __schema or __type field was counted
}

// pageKey memoizes a fragment's count where it is spread: inside a history
// connection (page > 0) its list fields count per message.
type pageKey struct {
	name string
	page int
}

func newDocWalker(doc *ast.QueryDocument) *docWalker {
	return &docWalker{frags: doc.Fragments, counts: map[pageKey]int{}, depths: map[string]int{}}
}

// countCap keeps counts from overflowing.
const countCap = 1 << 30

// count returns the cost of set, fragments expanded where they are spread.
func (w *docWalker) count(set ast.SelectionSet) int { return w.countIn(set, 0) }

// countIn is count inside a history connection whose page holds up to page
// messages (0: outside one).
func (w *docWalker) countIn(set ast.SelectionSet, page int) int {
	n := 0
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			n += 1 + w.fieldCost(s, page)
		case *ast.InlineFragment:
			n += w.countIn(s.SelectionSet, page)
		case *ast.FragmentSpread:
			key := pageKey{s.Name, page}
			c, ok := w.counts[key]
			if !ok {
				w.counts[key] = 0 // a cycle (validation refuses them) counts nothing
				if def := w.fragment(s); def != nil {
					c = w.countIn(def.SelectionSet, page)
				}
				w.counts[key] = c
			}
			n += c
		}
		n = min(n, countCap)
	}
	return n
}

// fieldCost is what f's selection costs (f itself counts one).
func (w *docWalker) fieldCost(f *ast.Field, page int) int {
	switch {
	case f.Name == "__schema" || f.Name == "__type":
		w.introspects = true
	case f.Name == "history":
		return w.countIn(f.SelectionSet, w.pageSize(f))
	case page > 0 && (f.Name == "nodes" || f.Name == "edges"):
		return min(page*w.countIn(f.SelectionSet, 0), countCap)
	case f.Name == "subjects":
		return graph.MaxPresenceSubjects
	}
	return w.countIn(f.SelectionSet, 0)
}

// pageSize returns how many messages a history field may return: its first
// or last argument (a literal or a variable), else the default page size;
// within 1..pubsub.MaxHistoryLimit (the resolver refuses other values).
func (w *docWalker) pageSize(f *ast.Field) int {
	size := graph.DefaultPageSize
	for _, a := range f.Arguments {
		if a.Name != "first" && a.Name != "last" {
			continue
		}
		v, err := a.Value.Value(w.vars)
		if err != nil {
			continue
		}
		switch n := v.(type) {
		case int64:
			size = int(min(max(n, 1), pubsub.MaxHistoryLimit))
		case int:
			size = min(max(n, 1), pubsub.MaxHistoryLimit)
		case json.Number:
			if i, err := n.Int64(); err == nil {
				size = int(min(max(i, 1), pubsub.MaxHistoryLimit))
			}
		case float64:
			size = int(min(max(n, 1), pubsub.MaxHistoryLimit))
		}
	}
	return size
}

// depth returns the deepest nesting of fields in set: 1 for { a }, 2 for
// { a { b } }.
func (w *docWalker) depth(set ast.SelectionSet) int {
	d := 0
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			d = max(d, 1+w.depth(s.SelectionSet))
		case *ast.InlineFragment:
			d = max(d, w.depth(s.SelectionSet))
		case *ast.FragmentSpread:
			fd, ok := w.depths[s.Name]
			if !ok {
				w.depths[s.Name] = 0
				if def := w.fragment(s); def != nil {
					fd = w.depth(def.SelectionSet)
				}
				w.depths[s.Name] = fd
			}
			d = max(d, fd)
		}
	}
	return d
}

func (w *docWalker) fragment(s *ast.FragmentSpread) *ast.FragmentDefinition {
	if s.Definition != nil {
		return s.Definition
	}
	return w.frags.ForName(s.Name)
}

// bareWordInJSON returns the first enum literal (a bare word, as in
// `data: foo`) inside a literal of the JSON scalar in doc: gqlgen hands it
// to the scalar as the string "foo", though it is not JSON.
func bareWordInJSON(doc *ast.QueryDocument) string {
	var inValue func(v *ast.Value, json bool) string
	inValue = func(v *ast.Value, json bool) string {
		if v == nil {
			return ""
		}
		json = json || (v.ExpectedType != nil && v.ExpectedType.Name() == "JSON")
		if json && v.Kind == ast.EnumValue {
			return v.Raw
		}
		for _, c := range v.Children {
			if w := inValue(c.Value, json); w != "" {
				return w
			}
		}
		return ""
	}
	var inSet func(set ast.SelectionSet) string
	inSet = func(set ast.SelectionSet) string {
		for _, s := range set {
			switch s := s.(type) {
			case *ast.Field:
				for _, a := range s.Arguments {
					if w := inValue(a.Value, false); w != "" {
						return w
					}
				}
				if w := inSet(s.SelectionSet); w != "" {
					return w
				}
			case *ast.InlineFragment:
				if w := inSet(s.SelectionSet); w != "" {
					return w
				}
			}
		}
		return ""
	}
	for _, op := range doc.Operations {
		if w := inSet(op.SelectionSet); w != "" {
			return w
		}
	}
	for _, f := range doc.Fragments {
		if w := inSet(f.SelectionSet); w != "" {
			return w
		}
	}
	return ""
}
