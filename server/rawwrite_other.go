//go:build !unix

package server

import "net"

// socketFD: no direct writes on this platform.
func socketFD(net.Conn) int { return -1 }

func writeNow(net.Conn, int, []byte) (int, error) { panic("unreachable") }
