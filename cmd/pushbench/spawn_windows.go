package main

import "syscall"

// serverProcAttr starts the spawned server in a process group of its own,
// in which Windows ignores the console's Ctrl+C: it reaches pushbench only,
// which stops the server after reading its figures. Nothing ends a server
// whose pushbench is killed.
func serverProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}
