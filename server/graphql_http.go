package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/server/delivery"
)

// GraphQL over HTTP requests that gqlgen's transports answer without an
// extensions.code, or with a status the GraphQL over HTTP specification
// does not give: a body that is not one JSON object (sendTransport reads
// every POST body first: requestBodyError), a POST of another content type
// (jsonRequired), a mutation or subscription over GET (getTransport).

// writeRequestError answers a request refused before any operation with
// one GraphQL error and status, in the content type gqlgen would answer
// it with.
func writeRequestError(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor, status int, e *gqlerror.Error) {
	w.Header().Set("Content-Type", responseContentType(r.Header.Get("Accept")))
	writeNotExecuted(w, status, exec.DispatchError(r.Context(), gqlerror.List{e}))
}

// notExecuted is the answer to a request that failed before its operation
// ran: without a "data" entry, which the GraphQL over HTTP specification
// reserves for operations that were executed (gqlgen writes "data": null).
type notExecuted struct {
	Errors     gqlerror.List  `json:"errors"`
	Extensions map[string]any `json:"extensions,omitempty"`
}

func writeNotExecuted(w http.ResponseWriter, status int, resp *graphql.Response) {
	b, err := json.Marshal(notExecuted{Errors: resp.Errors, Extensions: resp.Extensions})
	if err != nil {
		panic(err)
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// serveOperation runs raw (read by the POST or GET transport; ReadTime.Start
// set) as gqlgen's transports do, but answers a request that fails before
// execution as the GraphQL over HTTP specification asks, where gqlgen does
// not: no query at all is 400 BAD_USER_INPUT; a document that does not
// parse or validate, or variables that do not coerce, are 200 with
// application/json (422 in gqlgen) and 400 with
// application/graphql-response+json; neither has a "data" entry.
func serveOperation(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor, raw *graphql.RawParams) {
	contentType := responseContentType(r.Header.Get("Accept"))
	if raw.Query == "" && raw.Extensions["persistedQuery"] == nil {
		writeRequestError(w, r, exec, http.StatusBadRequest, codedError(graph.CodeBadUserInput,
			`the request has no query: send {"query": "...", "variables": {...}}`))
		return
	}
	w.Header().Set("Content-Type", contentType)
	raw.Headers = r.Header
	raw.ReadTime.End = graphql.Now()
	rc, opErr := exec.CreateOperationContext(r.Context(), raw)
	if opErr != nil {
		status := http.StatusOK
		if contentType == graphqlResponseJSON && errcode.GetErrorKind(opErr) == errcode.KindProtocol {
			status = http.StatusBadRequest
		}
		writeNotExecuted(w, status, exec.DispatchError(graphql.WithOperationContext(r.Context(), rc), opErr))
		return
	}
	responses, ctx := exec.DispatchOperation(r.Context(), rc)
	// Encoded into the connection's writer, not marshalled and copied: a
	// 15 MB history page costs one 15 MB buffer less.
	out := &writeOnce{w: w}
	if err := json.NewEncoder(out).Encode(responses(ctx)); err != nil && out.err == nil {
		panic(err) // not a write's: a response that cannot be encoded, as gqlgen's transports
	}
}

// writeOnce is the writer of a json.Encoder's one Encode: it drops the
// newline Encode ends with (the response is the JSON alone, as the send
// fast path writes it), and remembers a failed write (a client gone), to
// tell it from an encoding error.
type writeOnce struct {
	w   http.ResponseWriter
	err error
}

func (o *writeOnce) Write(p []byte) (int, error) {
	trimmed := bytes.TrimSuffix(p, []byte("\n"))
	n, err := o.w.Write(trimmed)
	if err != nil {
		o.err = err
		return n, err
	}
	return len(p), nil
}

func codedError(code, format string, args ...any) *gqlerror.Error {
	return &gqlerror.Error{Message: fmt.Sprintf(format, args...), Extensions: map[string]any{"code": code}}
}

// requestBodyError is the error of a POST body that is not one JSON
// object of a GraphQL request's shape (a syntax error, data after the
// object, a field of the wrong type). It says where, by byte offset, and
// never echoes the body: gqlgen's own message quotes it whole.
func requestBodyError(err error, size int) *gqlerror.Error {
	return jsonError("the request body", err, size,
		`send one JSON object {"query": "...", "variables": {...}, "operationName": "..."}`)
}

// jsonError says why what, size bytes of JSON, could not be read as the
// object it must be, and what to send instead (hint).
func jsonError(what string, err error, size int, hint string) *gqlerror.Error {
	if size == 0 {
		return codedError(graph.CodeBadUserInput, "%s is empty: %s", what, hint)
	}
	if syn, ok := errors.AsType[*json.SyntaxError](err); ok {
		return codedError(graph.CodeBadUserInput, "%s is not one JSON value: %s at byte %d of %d; %s",
			what, syn.Error(), syn.Offset, size, hint)
	}
	if typ, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		field, want := what, "an object"
		switch typ.Field {
		case "":
		case "query", "operationName":
			field, want = typ.Field, "a string"
		default:
			field = typ.Field
		}
		return codedError(graph.CodeBadUserInput, "%s must be %s, not a JSON %s (at byte %d); %s",
			field, want, typ.Value, typ.Offset, hint)
	}
	return codedError(graph.CodeBadUserInput, "%s is not a GraphQL request; %s", what, hint)
}

// jsonRequired answers a POST that no transport took: its content type is
// not application/json (and it is not a graphql-sse request of it).
// gqlgen would answer 400 "transport not supported", without a code.
type jsonRequired struct{}

var _ graphql.Transport = jsonRequired{}

func (jsonRequired) Supports(r *http.Request) bool {
	return r.Method == http.MethodPost && delivery.KindOf(r) != delivery.Upgrade
}

func (jsonRequired) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	got := "none"
	if ct := r.Header.Get("Content-Type"); ct != "" {
		got = "an unsupported one"
		if mt, _, err := mime.ParseMediaType(ct); err == nil && len(mt) <= 100 {
			got = fmt.Sprintf("%q", mt)
		}
	}
	writeRequestError(w, r, exec, http.StatusUnsupportedMediaType, codedError(graph.CodeBadUserInput,
		"POST /graphql takes a JSON body: send Content-Type: application/json (the request has %s)", got))
}

// getTransport is gqlgen's GET transport, but for a mutation or a
// subscription: the GraphQL over HTTP specification requires 405 (with
// Allow: POST) for a mutation over GET, where gqlgen answers 406 without
// a code; it is answered so before anything of it runs (gqlgen's would
// have taken the sender's rate first). A subscription over plain GET is
// answered alike: it runs over the WebSocket or graphql-sse (POST).
type getTransport struct {
	transport.GET
	docs graphql.Cache[*ast.QueryDocument] // the executor's, of validated documents
}

func (t getTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	// gqlgen answers these without a code, and takes a JSON value followed
	// by more in variables and extensions.
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeRequestError(w, r, exec, http.StatusBadRequest, codedError(graph.CodeBadUserInput, "the query string: %v", err))
		return
	}
	if op := t.operation(r.Context(), q.Get("query"), q.Get("operationName")); op == ast.Mutation || op == ast.Subscription {
		w.Header().Set("Allow", "POST")
		writeRequestError(w, r, exec, http.StatusMethodNotAllowed, codedError(codeMethodNotAllowed,
			"a %s cannot run over GET: send it with POST (a subscription over the WebSocket or graphql-sse)", op))
		return
	}
	raw := &graphql.RawParams{Query: q.Get("query"), OperationName: q.Get("operationName")}
	raw.ReadTime.Start = graphql.Now()
	for _, p := range []struct {
		name string
		into *map[string]any
	}{{"variables", &raw.Variables}, {"extensions", &raw.Extensions}} {
		if v := q.Get(p.name); v != "" {
			if err := decodeJSONNumbers(v, p.into); err != nil {
				writeRequestError(w, r, exec, http.StatusBadRequest, jsonError(p.name, err, len(v), "send a JSON object"))
				return
			}
		}
	}
	serveOperation(w, r, exec, raw)
}

// decodeJSONNumbers decodes one JSON object, numbers kept as written
// (json.Number), as gqlgen decodes variables: a large integer is then
// refused by its scalar, not rounded through a float64.
func decodeJSONNumbers(text string, into *map[string]any) error {
	// json.Unmarshal first: its errors say where (and refuse data after
	// the object), which a Decoder's do not.
	var check map[string]any
	if err := json.Unmarshal([]byte(text), &check); err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	return dec.Decode(into)
}

// operation returns the kind of the operation query and name select, ""
// when the document does not parse or has no such operation (gqlgen's
// transport then says so).
func (t getTransport) operation(ctx context.Context, query, name string) ast.Operation {
	doc, ok := t.docs.Get(ctx, query)
	if !ok {
		var err error
		if doc, err = parser.ParseQuery(&ast.Source{Input: query}); err != nil {
			return ""
		}
	}
	if op := doc.Operations.ForName(name); op != nil {
		return op.Operation
	}
	return ""
}
