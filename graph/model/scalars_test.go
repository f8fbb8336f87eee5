package model

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

func TestTime(t *testing.T) {
	var buf bytes.Buffer
	at := time.Date(2024, 5, 1, 14, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	MarshalTime(at).MarshalGQL(&buf)
	if got := buf.String(); got != `"2024-05-01T12:00:00.000Z"` {
		t.Fatalf("MarshalTime = %s", got)
	}
	back, err := UnmarshalTime("2024-05-01T12:00:00.000Z")
	if err != nil || !back.Equal(at) {
		t.Fatalf("UnmarshalTime = %v, %v", back, err)
	}
	if _, err := UnmarshalTime(5); err == nil {
		t.Fatal("a number is not a Time")
	}
}

func TestJSON(t *testing.T) {
	for _, tt := range []struct {
		in   any
		want string
	}{
		{map[string]any{"b": 1, "a": []any{"<x>", nil, true}}, `{"a":["<x>",null,true],"b":1}`},
		{json.Number("12345678901234567890.5"), `12345678901234567890.5`},
		{"text", `"text"`},
		{int64(3), `3`},
	} {
		got, err := UnmarshalJSON(tt.in)
		if err != nil || string(got) != tt.want {
			t.Errorf("UnmarshalJSON(%v) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
		var buf bytes.Buffer
		_ = MarshalJSONContext(got).MarshalGQLContext(context.Background(), &buf)
		if buf.String() != tt.want {
			t.Errorf("MarshalJSONContext wrote %s", buf.String())
		}
	}
}

// TestJSONResponseSize: in a context of WithResponseSize, the JSON scalar
// makes room in the buffer it writes to for what size returns, and writes
// the same bytes.
func TestJSONResponseSize(t *testing.T) {
	calls := 0
	ctx := WithResponseSize(context.Background(), func() int {
		calls++
		if calls > 1 {
			return 0 // once
		}
		return 1 << 20
	})
	var buf bytes.Buffer
	for _, v := range []string{`{"a":1}`, `"<b>"`} {
		if err := MarshalJSONContext(json.RawMessage(v)).MarshalGQLContext(ctx, &buf); err != nil {
			t.Fatal(err)
		}
	}
	if buf.String() != `{"a":1}"<b>"` || buf.Cap() < 1<<20 || calls != 2 {
		t.Fatalf("wrote %q into a buffer of %d bytes, size called %d times", buf.String(), buf.Cap(), calls)
	}
	// A writer that cannot grow is written to all the same.
	var sb strings.Builder
	if err := MarshalJSONContext(nil).MarshalGQLContext(ctx, struct{ io.Writer }{&sb}); err != nil || sb.String() != "null" {
		t.Fatalf("wrote %q, %v", sb.String(), err)
	}
}
