package graph

import (
	"context"
	"errors"
	"fmt"
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
