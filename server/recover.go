package server

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/graph"
)

// A request or a connection never takes the process down: every goroutine
// that runs for one client (a handler, a WebSocket's read loop, message and
// operation goroutines, its keep-alive, a stream's writes, an SSE stream's
// watcher) recovers a panic, logs it with its stack and ends that client
// alone. Goroutines shared by many clients (the stream writers) recover
// inside each client's turn, so that one stream's panic ends that stream.

// recoverClient, deferred directly by a goroutine that serves one client,
// recovers a panic: it logs it, with the stack, on ctx's logger and calls
// end (nil: nothing), which ends that client only.
func recoverClient(ctx context.Context, where string, end func()) {
	v := recover()
	if v == nil {
		return
	}
	logPanic(ctx, where, v)
	if end != nil {
		end()
	}
}

// logPanic logs a recovered panic with its stack.
func logPanic(ctx context.Context, where string, v any) {
	zerolog.Ctx(ctx).Error().Str("where", where).Str("panic", fmt.Sprint(v)).Str("stack", string(debug.Stack())).
		Msg("recovered a panic: the client is disconnected, the server goes on")
}

// recoverRequest ends a request whose handler panicked: 500 INTERNAL when
// nothing was written yet, else the connection is dropped (as net/http does
// for http.ErrAbortHandler, which is passed on). Unlike net/http's own
// recovery it logs through the request's logger, with the request's id.
func recoverRequest(ctx context.Context, w *requestWriter) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler { //nolint:errorlint // net/http compares it so
		panic(v)
	}
	logPanic(ctx, "http handler", v)
	if w.ResponseWriter == nil || w.status != 0 {
		panic(http.ErrAbortHandler)
	}
	writeError(w, http.StatusInternalServerError, graph.CodeInternal, "internal error")
}

// closeInternalError ends a WebSocket connection whose goroutine panicked:
// 1011, the server met a condition that kept it from serving the client.
func (c *wsConn) closeInternalError() {
	c.close(websocket.StatusInternalError, "internal error")
}
