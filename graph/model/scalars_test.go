package model

import (
	"bytes"
	"encoding/json"
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
		MarshalJSON(got).MarshalGQL(&buf)
		if buf.String() != tt.want {
			t.Errorf("MarshalJSON wrote %s", buf.String())
		}
	}
}
