//go:build !pushbench_portable

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// On Linux, live feeds are read by a few event loops (one per CPU), not by a
// goroutine each: a goroutine per connection costs a wake-up, a read and a
// second read that finds the socket empty for every delivery, and that CPU
// is taken from the server under test on the same machine. A loop waits on
// epoll for the sockets that have something, reads each once and hands the
// bytes to the feed's parser. 1,000 SSE subscribers at 100 msg/s: 9.7 ->
// 8.6 µs of pushbench's CPU per delivery (3 alternating runs); the server's
// figures did not move (7.5-7.7 µs either way). Most of what is left is
// the kernel's: the read, and the ACK it sends.

// feedLoops are the event loops of one run.
type feedLoops struct {
	once  sync.Once
	err   error
	loops []*feedLoop
	mu    sync.Mutex
	next  int
}

// feedLoop is one epoll instance and the feeds it reads.
type feedLoop struct {
	epfd  int
	mu    sync.Mutex
	feeds map[int32]*loopFeed
	quit  []*loopFeed // feeds whose subscriber stops, to end
	stop  bool        // set by close: the loop ends once it has no feeds
	ended chan struct{}
}

// loopFeed is one connection handed to a loop; the loop owns its socket
// (fd) from then on, reads and closes it.
type loopFeed struct {
	fd      int
	consume consumeFunc
	done    chan error // the feed's end, once
}

// loopPoll bounds how long a loop waits before it looks for feeds to stop.
const loopPoll = 50 * time.Millisecond

func (ls *feedLoops) start() error {
	ls.once.Do(func() {
		for range max(1, runtime.GOMAXPROCS(0)) {
			epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
			if err != nil {
				ls.err = fmt.Errorf("epoll: %w", err)
				return
			}
			l := &feedLoop{epfd: epfd, feeds: make(map[int32]*loopFeed), ended: make(chan struct{})}
			ls.loops = append(ls.loops, l)
			go l.run()
		}
	})
	return ls.err
}

// close ends the loops once their feeds have ended.
func (ls *feedLoops) close() {
	for _, l := range ls.loops {
		l.mu.Lock()
		l.stop = true
		l.mu.Unlock()
		<-l.ended
	}
}

// serve hands conn to a loop, which feeds what it reads to consume until
// consume fails, the socket ends (io.EOF) or ctx is done (nil). conn is
// closed when serve returns.
func (ls *feedLoops) serve(ctx context.Context, conn net.Conn, consume consumeFunc) error {
	if err := ls.start(); err != nil {
		return err
	}
	fd, err := ownFD(conn)
	if err != nil {
		return err
	}
	ls.mu.Lock()
	l := ls.loops[ls.next%len(ls.loops)]
	ls.next++
	ls.mu.Unlock()

	f := &loopFeed{fd: fd, consume: consume, done: make(chan error, 1)}
	l.mu.Lock()
	if l.stop {
		l.mu.Unlock()
		_ = syscall.Close(fd)
		return errors.New("the feed loops are closed")
	}
	l.feeds[int32(fd)] = f
	l.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.mu.Lock()
		delete(l.feeds, int32(fd))
		l.mu.Unlock()
		_ = syscall.Close(fd)
		return fmt.Errorf("epoll add: %w", err)
	}
	select {
	case err := <-f.done:
		return err
	case <-ctx.Done():
	}
	l.mu.Lock()
	l.quit = append(l.quit, f)
	l.mu.Unlock()
	return <-f.done
}

// ownFD takes conn's socket out of the runtime's poller: the descriptor is
// duplicated and conn closed, so that only the loop waits on it.
func ownFD(conn net.Conn) (int, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("%T has no descriptor", conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(f uintptr) { fd, derr = dupCloexec(int(f)) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	_ = conn.Close()
	return fd, nil
}

func dupCloexec(fd int) (int, error) {
	nfd, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(nfd), nil
}

func (l *feedLoop) run() {
	defer close(l.ended)
	// The loop waits for its epoll descriptor in the runtime's poller (it
	// is readable while it has events), never in a blocking epoll_wait: a
	// goroutine in a blocking system call keeps sysmon waking every 20 µs
	// to take its processor back, which cost pushbench 14% of its CPU in
	// the send scenario.
	ep, err := pollable(l.epfd)
	if err != nil {
		l.endAll(err)
		return
	}
	defer ep.Close()
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, 64<<10)
	for {
		n, err := l.wait(ep, events)
		if err != nil {
			l.endAll(err)
			return
		}
		now := time.Now()
		for _, ev := range events[:n] {
			l.mu.Lock()
			f := l.feeds[ev.Fd]
			l.mu.Unlock()
			if f == nil {
				continue
			}
			if err := f.read(buf, now); err != nil {
				l.end(f, err)
			}
		}
		l.mu.Lock()
		quit := l.quit
		l.quit = nil
		stop := l.stop
		l.mu.Unlock()
		for _, f := range quit {
			if l.has(f) { // else it ended already
				l.end(f, nil)
			}
		}
		if stop && l.idle() {
			return
		}
	}
}

// pollable makes the epoll descriptor fd a file of the runtime's poller,
// which owns and closes fd from then on (fd is closed on an error, too).
func pollable(fd int) (pollFile, error) {
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return pollFile{}, fmt.Errorf("epoll: %w", err)
	}
	f := os.NewFile(uintptr(fd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return pollFile{}, fmt.Errorf("epoll: %w", err)
	}
	return pollFile{f, rc}, nil
}

type pollFile struct {
	f  *os.File
	rc syscall.RawConn
}

func (p pollFile) Close() error { return p.f.Close() }

// wait returns the events ready, none after loopPoll without any.
func (l *feedLoop) wait(pf pollFile, events []syscall.EpollEvent) (int, error) {
	_ = pf.f.SetReadDeadline(time.Now().Add(loopPoll))
	n := 0
	var werr error
	err := pf.rc.Read(func(fd uintptr) bool {
		for {
			r, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
			switch {
			case errno == syscall.EINTR:
				continue
			case errno != 0:
				werr = fmt.Errorf("epoll wait: %w", errno)
				return true
			}
			n = int(r)
			return n > 0
		}
	})
	switch {
	case werr != nil:
		return 0, werr
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("epoll wait: %w", err)
	}
	return n, nil
}

// read reads once what the socket has (epoll said it has something) and
// feeds it.
func (f *loopFeed) read(buf []byte, now time.Time) error {
	for {
		n, err := rawRead(f.fd, buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return nil
		case err != nil:
			return &net.OpError{Op: "read", Net: "tcp", Err: err}
		case n == 0:
			return io.EOF
		}
		return f.consume(buf[:n], now, fdWriter{f.fd})
	}
}

func (l *feedLoop) has(f *loopFeed) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.feeds[int32(f.fd)] == f
}

func (l *feedLoop) idle() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.feeds) == 0 && len(l.quit) == 0
}

func (l *feedLoop) end(f *loopFeed, err error) {
	l.mu.Lock()
	delete(l.feeds, int32(f.fd))
	l.mu.Unlock()
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, f.fd, nil)
	_ = syscall.Close(f.fd)
	f.done <- err
}

func (l *feedLoop) endAll(err error) {
	l.mu.Lock()
	feeds := make([]*loopFeed, 0, len(l.feeds))
	for _, f := range l.feeds {
		feeds = append(feeds, f)
	}
	l.stop = true
	l.mu.Unlock()
	for _, f := range feeds {
		l.end(f, err)
	}
}

// fdWriter writes to a loop's socket from its parser: small frames (a
// WebSocket pong), waiting briefly when the socket is full.
type fdWriter struct{ fd int }

func (w fdWriter) Write(p []byte) (int, error) {
	written := 0
	deadline := time.Now().Add(10 * time.Second)
	for written < len(p) {
		n, err := rawWrite(w.fd, p[written:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			if time.Now().After(deadline) {
				return written, errors.New("write: the socket stayed full")
			}
			time.Sleep(time.Millisecond)
			continue
		case err != nil:
			return written, &net.OpError{Op: "write", Net: "tcp", Err: err}
		}
		written += n
	}
	return written, nil
}

// rawRead and rawWrite are read(2) and write(2) on a non-blocking socket
// without the runtime's system call bookkeeping: a loop's reads and writes
// never block, and a processor seen in a system call keeps sysmon waking
// every 20 µs to take it back (15% of pushbench's CPU in the send
// scenario).
func rawRead(fd int, p []byte) (int, error) { return rawIO(syscall.SYS_READ, fd, p) }

func rawWrite(fd int, p []byte) (int, error) { return rawIO(syscall.SYS_WRITE, fd, p) }

func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
