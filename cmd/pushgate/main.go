// Command pushgate runs the pushgate server: configuration from flags and
// environment (see config.go), the memory or Redis store, and the HTTP
// server with graceful shutdown on SIGINT and SIGTERM.
package main

import (
	"context"
	"fmt"
	"os"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pushgate:", err)
		os.Exit(1)
	}
}
