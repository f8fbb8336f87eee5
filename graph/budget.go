package graph

import (
	"context"
	"errors"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/pushgate/pushgate/graph/model"
	"github.com/pushgate/pushgate/pubsub"
)

// CodeResponseTooLarge: the response would be larger than the server's
// response ceiling (--max-response-bytes); asking for fewer messages (first,
// last) or fewer fields can succeed.
const CodeResponseTooLarge = "RESPONSE_TOO_LARGE"

// DefaultMaxResponseBytes is ResponseLimit's default ceiling.
const DefaultMaxResponseBytes = 16 << 20

// messageOverhead is what one Message costs in a response besides its data:
// its keys, channel, id, event, createdAt and cursor, at their largest
// nearly 600 bytes, usually about 250.
const messageOverhead = 512

// ResponseLimit is the gqlgen extension that bounds what one operation's
// history pages may put in its response: each page is estimated as it is
// read (its messages' data plus messageOverhead, once for nodes and once
// for edges when both are selected), before anything of it is rendered, and
// a page that would take the operation over Max fails with
// RESPONSE_TOO_LARGE. The store stops reading soon after the bound
// (pubsub.HistoryRequest.MaxBytes), and one operation's pages are read one
// at a time, so a refused operation costs little more than Max. What the
// pages counted also sizes the response's buffer before it is rendered
// (model.WithResponseSize), so that it is not grown by doubling.
type ResponseLimit struct{ Max int64 }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = ResponseLimit{}

func (ResponseLimit) ExtensionName() string { return "PushgateResponseLimit" }

func (ResponseLimit) Validate(graphql.ExecutableSchema) error { return nil }

func (l ResponseLimit) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	b := &responseBudget{max: l.Max, left: l.Max}
	return next(model.WithResponseSize(context.WithValue(ctx, budgetKey{}, b), b.responseSize))
}

type budgetKey struct{}

// responseBudget is what an operation's response may still take.
type responseBudget struct {
	mu   sync.Mutex // held across a page's read: pages are read one at a time
	max  int64
	left int64
	// render is what the pages read so far may take in the response:
	// their data once per data field selected, and maxMessageOverhead per
	// message and nodes or edges field; data is its part of their data.
	render, data int64
	sized        bool // responseSize answered
}

// minPresize is the least data worth making room for at once: below it a
// doubling buffer costs little.
const minPresize = 64 << 10

// maxMessageOverhead bounds what one Message takes in a response besides
// its data (messageOverhead is what it usually takes, rounded up).
const maxMessageOverhead = 640

// responseSize returns, once, what the operation's history pages may take
// in its response, or 0 when their data is little, or the operation was
// refused. Every field is resolved before the response is rendered, so
// every page has been counted by then.
func (b *responseBudget) responseSize() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sized || b.left < 0 || b.data < minPresize {
		return 0
	}
	b.sized = true
	return int(b.render)
}

// readHistory reads a history page within the operation's response budget,
// if it has one.
func (r *Resolver) readHistory(ctx context.Context, channel string, req pubsub.HistoryRequest) (pubsub.HistoryPage, error) {
	b, _ := ctx.Value(budgetKey{}).(*responseBudget)
	if b == nil {
		return r.broker.History(ctx, channel, req)
	}
	copies, dataCopies := messageCopies(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	tooLarge := func() error {
		return Errorf(CodeResponseTooLarge, "history: the response would be over the server's limit of %d bytes; "+
			"ask for fewer messages (first, last) or fewer history fields", b.limit())
	}
	req.MaxBytes = int(max(1, b.left/copies))
	page, err := r.broker.History(ctx, channel, req)
	if errors.Is(err, pubsub.ErrTooLarge) {
		b.left = -1
		return pubsub.HistoryPage{}, tooLarge()
	}
	if err != nil {
		return page, err
	}
	var size, data int64
	for i := range page.Messages {
		data += int64(len(page.Messages[i].Data))
	}
	size = data + int64(len(page.Messages))*messageOverhead
	if size*copies > b.left {
		b.left = -1
		return pubsub.HistoryPage{}, tooLarge()
	}
	b.left -= size * copies
	b.data += data * dataCopies
	b.render += data*dataCopies + int64(len(page.Messages))*copies*maxMessageOverhead
	return page, nil
}

// limit returns the ceiling the budget started from (for the message).
func (b *responseBudget) limit() int64 { return b.max }

// messageCopies returns how many times the history field in ctx renders
// each message of its page: once per nodes or edges field it selects (at
// least once), and how many times it renders its data: once per data
// field of a Message those select.
func messageCopies(ctx context.Context) (copies, dataCopies int64) {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || !graphql.HasOperationContext(ctx) {
		return 1, 1
	}
	oc := graphql.GetOperationContext(ctx)
	data := func(sel ast.SelectionSet) {
		for _, f := range graphql.CollectFields(oc, sel, []string{"Message"}) {
			if f.Name == "data" {
				dataCopies++
			}
		}
	}
	for _, f := range graphql.CollectFields(oc, fc.Field.Selections, []string{"MessageConnection"}) {
		switch f.Name {
		case "nodes":
			copies++
			data(f.Selections)
		case "edges":
			copies++
			for _, e := range graphql.CollectFields(oc, f.Selections, []string{"MessageEdge"}) {
				if e.Name == "node" {
					data(e.Selections)
				}
			}
		}
	}
	return max(copies, 1), dataCopies
}
