// Package model holds the GraphQL types: generated ones (models_gen.go) and
// the JSON and Time scalars.
package model

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/99designs/gqlgen/graphql"
)

// MarshalJSONContext writes a JSON scalar: the raw bytes, unchanged. The
// first one rendered in a context of WithResponseSize first makes room for
// the response's expected size in the buffer it is written to.
func MarshalJSONContext(v json.RawMessage) graphql.ContextMarshaler {
	return graphql.ContextWriterFunc(func(ctx context.Context, w io.Writer) error {
		if size, ok := ctx.Value(responseSizeKey{}).(func() int); ok {
			if b, ok := w.(interface{ Grow(int) }); ok {
				if n := size(); n > 0 {
					b.Grow(n)
				}
			}
		}
		if len(v) == 0 {
			_, _ = io.WriteString(w, "null")
			return nil
		}
		_, _ = w.Write(v)
		return nil
	})
}

type responseSizeKey struct{}

// WithResponseSize returns ctx in which the JSON scalar, rendered into a
// buffer that can grow (gqlgen renders an operation's whole response into
// one bytes.Buffer), first makes room for size() more bytes; size returns 0
// when there is nothing (more) to make room for. A buffer that doubles as
// it fills allocates about twice what it ends up holding (32 MB for a
// 15 MB history page); one made room for at once allocates what the
// response takes.
func WithResponseSize(ctx context.Context, size func() int) context.Context {
	return context.WithValue(ctx, responseSizeKey{}, size)
}

// UnmarshalJSONContext is UnmarshalJSON, as gqlgen calls it beside
// MarshalJSONContext.
func UnmarshalJSONContext(_ context.Context, v any) (json.RawMessage, error) {
	return UnmarshalJSON(v)
}

// UnmarshalJSON reads a JSON scalar: any JSON value, from variables (already
// decoded, numbers as json.Number) or from an inline literal.
func UnmarshalJSON(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("data is not a JSON value: %w", err)
	}
	return json.RawMessage(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}

// TimeFormat is how Time is written: RFC 3339 in UTC with milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// MarshalTime writes a Time scalar.
func MarshalTime(t time.Time) graphql.Marshaler {
	return graphql.WriterFunc(func(w io.Writer) {
		b := make([]byte, 0, len(TimeFormat)+2)
		b = append(b, '"')
		b = t.UTC().AppendFormat(b, TimeFormat)
		b = append(b, '"')
		_, _ = w.Write(b)
	})
}

// UnmarshalTime reads a Time scalar: any RFC 3339 string.
func UnmarshalTime(v any) (time.Time, error) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, errors.New("time must be an RFC 3339 string")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time must be RFC 3339: %w", err)
	}
	return t, nil
}
