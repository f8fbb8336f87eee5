//go:build !unix

package server

import "syscall"

func waitReadable(raw syscall.RawConn) error { panic("unreachable") }

const canWaitReadable = false
