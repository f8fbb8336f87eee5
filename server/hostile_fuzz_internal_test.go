package server

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
)

// FuzzWSMessage: the WebSocket message decoder, on whatever a client sends
// in a text frame, never panics: a message is refused (errBadMessage) or
// has a type, and re-encodes to a message that decodes the same; the
// payload of a subscribe decodes as the operation's parameters or is
// refused, as start does.
func FuzzWSMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"connection_init","payload":{"token":"t"}}`,
		`{"id":"1","type":"subscribe","payload":{"query":"subscription { feed(channels: [\"a\"]) { __typename } }","variables":{"cursor":"AQEBYQFlhQA"}}}`,
		`{"id":"1","type":"start","payload":{"query":"{ __typename }","variables":null,"operationName":"x","extensions":{}}}`,
		`{"id":"1","type":"complete"}`,
		`{"type":"ping","payload":{"a":[1,2,{"b":null}]}}`,
		`{"id":"` + strings.Repeat("i", MaxOperationIDLength+1) + `","type":"subscribe","payload":{}}`,
		`{"type":""}`, `{"type":1}`, `[]`, `null`, `{"id":"\ud800","type":"stop"}`, `{"type":"subscribe","payload":"x"}`,
		`{"type":"subscribe","payload":{"variables":{"n":1e400}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMessage(data)
		if err != nil {
			if err != errBadMessage {
				t.Fatalf("error %v, want errBadMessage", err)
			}
			return
		}
		if m.Type == "" {
			t.Fatal("a message without a type")
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", m, err)
		}
		m2, err := decodeMessage(again)
		if err != nil || m2.ID != m.ID || m2.Type != m.Type || !reflect.DeepEqual(jsonValue(m2.Payload), jsonValue(m.Payload)) {
			t.Fatalf("%s re-encoded as %s decodes as %+v (%v)", data, again, m2, err)
		}
		if m.Type == "subscribe" || m.Type == "start" {
			params := &graphql.RawParams{}
			dec := json.NewDecoder(bytes.NewReader(m.Payload))
			dec.UseNumber()
			_ = dec.Decode(params) // refused or decoded: either way no panic
		}
	})
}

// jsonValue decodes b (numbers as written), or returns it as a string.
func jsonValue(b []byte) any {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return string(b)
	}
	return v
}
