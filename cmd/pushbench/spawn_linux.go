package main

import "syscall"

// serverProcAttr puts the spawned server in a process group of its own, so
// that a terminal's ^C reaches pushbench only (which stops the server
// after reading its figures), and has the kernel send it SIGTERM when
// pushbench dies, so that it does not outlive a killed pushbench.
func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
