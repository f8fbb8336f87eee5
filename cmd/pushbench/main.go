// Command pushbench is pushgate's load generator and benchmark report.
//
// Subscribers over WebSocket (graphql-transport-ws), SSE and long-poll, in
// any mix, read one shared channel or one channel each; senders call send or
// broadcast at a set rate. Every message carries its send time and a
// sequence number, so each delivery is timed end to end and checked for
// loss, duplication and order. The report adds the server's CPU per
// delivery and memory per connection, read from /proc or /metrics.
//
//	go run ./cmd/pushbench -spawn -sse 1000 -rate 100 -duration 10s
//	go run ./cmd/pushbench -spawn -ws 1000 -rate 100 -duration 10s -json
//	go run ./cmd/pushbench -spawn -idle -sse 2000
//
// It targets loopback only unless -allow-remote, caps connections
// (-max-conns) and duration (10 minutes), and stops by itself; SIGINT stops
// it early with a report.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		os.Exit(1)
	}
}

// run parses args (without the program name), runs the benchmark and
// writes the report to stdout; progress goes to stderr. The first SIGINT or
// SIGTERM stops the run early and still reports; a second one kills.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal takes the default action
	}()
	rep, err := bench(ctx, cfg, stderr)
	failed := 0
	if rep != nil {
		var berr error
		if failed, berr = rep.checkBudgets(cfg.budgets); err == nil {
			err = berr
		}
		var werr error
		if cfg.json {
			werr = rep.writeJSON(stdout)
		} else {
			werr = rep.writeTable(stdout)
		}
		if err == nil {
			err = werr
		}
	}
	if err == nil && failed > 0 {
		err = fmt.Errorf("%d of %d budgets missed", failed, len(cfg.budgets))
	}
	return err
}
