package delivery

import (
	"net/http"
	"strings"
)

// Kind is what a request asks for: a plain response, or a stream.
type Kind uint8

const (
	// Request: a plain request, answered and done.
	Request Kind = iota
	// Upgrade: the request asks to switch protocols (any Upgrade header:
	// a WebSocket).
	Upgrade
	// EventStream: the request accepts text/event-stream (SSE, graphql-sse).
	EventStream
)

// KindOf tells what r asks for. It is the one place that decides whether a
// request is a stream: routing to a transport, admission by the limits,
// the shutdown's draining and the request metrics all ask it.
func KindOf(r *http.Request) Kind {
	switch {
	case r.Header.Get("Upgrade") != "":
		return Upgrade
	case strings.Contains(r.Header.Get("Accept"), "text/event-stream"):
		return EventStream
	}
	return Request
}
