package graph

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/rs/zerolog"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/pushgate/pushgate/pubsub"
)

// Error codes: every GraphQL error carries one as extensions.code, and the
// plain HTTP endpoints answer with the same codes. They are part of the API.
const (
	CodeBadUserInput    = "BAD_USER_INPUT"
	CodeUnauthenticated = "UNAUTHENTICATED"
	CodeForbidden       = "FORBIDDEN"
	CodePayloadTooLarge = "PAYLOAD_TOO_LARGE"
	// CodeRateLimited: over a rate or connection limit; retrying later
	// (extensions.retryAfter seconds, or HTTP Retry-After) can succeed.
	CodeRateLimited = "RATE_LIMITED"
	CodeUnavailable = "UNAVAILABLE"
	CodeInternal    = "INTERNAL"
)

// Error is an error a client sees: a stable code and a message for a human.
// Err, when set, is the cause; it is logged, never shown.
type Error struct {
	Code    string
	Message string
	Err     error
	// Stored, when set, is extensions.stored: "unknown" on an
	// UNAVAILABLE send whose message may have been stored.
	Stored string
}

func (e *Error) Error() string { return e.Message }

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func badInput(format string, args ...any) *Error {
	return Errorf(CodeBadUserInput, format, args...)
}

// Classify turns any error into the *Error a client sees: an *Error in the
// chain is kept, pubsub errors are mapped with errors.Is, and anything else
// is INTERNAL without details.
func Classify(err error) *Error {
	if err == nil {
		return nil
	}
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	if e, ok := classifyWeChat(err); ok {
		return e
	}
	switch {
	case errors.Is(err, pubsub.ErrInvalidChannel),
		errors.Is(err, pubsub.ErrInvalidEvent),
		errors.Is(err, pubsub.ErrInvalidData),
		errors.Is(err, pubsub.ErrInvalidIdempotencyKey),
		errors.Is(err, pubsub.ErrInvalidCursor),
		errors.Is(err, pubsub.ErrTooManyChannels),
		errors.Is(err, pubsub.ErrInvalidLimit):
		return &Error{Code: CodeBadUserInput, Message: err.Error(), Err: err}
	case errors.Is(err, pubsub.ErrTooLarge):
		return &Error{Code: CodeResponseTooLarge, Message: err.Error(), Err: err}
	case errors.Is(err, pubsub.ErrEpochMismatch):
		return &Error{Code: CodeBadUserInput, Message: "the channel's history was reset since this cursor was issued: " +
			"page again without a cursor", Err: err}
	case errors.Is(err, pubsub.ErrOutcomeUnknown):
		return &Error{Code: CodeUnavailable, Stored: "unknown", Err: err,
			Message: "the message store did not answer in time: the message may have been stored and delivered; " +
				"retry with the same idempotencyKey, which returns the stored message if it was"}
	case errors.Is(err, pubsub.ErrUnavailable),
		errors.Is(err, pubsub.ErrClosed),
		errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeUnavailable, Message: "the message store is unavailable; retry later", Err: err}
	case errors.Is(err, context.Canceled):
		return &Error{Code: CodeUnavailable, Message: "the request was cancelled", Err: err}
	}
	return &Error{Code: CodeInternal, Message: "internal error", Err: err}
}

// ErrorPresenter gives every GraphQL error an extensions.code. Resolvers
// return errors through Classify, so an error without an *Error inside comes
// from gqlgen itself: argument coercion (a bad JSON or Time literal, for
// instance), hence BAD_USER_INPUT. A document that does not parse or
// validate keeps gqlgen's GRAPHQL_PARSE_FAILED or GRAPHQL_VALIDATION_FAILED,
// except that a variable with a bad value is BAD_USER_INPUT, as in Apollo
// Server: the document is right, the input is not.
func ErrorPresenter(ctx context.Context, err error) *gqlerror.Error {
	gqlErr := graphql.DefaultErrorPresenter(ctx, err)
	if code, ok := gqlErr.Extensions["code"]; ok {
		if code == errcode.ValidationFailed && len(gqlErr.Path) > 0 && gqlErr.Path[0] == ast.PathName("variable") {
			gqlErr.Extensions["code"] = CodeBadUserInput
		}
		return gqlErr
	}
	e, ok := errors.AsType[*Error](err)
	if !ok {
		e = &Error{Code: CodeBadUserInput, Message: gqlErr.Message}
	}
	if e.Code == CodeInternal || e.Code == CodeUnavailable {
		zerolog.Ctx(ctx).Error().Err(e.Err).Str("code", e.Code).Str("path", gqlErr.Path.String()).Msg("graphql error")
	}
	out := *gqlErr
	out.Message = e.Message
	out.Extensions = map[string]any{"code": e.Code}
	if e.Stored != "" {
		out.Extensions["stored"] = e.Stored
	}
	for k, v := range gqlErr.Extensions {
		out.Extensions[k] = v
	}
	return &out
}

// Recover turns a resolver panic into an INTERNAL error, logged with its
// stack.
func Recover(ctx context.Context, v any) error {
	zerolog.Ctx(ctx).Error().Interface("panic", v).Str("stack", string(debug.Stack())).Msg("graphql resolver panicked")
	return &Error{Code: CodeInternal, Message: "internal error", Err: fmt.Errorf("panic: %v", v)}
}
