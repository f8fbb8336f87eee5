package server

import (
	"bytes"
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/graph/model"
	"github.com/pushgate/pushgate/server/limits"
)

// The fast path of the send mutation over HTTP POST, the call a backend
// makes for every message. gqlgen's executor spends most of a send's CPU
// on work that is the same for every call of one document: decoding the
// variables into maps, coercing them, walking the selection, marshaling
// through interfaces. A document that is exactly
//
//	mutation($in: SendInput!) { send(input: $in) { message { ...scalars } duplicate } }
//
// (any names, aliases and field order; no fragments, no directives) is
// validated once, by gqlgen, with every extension of the handler (limits,
// introspection); then each call decodes only its input, calls the same
// resolver and renders the selection directly. Anything else, and any call
// whose body or variables are not the plain case (a value of another type,
// an unknown input field, extensions, a send over the rate), goes to
// gqlgen's own POST transport, untouched, so every error reads as it does
// there; but a body that is not one JSON object is refused before either
// path (requestBodyError, graphql_http.go). sendfast_test.go proves both
// paths answer the same.

// sendTransport is gqlgen's POST transport with the send fast path.
type sendTransport struct {
	transport.POST
	resolver *graph.Resolver
	lim      *limits.Limiter
	metrics  gqlMetrics
	plans    sendPlans
}

// sendPlan is how one document's send is rendered.
type sendPlan struct {
	variable string     // the input's variable
	alias    string     // the send field's response key
	field    *ast.Field // send, in the validated document
	payload  []payloadField
	message  []planField // of payload's message field
}

type payloadField struct {
	key   string
	field string // __typename, message or duplicate
}

// sendPlans caches plans by query text; nil: the document is not a plain
// send (gqlgen runs it).
type sendPlans struct {
	mu    sync.RWMutex
	plans map[sendPlanKey]*sendPlan
}

type sendPlanKey struct{ query, operation string }

// maxSendPlans bounds the documents remembered.
const maxSendPlans = 256

// sendBody is a request body as gqlgen's POST transport reads it
// (graphql.RawParams), but for the variables, which stay raw.
type sendBody struct {
	Query         string                     `json:"query"`
	OperationName string                     `json:"operationName"`
	Variables     map[string]json.RawMessage `json:"variables"`
	Extensions    map[string]json.RawMessage `json:"extensions"`
}

var sendBodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (t *sendTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	buf := sendBodies.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 {
			buf.Reset()
			sendBodies.Put(buf)
		}
	}()
	_, err := buf.ReadFrom(r.Body)
	if err == nil {
		body, bodyErr := readSendRequest(buf.Bytes())
		if bodyErr != nil {
			// gqlgen would take the first JSON value and ignore what follows
			// it, and quote a bad body whole in its error.
			writeRequestError(w, r, exec, http.StatusBadRequest, requestBodyError(bodyErr, buf.Len()))
			return
		}
		if body.plain && t.fast(w, r, exec, body) {
			return
		}
	}
	if err != nil {
		// Nothing of a body cut short runs.
		writeRequestError(w, r, exec, http.StatusBadRequest, codedError(graph.CodeBadUserInput,
			"could not read request body: %v", err))
		return
	}
	raw := &graphql.RawParams{}
	raw.ReadTime.Start = graphql.Now()
	dec := json.NewDecoder(bytes.NewReader(buf.Bytes()))
	dec.UseNumber() // as gqlgen: a large integer is refused by its scalar, not rounded
	if err := dec.Decode(raw); err != nil {
		writeRequestError(w, r, exec, http.StatusBadRequest, requestBodyError(err, buf.Len()))
		return
	}
	serveOperation(w, r, exec, raw)
}

// fast serves the request on the fast path, or reports false having
// written nothing.
func (t *sendTransport) fast(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor, body sendRequest) bool {
	plan := t.plans.of(r.Context(), exec, body.query, body.operation)
	if plan == nil {
		return false
	}
	input, ok := body.inputOf(plan.variable)
	if !ok {
		return false
	}
	// The send rate, as limits.Operations takes it on gqlgen's path; over
	// it, gqlgen answers (and takes again, finding it still over).
	if t.lim.TakeSend(r.Context(), 1) != nil {
		return false
	}
	sendFastServed.Add(1)
	w.Header().Add("Content-Type", responseContentType(r.Header.Get("Accept")))
	payload, err := t.send(r.Context(), plan, input)
	if err != nil {
		t.writeError(w, r.Context(), plan, err)
		return true
	}
	out := sendResponses.Get().(*[]byte)
	b := plan.render((*out)[:0], payload)
	_, _ = w.Write(b)
	if cap(b) <= 64<<10 {
		*out = b
		sendResponses.Put(out)
	}
	return true
}

// sendRequest is a POST body as the fast path reads it.
type sendRequest struct {
	// plain: the body has the plain shape (no extensions, one variable),
	// and query, operation and inputOf are set.
	plain            bool
	query, operation string
	// inputOf returns the input of the variable named, when it is plain.
	inputOf func(variable string) (model.SendInput, bool)
}

// readSendRequest reads a POST body: scanSend when it is sure, else
// encoding/json, which also decides whether the body is a GraphQL request
// at all. err is set when it is not: not exactly one JSON value (trailing
// data included), or a field of the wrong type. encoding/json refuses
// what gqlgen's reading of the same body (json.Decoder into
// graphql.RawParams) refuses, and data after the value besides.
func readSendRequest(raw []byte) (req sendRequest, err error) {
	if q, op, v, in, ok := scanSend(raw); ok {
		return sendRequest{plain: true, query: q, operation: op,
			inputOf: func(name string) (model.SendInput, bool) { return in, name == v }}, nil
	}
	var body sendBody
	if err := json.Unmarshal(raw, &body); err != nil {
		return sendRequest{}, err
	}
	if body.Extensions != nil || len(body.Variables) != 1 {
		return sendRequest{}, nil
	}
	return sendRequest{plain: true, query: body.Query, operation: body.OperationName,
		inputOf: func(name string) (model.SendInput, bool) { return sendInputOf(body.Variables[name]) }}, nil
}

// sendFastServed counts the sends the fast path answered (tests tell the
// paths apart by it).
var sendFastServed atomic.Int64

var sendResponses = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// send calls the resolver as gqlgen would, panics included; the error is
// as gqlgen hands it to the error presenter.
func (t *sendTransport) send(ctx context.Context, plan *sendPlan, input model.SendInput) (payload *model.SendPayload, err error) {
	defer func() {
		if p := recover(); p != nil {
			payload, err = nil, graph.Recover(ctx, p)
		}
	}()
	payload, err = t.resolver.Mutation().Send(ctx, input)
	if err != nil {
		err = graphql.AddFieldLocationToError(plan.fieldContext(ctx), err)
	}
	return payload, err
}

func (p *sendPlan) fieldContext(ctx context.Context) context.Context {
	return graphql.WithFieldContext(ctx, &graphql.FieldContext{
		Object:   "Mutation",
		Field:    graphql.CollectedField{Field: p.field},
		IsMethod: true,
		NonNull:  true,
	})
}

// writeError answers as gqlgen does when the send field fails: the
// presented errors at the field's path, and the field null.
func (t *sendTransport) writeError(w http.ResponseWriter, ctx context.Context, plan *sendPlan, err error) {
	fctx := plan.fieldContext(ctx)
	errs := []error{err}
	if l, ok := err.(gqlerror.List); ok {
		errs = errs[:0]
		for _, e := range l {
			errs = append(errs, e)
		}
	}
	var list gqlerror.List
	for _, e := range errs {
		if presented := graph.ErrorPresenter(fctx, graphql.ErrorOnPath(fctx, e)); presented != nil {
			list = append(list, presented)
		}
	}
	for _, e := range list {
		code, _ := e.Extensions["code"].(string)
		t.metrics.countSendError(code)
	}
	b, merr := json.Marshal(&graphql.Response{Errors: list, Data: json.RawMessage(`{"` + plan.alias + `":null}`)})
	if merr != nil {
		panic(merr)
	}
	_, _ = w.Write(b)
}

// responseContentType is the Content-Type gqlgen's POST transport (as
// configured in graphqlHandler) answers a request with this Accept header
// with: the first media type it knows, application/json by default.
// graphqlResponseJSON is the media type of the GraphQL over HTTP
// specification's responses.
const graphqlResponseJSON = "application/graphql-response+json"

func responseContentType(accept string) string {
	const js, gqlJSON = "application/json", graphqlResponseJSON
	if accept == "" {
		return js
	}
	for part := range strings.SplitSeq(accept, ",") {
		mediaType, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mediaType {
		case "*/*", "application/*", js:
			return js
		case gqlJSON:
			return gqlJSON
		}
	}
	return gqlJSON
}

// sendInputOf decodes a SendInput variable when it is the plain case:
// an object of known fields only, channel a string, data present and not
// null, event and idempotencyKey strings or null. data is decoded and
// encoded again as gqlgen does (model.UnmarshalJSON), so that what is
// stored does not depend on the path.
func sendInputOf(raw json.RawMessage) (model.SendInput, bool) {
	var in model.SendInput
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil || fields == nil {
		return in, false
	}
	var haveChannel, haveData bool
	for k, v := range fields {
		switch k {
		case "channel":
			if !jsonString(v, &in.Channel) {
				return in, false
			}
			haveChannel = true
		case "data":
			if bytes.Equal(v, []byte("null")) {
				return in, false
			}
			dec := json.NewDecoder(bytes.NewReader(v))
			dec.UseNumber()
			var val any
			if dec.Decode(&val) != nil {
				return in, false
			}
			data, err := model.UnmarshalJSON(val)
			if err != nil {
				return in, false
			}
			in.Data, haveData = data, true
		case "event":
			if !optionalString(v, &in.Event) {
				return in, false
			}
		case "idempotencyKey":
			if !optionalString(v, &in.IdempotencyKey) {
				return in, false
			}
		default:
			return in, false
		}
	}
	return in, haveChannel && haveData
}

func jsonString(v json.RawMessage, out *string) bool {
	return len(v) > 0 && v[0] == '"' && json.Unmarshal(v, out) == nil
}

func optionalString(v json.RawMessage, out **string) bool {
	if bytes.Equal(v, []byte("null")) {
		return true
	}
	var s string
	if !jsonString(v, &s) {
		return false
	}
	*out = &s
	return true
}

// of returns the plan of a document, making it on first use.
func (ps *sendPlans) of(ctx context.Context, exec graphql.GraphExecutor, query, operation string) *sendPlan {
	// Most documents are not sends: they are not planned at all.
	if !strings.Contains(query, "send") || !strings.Contains(query, "mutation") {
		return nil
	}
	key := sendPlanKey{query, operation}
	ps.mu.RLock()
	plan, known := ps.plans[key]
	ps.mu.RUnlock()
	if known {
		return plan
	}
	plan = makeSendPlan(ctx, exec, query, operation)
	ps.mu.Lock()
	if ps.plans == nil {
		ps.plans = make(map[sendPlanKey]*sendPlan)
	}
	if len(ps.plans) < maxSendPlans {
		ps.plans[key] = plan
	}
	ps.mu.Unlock()
	return plan
}

// makeSendPlan has gqlgen validate the document, with an input that is
// valid whatever the document, and every extension of the handler; then
// it plans the document if it is a plain send.
func makeSendPlan(ctx context.Context, exec graphql.GraphExecutor, query, operation string) *sendPlan {
	ctx = limits.Planning(ctx) // no send is taken from the rate
	// The document's one variable, from gqlgen's parse (the call fails for
	// want of it); then gqlgen validates the document with a valid input
	// for it, every extension included.
	first, _ := exec.CreateOperationContext(ctx, &graphql.RawParams{Query: query, OperationName: operation})
	if first.Operation == nil || len(first.Operation.VariableDefinitions) != 1 {
		return nil
	}
	v := first.Operation.VariableDefinitions[0]
	if v.Type.String() != "SendInput!" || v.DefaultValue != nil || len(v.Directives) > 0 {
		return nil
	}
	vars := map[string]any{v.Variable: map[string]any{"channel": "plan", "data": json.Number("0")}}
	rc, errs := exec.CreateOperationContext(ctx, &graphql.RawParams{Query: query, OperationName: operation, Variables: vars})
	if errs != nil {
		return nil
	}
	op := rc.Operation
	if op.Operation != ast.Mutation || len(op.Directives) > 0 || len(rc.Doc.Operations) != 1 || len(rc.Doc.Fragments) > 0 ||
		len(op.SelectionSet) != 1 {
		return nil
	}
	send, ok := op.SelectionSet[0].(*ast.Field)
	if !ok || send.Name != "send" || len(send.Directives) > 0 || len(send.Arguments) != 1 || !plainKey(send.Alias) {
		return nil
	}
	arg := send.Arguments[0]
	if arg.Name != "input" || arg.Value.Kind != ast.Variable || arg.Value.Raw != v.Variable {
		return nil
	}
	plan := &sendPlan{variable: v.Variable, alias: send.Alias, field: send}
	seen := map[string]bool{}
	for _, s := range send.SelectionSet {
		f, ok := s.(*ast.Field)
		if !ok || len(f.Directives) > 0 || len(f.Arguments) > 0 || seen[f.Alias] || !plainKey(f.Alias) {
			return nil
		}
		seen[f.Alias] = true
		switch f.Name {
		case "__typename", "duplicate":
		case "message":
			if plan.message != nil {
				return nil
			}
			if plan.message, ok = plainFields(f.SelectionSet); !ok {
				return nil
			}
		default:
			return nil
		}
		plan.payload = append(plan.payload, payloadField{key: f.Alias, field: f.Name})
	}
	return plan
}

// plainFields plans a selection of Message scalars, each named once.
func plainFields(sel ast.SelectionSet) ([]planField, bool) {
	var out []planField
	seen := map[string]bool{}
	for _, s := range sel {
		f, ok := s.(*ast.Field)
		if !ok || len(f.Directives) > 0 || len(f.Arguments) > 0 || len(f.SelectionSet) > 0 || seen[f.Alias] || !plainKey(f.Alias) {
			return nil, false
		}
		ff, known := messageFields[f.Name]
		if !known {
			return nil, false
		}
		seen[f.Alias] = true
		out = append(out, planField{key: f.Alias, field: ff})
	}
	return out, len(out) > 0
}

// render appends the response of a send as gqlgen writes it.
func (p *sendPlan) render(b []byte, payload *model.SendPayload) []byte {
	b = append(b, `{"data":{"`...)
	b = append(b, p.alias...)
	b = append(b, `":{`...)
	for i, f := range p.payload {
		b = appendKey(b, i, f.key)
		switch f.field {
		case "__typename":
			b = append(b, `"SendPayload"`...)
		case "duplicate":
			b = strconv.AppendBool(b, payload.Duplicate)
		case "message":
			b = appendMessage(b, p.message, payload.Message, nil)
		}
	}
	return append(b, "}}}"...)
}

// appendGQLJSON appends a JSON scalar as gqlgen's transports write it: they
// marshal the response with encoding/json, which escapes <, >, & and
// U+2028, U+2029 in a raw value.
func appendGQLJSON(b []byte, data []byte) []byte {
	if len(data) == 0 {
		return append(b, "null"...)
	}
	if bytes.IndexAny(data, "<>&\u2028\u2029") < 0 {
		return append(b, data...)
	}
	var buf bytes.Buffer
	json.HTMLEscape(&buf, data)
	return append(b, buf.Bytes()...)
}

// appendGQLString appends s quoted as gqlgen's String and ID marshalers
// quote it.
func appendGQLString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i, c := range s {
		if c >= 0x20 && c != '\\' && c != '"' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '\t':
			b = append(b, `\t`...)
		case '\r':
			b = append(b, `\r`...)
		case '\n':
			b = append(b, `\n`...)
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
