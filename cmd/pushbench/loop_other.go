//go:build !linux || pushbench_portable

package main

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Off Linux, each feed is read on a goroutine of its own through net.Conn
// and the runtime's poller: portable, at the cost that loop_linux.go
// avoids (a wake-up and an empty second read per delivery), so pushbench's
// own CPU per delivery here is not comparable with a Linux run's.
// `go test -tags pushbench_portable` runs this reader on Linux too.

// feedReadSize is the read buffer of one feed: small, because every
// connection holds its own (10,000 subscribers hold 40 MB), and a feed's
// parser takes frames split across reads.
const feedReadSize = 4 << 10

// feedLoops tracks the feeds being read, so that close can wait for them.
type feedLoops struct {
	mu     sync.Mutex
	closed bool
	feeds  sync.WaitGroup
}

func (ls *feedLoops) serve(ctx context.Context, conn net.Conn, consume consumeFunc) error {
	ls.mu.Lock()
	if ls.closed {
		ls.mu.Unlock()
		_ = conn.Close()
		return errors.New("the feed loops are closed")
	}
	ls.feeds.Add(1)
	ls.mu.Unlock()
	defer ls.feeds.Done()
	defer conn.Close()
	// ctx's end wakes the read with a deadline in the past rather than a
	// Close, so a consumer writing to conn never writes to a closed one.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, feedReadSize)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if cerr := consume(buf[:n], time.Now(), conn); cerr != nil {
				return cerr
			}
		}
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, io.EOF):
			return io.EOF
		default:
			return err
		}
	}
}

// close returns once every feed has ended.
func (ls *feedLoops) close() {
	ls.mu.Lock()
	ls.closed = true
	ls.mu.Unlock()
	ls.feeds.Wait()
}
