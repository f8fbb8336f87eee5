//go:build !unix

package delivery

import (
	"net"
	"syscall"
)

// socketFD: no direct writes on this platform.
func socketFD(net.Conn) int { return -1 }

func writeNow(net.Conn, int, []byte) (int, error) { panic("unreachable") }

func waitReadable(raw syscall.RawConn) error { panic("unreachable") }

const canWaitReadable = false
