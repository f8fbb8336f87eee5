package graph

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"

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
		if code == errcode.ValidationFailed {
			if m, ok := numberRangeMessage(gqlErr.Message); ok {
				gqlErr.Message = m
			}
			if len(gqlErr.Path) > 0 && gqlErr.Path[0] == ast.PathName("variable") {
				gqlErr.Extensions["code"] = CodeBadUserInput
			}
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

// numberRangeMessage rewrites gqlparser's validation messages about a
// number out of range, which do not say so: a literal in the query that
// does not fit 64 bits (an integer) or a float64, anywhere in an input
// object, is reported as "Expected value of type "SendInput!", found
// {...}"; a variable's Int beyond 64 bits as "cannot use value
// 9223372036854775807 as Int", a value the client never sent, and one
// with a fraction as "cannot use value 0 as Int". ok is false
// for any other message, which is kept.
func numberRangeMessage(msg string) (string, bool) {
	if rest, ok := strings.CutPrefix(msg, "cannot use value "); ok {
		// What gqlparser could read of the number: the int64 bound
		// it was clamped to, 0 when it is not an integer, ±Inf.
		value, typ, _ := strings.Cut(rest, " as ")
		switch {
		case typ == "Int" && value == "0":
			return "the number is not an integer, as Int requires", true
		case typ == "Int" || typ == "Float":
			return "the number is out of range for " + typ + rangeOf[typ], true
		}
		return "", false
	}
	typ, found, ok := strings.Cut(strings.TrimPrefix(msg, `Expected value of type "`), `", found `)
	if !ok || len(typ) == len(msg) {
		return "", false
	}
	for _, n := range numberLiterals(found) {
		if bigLiteral(n) {
			return fmt.Sprintf("%s for %s: a number written in the query must fit a 64-bit integer, or a float64 "+
				"when it has a fraction or an exponent; pass it in variables instead, where a JSON value keeps "+
				"any number as written", n, typ), true
		}
	}
	return "", false
}

var rangeOf = map[string]string{
	"Int":   " (a 32-bit signed integer, -2147483648 to 2147483647)",
	"Float": " (a float64)",
}

// numberLiterals returns the numbers in a GraphQL value as gqlparser
// prints it, skipping quoted strings.
func numberLiterals(v string) []string {
	var out []string
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"':
			for i++; i < len(v) && v[i] != '"'; i++ {
				if v[i] == '\\' {
					i++
				}
			}
		case c == '-' || c >= '0' && c <= '9':
			if i > 0 && (isNameByte(v[i-1])) {
				continue // a digit inside a name: field1
			}
			j := i + 1
			for j < len(v) && (v[j] >= '0' && v[j] <= '9' || strings.IndexByte(".eE+-", v[j]) >= 0) {
				j++
			}
			out = append(out, v[i:j])
			i = j - 1
		}
	}
	return out
}

func isNameByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// bigLiteral reports whether n, a GraphQL number literal, is out of the
// range its kind is read into (int64, or float64 with a fraction or
// exponent).
func bigLiteral(n string) bool {
	if !strings.ContainsAny(n, ".eE") {
		_, err := strconv.ParseInt(n, 10, 64)
		return errors.Is(err, strconv.ErrRange)
	}
	_, err := strconv.ParseFloat(n, 64)
	return errors.Is(err, strconv.ErrRange)
}
