//go:build unix

package delivery

import (
	"net"
	"os"
	"syscall"
	"unsafe"
)

// socketFD is the file descriptor of a plain TCP or Unix socket, which
// Socket writes to directly; -1 for anything else (TLS, a wrapper,
// net.Pipe), which is written through its Write.
func socketFD(conn net.Conn) int {
	var raw syscall.RawConn
	var err error
	switch c := conn.(type) {
	case *net.TCPConn:
		raw, err = c.SyscallConn()
	case *net.UnixConn:
		raw, err = c.SyscallConn()
	default:
		return -1
	}
	if err != nil {
		return -1
	}
	fd := -1
	if raw.Control(func(f uintptr) { fd = int(f) }) != nil {
		return -1
	}
	return fd
}

// writeNow writes to a socket what it takes at once (the runtime keeps it
// non-blocking): all of p, part of it, or nothing when its buffer is full.
// The caller guarantees that fd is open (Socket: under its lock, before
// Close).
func writeNow(conn net.Conn, fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		// A raw system call: the write never blocks, so the runtime need
		// not be told (entersyscall), and its monitor does not hand the
		// processor to another thread while the kernel runs the loopback
		// delivery.
		n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch errno {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, nil
		}
		return 0, &net.OpError{Op: "write", Net: conn.LocalAddr().Network(), Source: conn.LocalAddr(),
			Addr: conn.RemoteAddr(), Err: os.NewSyscallError("write", errno)}
	}
}

// waitReadable waits until raw's socket has something to read (data, the
// peer's end, an error), without reading it: the socket is peeked at, and
// the goroutine parks in the runtime's poller with a stack a few frames
// deep.
func waitReadable(raw syscall.RawConn) error {
	var one [1]byte
	return raw.Read(func(fd uintptr) bool {
		for {
			_, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch err {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // nothing yet: wait until the socket is readable
			}
			return true
		}
	})
}

const canWaitReadable = true
