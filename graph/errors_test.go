package graph

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/pushgate/pushgate/pubsub"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		code string
	}{
		{fmt.Errorf("wrap: %w", pubsub.ErrInvalidChannel), CodeBadUserInput},
		{pubsub.ErrInvalidEvent, CodeBadUserInput},
		{pubsub.ErrInvalidData, CodeBadUserInput},
		{pubsub.ErrInvalidIdempotencyKey, CodeBadUserInput},
		{pubsub.ErrInvalidCursor, CodeBadUserInput},
		{pubsub.ErrTooManyChannels, CodeBadUserInput},
		{pubsub.ErrInvalidLimit, CodeBadUserInput},
		{fmt.Errorf("x: %w", pubsub.ErrEpochMismatch), CodeBadUserInput},
		{fmt.Errorf("redis: %w", pubsub.ErrUnavailable), CodeUnavailable},
		{pubsub.ErrClosed, CodeUnavailable},
		{context.DeadlineExceeded, CodeUnavailable},
		{Errorf(CodeForbidden, "no"), CodeForbidden},
		{fmt.Errorf("wrapped: %w", Errorf(CodePayloadTooLarge, "big")), CodePayloadTooLarge},
		{errors.New("boom"), CodeInternal},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got.Code != tt.code || got.Message == "" {
			t.Errorf("Classify(%v) = %+v, want code %s", tt.err, got, tt.code)
		}
	}
	if m := Classify(errors.New("secret detail")).Message; m != "internal error" {
		t.Errorf("internal errors must not leak details: %q", m)
	}
	if m := Classify(pubsub.ErrEpochMismatch).Message; m == pubsub.ErrEpochMismatch.Error() {
		t.Errorf("epoch mismatch message should say the history was reset: %q", m)
	}
}

func TestErrorPresenter(t *testing.T) {
	ctx := graphql.WithResponseContext(context.Background(), graphql.DefaultErrorPresenter, nil)
	tests := []struct {
		name string
		err  error
		code string
	}{
		{"resolver error", Errorf(CodeForbidden, "nope"), CodeForbidden},
		{"argument coercion", gqlerror.Errorf("cannot unmarshal"), CodeBadUserInput},
		{"validation", &gqlerror.Error{Message: "bad doc", Extensions: map[string]any{"code": "GRAPHQL_VALIDATION_FAILED"}}, "GRAPHQL_VALIDATION_FAILED"},
		{"variable value", &gqlerror.Error{Message: "cannot be null", Path: ast.Path{ast.PathName("variable"), ast.PathName("d")},
			Extensions: map[string]any{"code": "GRAPHQL_VALIDATION_FAILED"}}, CodeBadUserInput},
		{"internal", Classify(errors.New("boom")), CodeInternal},
	}
	for _, tt := range tests {
		got := ErrorPresenter(ctx, tt.err)
		if got.Extensions["code"] != tt.code {
			t.Errorf("%s: code %v, want %s", tt.name, got.Extensions["code"], tt.code)
		}
	}
}

// TestNumberRangeMessage: gqlparser's messages for a number out of range
// are rewritten to say so; others are kept.
func TestNumberRangeMessage(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string // "": kept
	}{
		{`Expected value of type "SendInput!", found {channel:"news",data:99999999999999999999}.`,
			"99999999999999999999 for SendInput!: a number written in the query must fit a 64-bit integer"},
		{`Expected value of type "SendInput!", found {channel:"news",data:{b:1.5e400,a:2}}.`, "1.5e400 for SendInput!"},
		{`Expected value of type "SendInput!", found {channel:"n99999999999999999999",data:{field99999999999999999999:1}}.`, ""},
		{`Expected value of type "SendInput!", found {channel:"news",data:-99999999999999999999}.`, "-99999999999999999999 for"},
		{`Expected value of type "SendInput!", found {channel:"news",data:{a:9223372036854775807}}.`, ""},
		{`Expected value of type "String!", found null.`, ""},
		{"cannot use value 9223372036854775807 as Int", "the number is out of range for Int (a 32-bit signed integer"},
		{"cannot use value -9223372036854775808 as Int", "the number is out of range for Int"},
		{"cannot use value 0 as Int", "the number is not an integer"},
		{"cannot use value +Inf as Float", "the number is out of range for Float"},
		{"cannot use value 3 as String", ""},
		{"cannot use string as Int", ""},
	} {
		got, ok := numberRangeMessage(tt.in)
		if ok != (tt.want != "") || !strings.Contains(got, tt.want) {
			t.Errorf("numberRangeMessage(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
}
