package server

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/delivery"
	"github.com/pushgate/pushgate/server/observe"
)

// graphqlSSE serves graphql-sse's distinct connections mode: a POST with
// Accept: text/event-stream runs one operation, whose results are "event:
// next" blocks and whose end is "event: complete". The operation runs in
// gqlgen's executor, and its results are written through a delivery.Stream
// on the response (delivery.ResponseConn): the write timeout, the
// heartbeat, the stream's account and its end (a last UNAUTHENTICATED
// result when its token expires, expiry.go) are the delivery layer's, as
// for every other stream.
type graphqlSSE struct {
	auth    *Auth
	metrics *Metrics
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
	ctx, cancel := t.auth.untilTokenExpires(ctx)
	defer cancel()
	rc, opErr := exec.CreateOperationContext(ctx, params)
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
	case tokenExpired(ctx):
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
