package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/rs/zerolog"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/delivery"
	"github.com/pushgate/pushgate/server/limits"
	"github.com/pushgate/pushgate/server/observe"
)

// graphqlSSE serves graphql-sse's distinct connections mode: a POST with
// Accept: text/event-stream runs one operation, whose results are "event:
// next" blocks and whose end is "event: complete". Every operation is a
// delivery.Stream: the write timeout, the heartbeat, the stream's account
// and its end (a last UNAUTHENTICATED result when its token expires,
// expiry.go) are the delivery layer's, as for every other stream.
//
// A feed subscription over HTTP/1.1 takes the WebSocket's fast path
// (wsfeed.go: one rendering per selection and message for every
// subscriber): its connection is hijacked, as GET /events's is, and its
// events are written by the server's writers, coalesced (serveFeed).
// Other operations, and feeds where the response cannot be hijacked
// (HTTP/2), run in gqlgen's executor, their results written through the
// response (delivery.ResponseConn).
type graphqlSSE struct {
	auth     *access.Auth
	metrics  *Metrics
	resolver *graph.Resolver
	plans    *feedPlans
	writers  *delivery.Writers
	stopping *delivery.Shutdowns
	streams  *Streams
	// heartbeat is the interval of ": ping" comments on an idle stream;
	// writeTimeout bounds every write.
	heartbeat    time.Duration
	writeTimeout time.Duration
}

var _ graphql.Transport = graphqlSSE{}

// Supports a POST of a JSON body that accepts an event stream.
func (t graphqlSSE) Supports(r *http.Request) bool {
	if delivery.KindOf(r) != delivery.EventStream || r.Method != http.MethodPost {
		return false
	}
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mediaType == "application/json"
}

func (t graphqlSSE) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	ctx := r.Context()
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Connection", "keep-alive")
	w.Header().Set("Content-Type", "application/json")
	start := graphql.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeGraphQLJSON(w, exec.DispatchError(ctx, gqlerror.List{gqlerror.Errorf("could not get json request body: %+v", err)}))
		return
	}
	params := &graphql.RawParams{}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(params); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		writeGraphQLJSON(w, exec.DispatchError(ctx, gqlerror.List{gqlerror.Errorf(
			"json request body could not be decoded: %+v body:%s", err, body)}))
		return
	}
	params.Headers = r.Header
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}

	// The operation lasts no longer than its token (expiry.go); its
	// subscription and deliveries are counted on its account (feedTap).
	st := t.metrics.NewStream(observe.GraphQLSSE, r)
	ctx = observe.WithStream(ctx, st)
	ctx, cancel := t.auth.UntilTokenExpires(ctx)
	defer cancel()
	rc, opErr := exec.CreateOperationContext(ctx, params)
	if opErr == nil && r.ProtoMajor == 1 {
		if op := t.plans.of(rc); op != nil && t.serveFeed(w, r, ctx, st, op) {
			return
		}
	}
	ctx = graphql.WithOperationContext(ctx, rc)

	w.Header().Set("Content-Type", "text/event-stream")
	conn := delivery.NewResponseConn(w, t.writeTimeout)
	defer conn.Close() // before the handler returns: the response is net/http's again
	st.Open(false, nil)
	s := delivery.New(delivery.Options{
		Conn: conn, Encoder: graphqlSSEEncoder{}, Heartbeat: t.heartbeat, Ctx: ctx,
		// A failed write ends the operation.
		OnEnd: func(observe.End) { cancel() },
	})
	s.Send(func(b []byte) []byte { return append(b, ":\n\n"...) })
	s.Start()
	if opErr != nil {
		sendGraphQLSSE(s, exec.DispatchError(ctx, opErr))
	} else {
		responses, dctx := exec.DispatchOperation(ctx, rc)
		for resp := responses(dctx); resp != nil && sendGraphQLSSE(s, resp); resp = responses(dctx) {
		}
	}
	end := observe.End{By: "server", Reason: "operation complete"}
	switch {
	case access.TokenExpired(ctx):
		end = delivery.Expired
	case delivery.ShuttingDown(ctx):
		end = delivery.Shutdown
	case r.Context().Err() != nil:
		end = delivery.ClientGone
	}
	s.Finish(end) // a write that failed ended it first, and says why
	st.End(s.Ended())
}

// sendGraphQLSSE writes one result as "event: next"; false: the stream
// ended.
func sendGraphQLSSE(s *delivery.Stream, resp *graphql.Response) bool {
	data, err := json.Marshal(resp)
	if err != nil {
		panic(err)
	}
	return s.Send(func(b []byte) []byte {
		b = append(b, "event: next\ndata: "...)
		b = append(b, data...)
		return append(b, "\n\n"...)
	})
}

// writeGraphQLJSON answers a request refused before its stream started.
func writeGraphQLJSON(w io.Writer, resp *graphql.Response) {
	b, err := json.Marshal(resp)
	if err != nil {
		panic(err)
	}
	_, _ = w.Write(b)
}

// graphqlSSEEncoder frames graphql-sse's own blocks: results are written
// by the executor's loop (sendGraphQLSSE).
type graphqlSSEEncoder struct{}

func (graphqlSSEEncoder) AppendEvent(b []byte, _ pubsub.Event) []byte { return b }

func (graphqlSSEEncoder) AppendHeartbeat(b []byte) []byte { return append(b, ": ping\n\n"...) }

// AppendEnd completes the operation, after a last result saying so when
// its token expired.
func (graphqlSSEEncoder) AppendEnd(b []byte, e observe.End, _ pubsub.Cursor) []byte {
	if e == delivery.Expired {
		b = append(b, graphqlSSEExpired...)
	}
	return append(b, "event: complete\n\n"...)
}

// serveFeed serves a feed on the fast path; false, having written
// nothing, when the feed cannot be opened (gqlgen's executor then runs it,
// and its resolver reports the error as on every other transport). The
// stream outlives the handler, as GET /events's does: once it is set up,
// the handler returns and a small goroutine watches the socket, so that
// an idle stream keeps neither the handler's stack nor net/http's
// buffers. It ends when its token expires (a last UNAUTHENTICATED result,
// then complete), when the server shuts down or its subscription ends
// (complete), or when the client goes away or is too slow (the socket
// closes).
func (t graphqlSSE) serveFeed(w http.ResponseWriter, r *http.Request, ctx context.Context, st *observe.Stream, op *feedOp) bool {
	// The stream's context keeps the request's values, not its end; it is
	// bounded by the token anew, and ended on shutdown by the hook.
	var cleanup cleanups
	defer func() { cleanup.run() }() // unless the stream took it over
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stopWatch := t.stopping.Watch(r, cancel)
	cleanup.add(func() { stopWatch(); cancel(nil) })
	ctx, stop := t.auth.UntilTokenExpires(ctx)
	cleanup.add(stop)
	sub, leave, ok := t.openFeed(ctx, op)
	if !ok {
		return false
	}
	cleanup.add(limits.KeepStreamSlot(r.Context()))
	cleanup.add(leave)
	cleanup.add(sub.Close)
	cleanup.add(t.metrics.Subscribed(observe.GraphQLSSE))

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	// The socket closes with the stream: no client may reuse it.
	h.Set("Connection", "close")
	w.WriteHeader(http.StatusOK) // chunked: no length
	sock, err := delivery.Hijack(w, t.writeTimeout)
	if err != nil {
		zerolog.Ctx(ctx).Error().Err(err).Msg("graphql-sse: hijack")
		return true
	}
	// A hijacked connection is not net/http's: Shutdown neither ends nor
	// waits for it.
	cleanup.add(t.streams.open())
	cleanup.add(func() { _ = sock.Close() })

	st.Open(false, nil)
	var completing sync.Once
	var s *delivery.Stream
	s = delivery.New(delivery.Options{
		Sub: sub, Conn: sock, Encoder: graphqlSSEFeedEncoder{plan: op.plan, head: "event: next\ndata: {\"data\":{\"" + op.alias + "\":"},
		Writers: t.writers, Account: st, Chunked: true, Heartbeat: t.heartbeat, Ctx: ctx,
		OnEnd:   func(observe.End) { _ = sock.Close() }, // which ends watch
		OnPanic: func(v any) { logPanic(ctx, "graphql-sse write", v) },
		OnSubscriptionEnd: func() {
			completing.Do(func() {
				go func() {
					defer recoverClient(ctx, "graphql-sse end", func() { s.End(delivery.InternalEnd) })
					s.Finish(observe.End{By: "server", Reason: "operation complete"})
				}()
			})
		},
	})
	sock.OnResume(s.Kick)
	cleanup.add(func() { st.End(s.Ended()) })
	s.Send(func(b []byte) []byte { return append(b, ":\n\n"...) })
	s.Start()
	stopEnd := finishWhenDone(ctx, s, "graphql-sse end")
	cleanup.add(func() { stopEnd() })

	go watch(ctx, sock, s, cleanup)
	cleanup = nil
	return true
}

// openFeed opens op's subscription; false: it cannot be opened, or
// opening it panicked (the executor, which recovers the resolver's panics
// as errors, then reports it).
func (t graphqlSSE) openFeed(ctx context.Context, op *feedOp) (sub *pubsub.Subscription, leave func(), ok bool) {
	defer func() {
		if v := recover(); v != nil {
			sub, leave, ok = nil, nil, false
		}
	}()
	sub, leave, err := t.resolver.OpenFeed(ctx, op.channels, op.cursor)
	return sub, leave, err == nil
}

// graphqlSSEFeedEncoder frames a feed's events as graphql-sse results: the
// event as the plan renders it (the WebSocket's bytes) inside
// {"data":{<alias>:...}}.
type graphqlSSEFeedEncoder struct {
	graphqlSSEEncoder
	plan *feedPlan
	head string // event: next\ndata: {"data":{"<alias>":
}

func (e graphqlSSEFeedEncoder) AppendEvent(b []byte, ev pubsub.Event) []byte {
	b = append(b, e.head...)
	b = e.plan.appendEvent(b, ev)
	return append(b, "}}\n\n"...)
}
