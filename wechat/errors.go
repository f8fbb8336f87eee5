package wechat

import (
	"errors"
	"fmt"
)

// Error codes, the values of pushgate's extensions.code (graph.Code*): an
// *Error carries one, so the server maps it without knowing WeChat.
const (
	CodeBadUserInput = "BAD_USER_INPUT"
	CodeForbidden    = "FORBIDDEN"
	CodeRateLimited  = "RATE_LIMITED"
	CodeUnavailable  = "UNAVAILABLE"
	CodeInternal     = "INTERNAL"
)

// WeChat errcodes this package acts on. WeChat answers HTTP 200 with the
// errcode in the body; 0 (or no errcode) is success.
const (
	ErrcodeSystemBusy        = -1    // 系统繁忙: retry later
	ErrcodeInvalidCredential = 40001 // access_token invalid or not the latest
	ErrcodeInvalidOpenID     = 40003 // touser is empty or not an openid of the app
	ErrcodeInvalidAppID      = 40013
	ErrcodeInvalidToken      = 40014 // invalid access_token
	ErrcodeInvalidCode       = 40029 // js_code invalid (or expired)
	ErrcodeInvalidTemplate   = 40037 // template_id invalid
	ErrcodeInvalidSecret     = 40125
	ErrcodeCodeUsed          = 40163 // js_code already used
	ErrcodeBlockedUser       = 40226 // high-risk user, login blocked
	ErrcodeInvalidPage       = 41030 // page is not a page of the released app
	ErrcodeTokenExpired      = 42001 // access_token expired
	ErrcodeRefused           = 43101 // the user refused (or has no quota for) the template
	ErrcodeDailyQuota        = 45009 // reach max api daily quota limit
	ErrcodeMinuteQuota       = 45011 // api minute-quota reach limit
	ErrcodeInvalidArgument   = 47003 // template data invalid; errmsg names the field
)

// Error is an error a pushgate client may see: Code is pushgate's error
// code, Message a sentence that names the WeChat errcode when WeChat gave
// one. Message, Errmsg and Error() never contain a secret (app secret,
// access token, AES key, session_key). Err is the cause, for logs.
type Error struct {
	Code    string
	Message string
	// API is the WeChat API that answered ("jscode2session",
	// "stable_token", "subscribe_send"), or "".
	API string
	// Errcode and Errmsg are WeChat's answer, when it gave one.
	Errcode int
	Errmsg  string
	Err     error
}

func (e *Error) Error() string { return e.Message }

func (e *Error) Unwrap() error { return e.Err }

func badInput(format string, args ...any) *Error {
	return &Error{Code: CodeBadUserInput, Message: fmt.Sprintf(format, args...)}
}

// ErrUnknownApp: the app id names no configured app (BAD_USER_INPUT).
var ErrUnknownApp = errors.New("wechat: unknown app")

// ErrClosed: the Service was closed.
var ErrClosed = errors.New("wechat: service closed")

// APIError is WeChat's answer to one API call that was not a success: an
// errcode in an HTTP 200 body, or an HTTP status other than 200. Transport
// failures are *TransportError.
type APIError struct {
	API     string
	Status  int // HTTP status
	Errcode int
	Errmsg  string
}

func (e *APIError) Error() string {
	if e.Status != 200 {
		return fmt.Sprintf("wechat %s: HTTP %d", e.API, e.Status)
	}
	return fmt.Sprintf("wechat %s: errcode %d (%s)", e.API, e.Errcode, e.Errmsg)
}

// TransportError is a call that got no complete answer. Sent tells whether
// the request had been written out in full when it failed: when false,
// WeChat cannot have acted on it (a refused connection, a failed dial) and
// a retry is safe; when true, WeChat may have acted on it and the outcome
// is unknown.
type TransportError struct {
	API  string
	Sent bool
	Err  error
}

func (e *TransportError) Error() string {
	if e.Sent {
		return fmt.Sprintf("wechat %s: no answer after the request was sent: %v", e.API, e.Err)
	}
	return fmt.Sprintf("wechat %s: request not sent: %v", e.API, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }
