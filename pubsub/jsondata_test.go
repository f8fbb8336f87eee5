package pubsub

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// dataCases are data as backends send it, and ways it can be wrong.
var dataCases = []string{
	`{}`, `[]`, `0`, `-0`, `1.5e+10`, `-12.25E-3`, `"x"`, `true`, `false`, `null`,
	`{"a":1,"b":[true,false,null],"c":{"d":"e\"\\\/\b\f\n\r\t\u00e9"}}`,
	`{"type":"order.updated","id":"a1b2c3d4","status":"shipped","items":3,"total":12999}`,
	" {\"a\" : [ 1 , 2 ] }\n", "\t0", "0 ", `{"a": "b c"}`, `"  "`, `[1, 2]`,
	"\"\xff\xfe invalid UTF-8 is kept as json.Valid keeps it\"",
	``, ` `, `{`, `}`, `[`, `]`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`, `{1:2}`,
	`01`, `-`, `1.`, `.5`, `1e`, `1e+`, `+1`, `0x10`, `NaN`, `Infinity`, `tru`, `nul`, `truex`,
	`"abc`, `"\x"`, `"\u12"`, `"\u12G4"`, "\"\x01\"", "\"a\nb\"", `1 2`, `{}{}`, `[]]`, `"a"b`,
	`{"a":1}}`, `[[[]]`, `'a'`,
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
}

// TestCompactDataAgrees: compactData accepts what json.Valid accepts and
// returns what json.Compact writes, in memory of its own.
func TestCompactDataAgrees(t *testing.T) {
	for _, c := range dataCases {
		checkCompactData(t, []byte(c))
	}
}

func FuzzCompactData(f *testing.F) {
	for _, c := range dataCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkCompactData(t, data) })
}

func checkCompactData(t *testing.T, data []byte) {
	t.Helper()
	in := bytes.Clone(data)
	got, err := compactData(data)
	if !bytes.Equal(data, in) {
		t.Fatalf("%.60q: compactData changed its input", in)
	}
	valid := json.Valid(in)
	if (err == nil) != valid {
		t.Fatalf("%.60q: compactData error %v, json.Valid %v", in, err, valid)
	}
	if !valid {
		if err != ErrInvalidData {
			t.Fatalf("%.60q: error %v, want ErrInvalidData", in, err)
		}
		return
	}
	var want bytes.Buffer
	if err := json.Compact(&want, in); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("%.60q: compactData %.60q, json.Compact %.60q", in, got, want.Bytes())
	}
	if len(got) > 0 && len(data) > 0 && &got[0] == &data[0] {
		t.Fatalf("%.60q: the result shares the input's memory", in)
	}
}

var benchData = []byte(`{"type":"order.updated","id":"a1b2c3d4","status":"shipped","items":3,"total":12999,"note":"your order is on its way"}`)

// BenchmarkCompactData: the check and copy of compact data, as Publish
// does it, against json.Compact, as it did before.
func BenchmarkCompactData(b *testing.B) {
	b.Run("compactData", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(benchData)))
		for b.Loop() {
			if _, err := compactData(benchData); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Compact", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(benchData)))
		for b.Loop() {
			var buf bytes.Buffer
			buf.Grow(len(benchData))
			if err := json.Compact(&buf, benchData); err != nil {
				b.Fatal(err)
			}
		}
	})
}
