package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// subscriber is one benchmark client: a WebSocket, SSE, graphql-sse or
// long-poll feed of its channels.
type subscriber struct {
	idx      int
	kind     string // "ws", "sse", "gsse" (graphql-sse) or "poll"
	channels []string
	token    string // "" for anonymous
	tr       *tracker

	connected  bool
	connectDur time.Duration
	connectErr error
	endErr     error // why the feed ended before the run stopped it
}

// subEnv is what every subscriber shares.
type subEnv struct {
	base        string // http://host:port
	wsURL       string // ws://host:port/graphql
	paths       []clientPath
	pollTimeout int // seconds the server may hold a poll
	loops       *feedLoops
}

// clientPath is one source address's clients: subscriber i connects
// through paths[i % len(paths)].
type clientPath struct {
	dial       func(ctx context.Context, network, addr string) (net.Conn, error)
	pollClient *http.Client
}

// exchange dials a connection of its own, writes req on it and reads the
// response, all within cctx's deadline (which stays set on the connection);
// a status other than want is an error of op (httpError). The connection
// closes when ctx is done, and with done.
func (p *clientPath) exchange(ctx, cctx context.Context, req *http.Request, op string, want int) (conn net.Conn, br *bufio.Reader, res *http.Response, done func(), err error) {
	conn, err = p.dial(cctx, "tcp", req.URL.Host)
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("%s dial: %w", op, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	done = func() { stop(); conn.Close() }
	if dl, ok := cctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if err := req.Write(conn); err != nil {
		done()
		return nil, nil, nil, nil, fmt.Errorf("%s request: %w", op, err)
	}
	br = bufio.NewReaderSize(conn, 4096)
	if res, err = http.ReadResponse(br, req); err != nil {
		done()
		return nil, nil, nil, nil, fmt.Errorf("%s response: %w", op, err)
	}
	if res.StatusCode != want {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		done()
		return nil, nil, nil, nil, httpError(op, res.StatusCode, body)
	}
	return conn, br, res, done, nil
}

func (e *subEnv) path(s *subscriber) *clientPath { return &e.paths[s.idx%len(e.paths)] }

// run connects, calls connected once the outcome is known (s.connected,
// s.connectErr), then reads until ctx is done or the feed fails.
func (s *subscriber) run(ctx context.Context, env *subEnv, connectTimeout time.Duration, connected func(*subscriber)) {
	start := time.Now()
	once := false
	done := func(err error) {
		if once {
			return
		}
		once = true
		s.connectDur = time.Since(start)
		s.connectErr = err
		s.connected = err == nil
		connected(s)
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var err error
	switch s.kind {
	case "ws":
		err = s.runWS(ctx, cctx, env, func() { done(nil) })
	case "sse":
		err = s.runSSE(ctx, cctx, env, func() { done(nil) })
	case "gsse":
		err = s.runGSSE(ctx, cctx, env, func() { done(nil) })
	case "poll":
		err = s.runPoll(ctx, cctx, env, func() { done(nil) })
	}
	if !once {
		if err == nil {
			err = errors.New("ended before connecting")
		}
		done(err)
		return
	}
	if err != nil && ctx.Err() == nil {
		s.endErr = err
	}
}

// bearer returns the Authorization header value of the token.
func (s *subscriber) bearer() string {
	if s.token == "" {
		return ""
	}
	return "Bearer " + s.token
}

// errorKind condenses an error into a short category for counting: the
// same failure on a thousand connections is one line of the report.
func errorKind(err error) string {
	if err == nil {
		return ""
	}
	var se *statusError
	switch {
	case errors.As(err, &se):
		if se.code != "" {
			return fmt.Sprintf("%s: %s", se.op, se.code)
		}
		return fmt.Sprintf("%s: http %d", se.op, se.status)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	msg := err.Error()
	for _, k := range []string{
		"connection refused", "connection reset", "broken pipe", "too many open files",
		"cannot assign requested address", "i/o timeout", "EOF", "refusing",
	} {
		if strings.Contains(msg, k) {
			return k
		}
	}
	if len(msg) > 80 {
		msg = msg[:80] + "..."
	}
	return msg
}

// errorKind is errorKind(err) naming the transport.
func (s *subscriber) errorKind(err error) string {
	k := errorKind(err)
	if !strings.HasPrefix(k, s.kind) {
		k = s.kind + " " + k
	}
	return k
}

// statusError is a refusal by the server: an HTTP status, and the error
// code from its body when there is one.
type statusError struct {
	op         string
	status     int
	code       string
	msg        string
	retryAfter time.Duration
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s: status %d %s %s", e.op, e.status, e.code, e.msg)
}

// httpError reads a pushgate error body {"error":{"code","message"}} (or a
// GraphQL one) into a statusError.
func httpError(op string, status int, body []byte) *statusError {
	e := &statusError{op: op, status: status}
	eachMember(body, func(key, value []byte) bool {
		switch string(key) {
		case "error":
			eachMember(value, func(key, value []byte) bool {
				switch string(key) {
				case "code":
					e.code = string(unquote(value))
				case "message":
					e.msg = string(unquote(value))
				}
				return true
			})
		case "errors":
			e.code = graphqlErrorCode(value)
		}
		return true
	})
	return e
}

// graphqlErrorCode returns extensions.code of the first error of a GraphQL
// errors array ("GRAPHQL_ERROR" when it has none).
func graphqlErrorCode(errs []byte) string {
	code := ""
	eachElement(errs, func(e []byte) bool {
		eachMember(e, func(key, value []byte) bool {
			if string(key) == "extensions" {
				eachMember(value, func(key, value []byte) bool {
					if string(key) == "code" {
						code = string(unquote(value))
					}
					return true
				})
			}
			return true
		})
		return false
	})
	if code == "" {
		code = "GRAPHQL_ERROR"
	}
	return code
}
