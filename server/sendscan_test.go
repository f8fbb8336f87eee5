package server

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/pushgate/pushgate/graph/model"
)

// readSendJSON is the encoding/json reading of a send body, the one the
// scanner must agree with.
func readSendJSON(raw []byte) (query, operation, variable string, in model.SendInput, ok bool) {
	var body sendBody
	if json.Unmarshal(raw, &body) != nil || len(body.Extensions) > 0 || len(body.Variables) != 1 {
		return "", "", "", in, false
	}
	for name := range body.Variables {
		variable = name
	}
	in, ok = sendInputOf(body.Variables[variable])
	return body.Query, body.OperationName, variable, in, ok
}

func inputString(in model.SendInput) string {
	opt := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return fmt.Sprintf("%q", *p)
	}
	return fmt.Sprintf("channel %q data %s event %s key %s", in.Channel, in.Data, opt(in.Event), opt(in.IdempotencyKey))
}

// agree checks the scanner against encoding/json on raw: when the scanner
// is sure, it reads what encoding/json reads; it reports whether it was.
func agree(t *testing.T, raw []byte) bool {
	t.Helper()
	q, op, v, in, ok := scanSend(raw)
	if !ok {
		return false
	}
	q2, op2, v2, in2, ok2 := readSendJSON(raw)
	if !ok2 || q != q2 || op != op2 || v != v2 || inputString(in) != inputString(in2) {
		t.Fatalf("body %s\nscanned:  %q %q %q %s\njson:     %q %q %q %s (ok %v)", raw, q, op, v, inputString(in), q2, op2, v2, inputString(in2), ok2)
	}
	return true
}

const sendQ = `mutation($in: SendInput!) { send(input: $in) { message { id cursor } } }`

func TestScanSendAgrees(t *testing.T) {
	body := func(input string) string {
		return `{"query":` + quoteJSON(sendQ) + `,"variables":{"in":` + input + `}}`
	}
	sure := map[string]string{
		"plain":              body(`{"channel":"news","data":{"b":1,"a":[true,false,null,"x",-1.5e3]}}`),
		"spaces, key order":  " {\n \"variables\" : { \"in\" : { \"data\" : { \"z\" : { } , \"y\" : [ ] } , \"channel\" : \"c\" } } ,\t\"query\" : " + quoteJSON(sendQ) + " , \"operationName\" : null } ",
		"escaped query":      `{"query":"mutation($in: SendInput!) {\n send(input: $in) { message { id } }\n}","variables":{"in":{"channel":"c","data":1}}}`,
		"operation name":     `{"query":` + quoteJSON(sendQ) + `,"operationName":"Send","variables":{"in":{"channel":"c","data":"s"}}}`,
		"event and key":      body(`{"channel":"c","data":0,"event":"order.paid","idempotencyKey":"k-1"}`),
		"null event and key": body(`{"channel":"c","data":0,"event":null,"idempotencyKey":null}`),
		"escaped channel":    body(`{"channel":"user:\u0061","data":-0}`),
		"unicode":            body(`{"channel":"c","data":{"名前":"値","e":"é"}}`),
		"numbers":            body(`{"channel":"c","data":[0,-0,1.0,1e400,2E-3,12345678901234567890]}`),
		"nested":             body(`{"channel":"c","data":{"b":{"d":1,"c":[{"y":1,"x":2}]},"a":{}}}`),
	}
	for name, b := range sure {
		if !agree(t, []byte(b)) {
			t.Errorf("%s: the scanner was not sure of %s", name, b)
		}
	}
	unsure := map[string]string{
		"extensions":            `{"query":` + quoteJSON(sendQ) + `,"variables":{"in":{"channel":"c","data":1}},"extensions":{}}`,
		"unknown key":           `{"query":` + quoteJSON(sendQ) + `,"variables":{"in":{"channel":"c","data":1}},"x":1}`,
		"key in other case":     `{"Query":` + quoteJSON(sendQ) + `,"variables":{"in":{"channel":"c","data":1}}}`,
		"duplicate query":       `{"query":"x","query":` + quoteJSON(sendQ) + `,"variables":{"in":{"channel":"c","data":1}}}`,
		"two variables":         `{"query":` + quoteJSON(sendQ) + `,"variables":{"in":{"channel":"c","data":1},"x":1}}`,
		"variables null":        `{"query":` + quoteJSON(sendQ) + `,"variables":null}`,
		"query null":            `{"query":null,"variables":{"in":{"channel":"c","data":1}}}`,
		"no data":               body(`{"channel":"c"}`),
		"data null":             body(`{"channel":"c","data":null}`),
		"duplicate data key":    body(`{"channel":"c","data":{"a":1,"a":2}}`),
		"duplicate input field": body(`{"channel":"c","channel":"d","data":1}`),
		"escape in data":        body(`{"channel":"c","data":"a\nb"}`),
		"escape in a key":       body(`{"channel":"c","data":{"\u0061":1}}`),
		"U+2028 in data":        body("{\"channel\":\"c\",\"data\":\"a\u2028b\"}"),
		"invalid UTF-8 in data": body("{\"channel\":\"c\",\"data\":\"a\xffb\"}"),
		"channel a number":      body(`{"channel":1,"data":1}`),
		"event a number":        body(`{"channel":"c","data":1,"event":2}`),
		"unknown input field":   body(`{"channel":"c","data":1,"ttl":5}`),
		"leading zero":          body(`{"channel":"c","data":01}`),
		"literal run on":        body(`{"channel":"c","data":nullx}`),
		"truncated":             body(`{"channel":"c","data":[1,2`),
		"trailing garbage":      body(`{"channel":"c","data":1}`) + "x",
		"deep":                  body(`{"channel":"c","data":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`),
		"bad number":            body(`{"channel":"c","data":1.}`),
		"not an object":         `[]`,
		"control character":     body("{\"channel\":\"c\x01\",\"data\":1}"),
	}
	for name, b := range unsure {
		if agree(t, []byte(b)) {
			t.Errorf("%s: the scanner was sure of %s", name, b)
		}
	}
}

func quoteJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestScanSendAgreesRandom: random data values, formatted at random; the
// scanner agrees with encoding/json whenever it is sure, and is sure of
// most of them.
func TestScanSendAgreesRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	sp := func() string { return []string{"", "", " ", "\n\t", "  "}[r.IntN(5)] }
	strs := []string{"", "a", "é", "名前", "x y", `a\"b`, `\u00e9`, "\u2028", `\n`, "<&>"}
	var value func(depth int) string
	value = func(depth int) string {
		switch k := r.IntN(9); {
		case k == 0 && depth < 6:
			n := r.IntN(5)
			parts := make([]string, n)
			for i := range parts {
				key := strs[r.IntN(len(strs))]
				if r.IntN(3) > 0 {
					key = fmt.Sprintf("k%d", r.IntN(8))
				}
				parts[i] = sp() + `"` + key + `"` + sp() + ":" + sp() + value(depth+1) + sp()
			}
			return "{" + strings.Join(parts, ",") + sp() + "}"
		case k == 1 && depth < 6:
			n := r.IntN(5)
			parts := make([]string, n)
			for i := range parts {
				parts[i] = sp() + value(depth+1) + sp()
			}
			return "[" + strings.Join(parts, ",") + sp() + "]"
		case k == 2:
			return `"` + strs[r.IntN(len(strs))] + `"`
		case k == 3:
			return []string{"true", "false", "null"}[r.IntN(3)]
		default:
			return []string{"0", "-0", "1", "-17", "3.25", "1e9", "2E-3", "-1.5e+10", "123456789012345678901234567890"}[r.IntN(9)]
		}
	}
	sure := 0
	const n = 5000
	for range n {
		data := value(0)
		fields := []string{`"channel":"c"`, `"data":` + sp() + data}
		if r.IntN(2) == 0 {
			fields = append(fields, `"event":`+[]string{"null", `"e"`}[r.IntN(2)])
		}
		r.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
		raw := `{` + sp() + `"query":` + quoteJSON(sendQ) + `,` + sp() + `"variables":{"in":{` + strings.Join(fields, ","+sp()) + `}}` + sp() + `}`
		if agree(t, []byte(raw)) {
			sure++
		}
	}
	if sure < n/3 {
		t.Fatalf("the scanner was sure of %d of %d bodies", sure, n)
	}
	t.Logf("sure of %d of %d", sure, n)
}

// FuzzScanSend: go test -fuzz=FuzzScanSend ./server. Where the scanner
// is sure of a body it reads what encoding/json reads (agree); and whether
// it is sure or leaves the body to encoding/json, every body the fast path
// then takes is answered exactly as gqlgen answers it, and appends the same
// (sendPaths). The committed corpus is in testdata/fuzz/FuzzScanSend.
func FuzzScanSend(f *testing.F) {
	f.Add([]byte(`{"query":"q","variables":{"in":{"channel":"c","data":{"b":[1,{"y":2,"x":null}],"a":"s"}}}}`))
	f.Add([]byte(`{"query":"q","operationName":null,"variables":{"in":{"channel":"c","data":1,"event":"e"}}}`))
	f.Add([]byte(`{"query":` + quoteJSON(sendQ) + `,"variables":{"in":{"channel":"c","data":{"b":1,"a":[true,null]}}}}`))
	paths := newSendPaths(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		agree(t, raw)
		paths.check(t, raw)
	})
}

func BenchmarkSendBodyRead(b *testing.B) {
	raw := []byte(`{"query":` + quoteJSON(sendQ) + `,"variables":{"in":{"channel":"bench:shared","data":{"r":"run1","w":0,"s":42,"t":1764150000000000000,"p":"` + strings.Repeat("x", 40) + `"}}}}`)
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, _, _, ok := scanSend(raw); !ok {
				b.Fatal("not sure")
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, _, _, ok := readSendJSON(raw); !ok {
				b.Fatal("not read")
			}
		}
	})
}
