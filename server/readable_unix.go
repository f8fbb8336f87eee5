//go:build unix

package server

import "syscall"

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
