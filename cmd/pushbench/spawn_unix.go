//go:build unix && !linux

package main

import "syscall"

// serverProcAttr puts the spawned server in a process group of its own, so
// that a terminal's ^C reaches pushbench only (which stops the server
// after reading its figures). These systems have no parent-death signal:
// a server whose pushbench is killed (SIGKILL) keeps running.
func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
