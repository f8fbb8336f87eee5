package main

import (
	"fmt"
	"syscall"
)

// selfCPU returns pushbench's own CPU time so far, user and kernel, in
// seconds.
func selfCPU() (float64, error) {
	h, err := syscall.GetCurrentProcess()
	if err != nil {
		return 0, fmt.Errorf("GetCurrentProcess: %w", err)
	}
	var created, exited, kernel, user syscall.Filetime
	if err := syscall.GetProcessTimes(h, &created, &exited, &kernel, &user); err != nil {
		return 0, fmt.Errorf("GetProcessTimes: %w", err)
	}
	// These FILETIMEs are durations in 100 ns units, not dates:
	// Filetime.Nanoseconds would subtract the years from 1601 to 1970.
	ticks := func(f syscall.Filetime) uint64 { return uint64(f.HighDateTime)<<32 | uint64(f.LowDateTime) }
	return float64(ticks(kernel)+ticks(user)) / 1e7, nil
}
