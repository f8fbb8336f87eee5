package server

import (
	"context"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/pushgate/pushgate/graph/model"
	"github.com/pushgate/pushgate/server/observe"
)

// sendAliases adds to sends the response keys of the send and broadcast
// fields of set. It ignores @skip and @include: an operation refused before
// it ran may have variables that do not fit them (graphql.CollectFields
// panics then).
func sendAliases(set ast.SelectionSet, sends map[string]bool, depth int) map[string]bool {
	if depth > 3 {
		return sends
	}
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name == "send" || s.Name == "broadcast" {
				if sends == nil {
					sends = make(map[string]bool)
				}
				sends[s.Alias] = true
			}
		case *ast.InlineFragment:
			sends = sendAliases(s.SelectionSet, sends, depth+1)
		case *ast.FragmentSpread:
			if s.Definition != nil {
				sends = sendAliases(s.Definition.SelectionSet, sends, depth+1)
			}
		}
	}
	return sends
}

// gqlMetrics is the GraphQL side of the metrics: subscription operations
// running, messages a feed writes (WebSocket, graphql-sse) and the errors
// of send and broadcast.
type gqlMetrics struct{ m *Metrics }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
	graphql.FieldInterceptor
	graphql.ResponseInterceptor
} = gqlMetrics{}

func (x gqlMetrics) ExtensionName() string                          { return "PushgateMetrics" }
func (x gqlMetrics) Validate(schema graphql.ExecutableSchema) error { return nil }

// feedTap sees each event of a feed as it is written. gqlgen takes one
// event from the resolver's channel per response; InterceptField hands
// gqlgen a channel of its own instead, which InterceptResponse fills with
// the resolver's next event right before gqlgen reads it, on the same
// goroutine: no goroutine nor extra wake-up per event.
type feedTap struct {
	in     <-chan model.FeedEvent // the resolver's
	out    chan model.FeedEvent   // gqlgen's, capacity 1
	closed bool
}

type feedTapKey struct{}

func (x gqlMetrics) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	if oc.Operation == nil || oc.Operation.Operation != ast.Subscription {
		return next(ctx)
	}
	if st := observe.StreamOf(ctx); st != nil {
		context.AfterFunc(ctx, x.m.Subscribed(st.Transport())) // ends with the operation
	}
	return next(context.WithValue(ctx, feedTapKey{}, &feedTap{}))
}

func (x gqlMetrics) InterceptField(ctx context.Context, next graphql.Resolver) (any, error) {
	res, err := next(ctx)
	in, ok := res.(<-chan model.FeedEvent)
	if !ok || err != nil {
		return res, err
	}
	tap, _ := ctx.Value(feedTapKey{}).(*feedTap)
	if tap == nil || tap.in != nil {
		return res, err
	}
	tap.in, tap.out = in, make(chan model.FeedEvent, 1)
	return (<-chan model.FeedEvent)(tap.out), nil
}

func (x gqlMetrics) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	if !graphql.HasOperationContext(ctx) {
		return next(ctx)
	}
	oc := graphql.GetOperationContext(ctx)
	if oc.Operation == nil {
		return next(ctx)
	}
	switch oc.Operation.Operation {
	case ast.Subscription:
		return x.feedResponse(ctx, next)
	case ast.Mutation:
		resp := next(ctx)
		x.countSendErrors(oc, resp)
		return resp
	}
	return next(ctx)
}

// feedResponse passes the feed's next event to gqlgen and counts it
// delivered once gqlgen made it a response, which the transport writes.
func (x gqlMetrics) feedResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	tap, _ := ctx.Value(feedTapKey{}).(*feedTap)
	if tap == nil || tap.in == nil || tap.closed || len(tap.out) > 0 {
		return next(ctx)
	}
	var created time.Time
	select {
	case ev, ok := <-tap.in:
		if !ok {
			tap.closed = true
			close(tap.out)
			break
		}
		tap.out <- ev
		switch msg := ev.(type) {
		case *model.Message:
			created = msg.CreatedAt
		case model.Message:
			created = msg.CreatedAt
		}
	case <-ctx.Done():
	}
	resp := next(ctx)
	if resp != nil && !created.IsZero() {
		observe.StreamOf(ctx).Deliver(time.Now(), created)
	}
	return resp
}

// countSendErrors counts the errors of resp that belong to a send or a
// broadcast: every error of an operation with one that was refused before
// it ran (it has no data), else those on the paths of those fields.
func (x gqlMetrics) countSendErrors(oc *graphql.OperationContext, resp *graphql.Response) {
	if resp == nil || len(resp.Errors) == 0 {
		return
	}
	sends := sendAliases(oc.Operation.SelectionSet, nil, 0)
	if sends == nil {
		return
	}
	refused := resp.Data == nil
	for _, e := range resp.Errors {
		if !refused {
			if len(e.Path) == 0 {
				continue
			}
			if alias, ok := e.Path[0].(ast.PathName); !ok || !sends[string(alias)] {
				continue
			}
		}
		code, _ := e.Extensions["code"].(string)
		x.countSendError(code)
	}
}

// countSendError counts one error of a send or broadcast by its code.
func (x gqlMetrics) countSendError(code string) { x.m.SendError(code) }
