package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestJSONScalarAsDocumented holds the JSON scalar's description in
// schema.graphqls to the server: data in variables keeps its numbers as
// written and is stored with keys sorted, a repeated key's last value,
// strings re-encoded (whether the send takes the fast path, one SendInput
// variable, or gqlgen's, a JSON variable); inline, numbers are converted.
func TestJSONScalarAsDocumented(t *testing.T) {
	p := start(t)
	const data = `{"b":1,"a":"\u0041\/<>&","n":1.50e3,"big":123456789012345678901234567890.25,"b":2}`
	// <, > and & as gqlgen's encoder escapes them in a response.
	const want = `{"a":"A/\u003c\u003e\u0026","b":2,"big":123456789012345678901234567890.25,"n":1.50e3}`
	for _, tt := range []struct{ name, body string }{
		{"SendInput variable", `{"query":"mutation($in: SendInput!) { send(input: $in) { message { data } } }",` +
			`"variables":{"in":{"channel":"news","data":` + data + `}}}`},
		{"JSON variable", `{"query":"mutation($d: JSON!) { send(input: {channel: \"news\", data: $d}) { message { data } } }",` +
			`"variables":{"d":` + data + `}}`},
		{"inline", `{"query":"mutation { send(input: {channel: \"news\", data: {b: 1.50, a: [1e3, 7], c: \"\\u0041\"}}) { message { data } } }"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := postRaw(t, p, tt.body)
			var out struct {
				Send struct {
					Message struct{ Data json.RawMessage }
				}
			}
			if len(r.Errors) > 0 || json.Unmarshal(r.Data, &out) != nil {
				t.Fatalf("send: %+v", r)
			}
			w := want
			if tt.name == "inline" {
				w = `{"a":[1000,7],"b":1.5,"c":"A"}`
			}
			if got := string(out.Send.Message.Data); got != w {
				t.Errorf("data stored as %s, want %s", got, w)
			}
		})
	}
}

// TestNumberOutOfRangeSaysSo: a number too large for what reads it gets
// an error saying so, inline in the query (an Int argument, JSON data) or
// in a variable, never one about a value the client did not send.
func TestNumberOutOfRangeSaysSo(t *testing.T) {
	p := start(t)
	for _, tt := range []struct {
		name, body string
		want       []string
	}{
		{"inline Int", `{"query":"{ history(channel: \"news\", first: 99999999999999999999) { nodes { id } } }"}`,
			[]string{"Int cannot represent non 32-bit signed integer value: 99999999999999999999"}},
		{"inline JSON integer", `{"query":"mutation { send(input: {channel: \"news\", data: {n: 99999999999999999999}}) { message { id } } }"}`,
			[]string{"99999999999999999999", "64-bit integer", "variables"}},
		{"inline JSON float", `{"query":"mutation { send(input: {channel: \"news\", data: [1.5e400]}) { message { id } } }"}`,
			[]string{"1.5e400", "float64", "variables"}},
		{"Int variable", `{"query":"query($n: Int) { history(channel: \"news\", first: $n) { nodes { id } } }","variables":{"n":99999999999999999999}}`,
			[]string{"out of range for Int", "2147483647"}},
		{"fractional Int variable", `{"query":"query($n: Int) { history(channel: \"news\", first: $n) { nodes { id } } }","variables":{"n":1.5}}`,
			[]string{"not an integer"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := postRaw(t, p, tt.body)
			if len(r.Errors) != 1 {
				t.Fatalf("errors %+v, want one", r.Errors)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.Errors[0].Message, w) {
					t.Errorf("message %q does not say %q", r.Errors[0].Message, w)
				}
			}
			if strings.Contains(r.Errors[0].Message, "9223372036854775807") {
				t.Errorf("message %q names a number the client did not send", r.Errors[0].Message)
			}
		})
	}
}

// postRaw posts body as is to /graphql with the API key.
func postRaw(t *testing.T, p *instance, body string) gqlResult {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.url+"/graphql", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var r gqlResult
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}
