package main

import (
	"io"
	"time"
)

// A subscriber's or a flooding sender's connection, once its handshake is
// done, is read by feedLoops until it ends. The contract, on every system:
// the zero feedLoops is ready to use; serve(ctx, conn, consume) feeds what
// conn reads to consume and returns consume's error, io.EOF at the peer's
// end, a read error, or nil once ctx is done, and conn is closed when it
// returns; close returns once every feed has ended, and serve fails after
// it. loop_linux.go reads with epoll loops, which cost pushbench less CPU
// per delivery; loop_other.go reads each connection on its own goroutine
// (elsewhere, and on Linux with -tags pushbench_portable).

// consumeFunc parses what was read from a feed's socket at now; w writes
// to the socket (a WebSocket pong). An error ends the feed.
type consumeFunc func(p []byte, now time.Time, w io.Writer) error
