package main

// raiseNoFile has nothing to raise on Windows: sockets are handles, with
// no per-process limit like RLIMIT_NOFILE (memory bounds them), so need is
// what is in force.
func raiseNoFile(need uint64) (uint64, error) { return need, nil }
