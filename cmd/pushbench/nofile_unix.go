//go:build unix

package main

import (
	"fmt"
	"syscall"
)

// raiseNoFile raises the soft RLIMIT_NOFILE to at least need (up to the
// hard limit) and returns the soft limit now in force; it fails when the
// hard limit is below need.
func raiseNoFile(need uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	// uint64 here: the fields are int64 on the BSDs, where RLIM_INFINITY
	// (-1) becomes the largest limit.
	cur, hard := uint64(lim.Cur), uint64(lim.Max)
	if cur >= need {
		return cur, nil
	}
	if hard < need {
		// Try anyway: root may raise the hard limit.
		var want syscall.Rlimit
		setRlim(&want.Cur, need)
		setRlim(&want.Max, need)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			return cur, fmt.Errorf("need %d open files but the hard limit is %d (ulimit -Hn): use fewer connections or raise it", need, hard)
		}
		return need, nil
	}
	setRlim(&lim.Cur, need)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("setrlimit %d: %w", need, err)
	}
	return need, nil
}

// setRlim sets a field of syscall.Rlimit, whichever its type.
func setRlim[T int64 | uint64](field *T, v uint64) { *field = T(v) }
