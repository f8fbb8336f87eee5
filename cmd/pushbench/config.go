package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Hard limits: pushbench stops by itself.
const (
	maxDuration    = 10 * time.Minute
	maxSettleDrain = time.Minute
)

// config is pushbench's command line.
type config struct {
	addr        string
	allowRemote bool

	spawn     bool
	spawnBin  string
	spawnArgs []string
	redisURL  string

	ws, sse, gsse, poll int
	channels            string // "shared" or "per-sub"
	broadcast           int    // channels per call; 0: send to one channel
	anonymous           bool
	jwtSecret           string
	key                 string

	rate     float64 // calls per second over all senders; 0: as fast as possible
	senders  int
	duration time.Duration
	size     int

	idle   bool
	settle time.Duration
	drain  time.Duration

	connectConcurrency int
	connectTimeout     time.Duration
	pollTimeout        int
	pid                int
	maxConns           int
	sourceAddrs        int

	json       bool
	budgets    []budget
	quiet      bool
	cpuProfile string
}

func (c *config) conns() int { return c.ws + c.sse + c.gsse + c.poll }

// perCall is how many channels one call reaches.
func (c *config) perCall() int { return max(c.broadcast, 1) }

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// parseConfig reads the flags; -h prints the usage and returns
// flag.ErrHelp.
func parseConfig(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("pushbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `pushbench: load generator and benchmark report for pushgate.

  go run ./cmd/pushbench -spawn -sse 1000 -rate 100 -duration 10s
  go run ./cmd/pushbench -spawn -idle -sse 2000
  pushbench -addr 127.0.0.1:8080 -key KEY -jwt-secret SECRET -ws 500 -channels per-sub -rate 0

Subscribers (WebSocket graphql-transport-ws, SSE /events, graphql-sse,
long-poll /poll)
connect, get a warm-up message on each channel, then senders call send (or
broadcast) at -rate for -duration; every delivery is checked for loss,
duplication and order and timed end to end. The server's CPU and memory come
from /proc (spawned, -pid, or the owner of the listening port) or /metrics.

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "the server's host:port (or http://host:port)")
	fs.BoolVar(&c.allowRemote, "allow-remote", false, "allow a target that is not loopback")
	fs.BoolVar(&c.spawn, "spawn", false, "build and start a pushgate on a free loopback port, measure it, stop it at the end")
	fs.StringVar(&c.spawnBin, "spawn-bin", "", "with -spawn: run this pushgate binary instead of building ./cmd/pushgate")
	fs.Var((*stringList)(&c.spawnArgs), "spawn-arg", "with -spawn: one more argument for pushgate (repeatable), e.g. -spawn-arg=--log-level=warn")
	fs.StringVar(&c.redisURL, "redis-url", "", "with -spawn: the spawned pushgate's --redis-url (default: the memory store)")
	fs.IntVar(&c.ws, "ws", 0, "WebSocket subscribers (graphql-transport-ws)")
	fs.IntVar(&c.sse, "sse", 0, "SSE subscribers (GET /events)")
	fs.IntVar(&c.gsse, "gsse", 0, "graphql-sse subscribers (POST /graphql, Accept: text/event-stream: distinct connections mode)")
	fs.IntVar(&c.poll, "poll", 0, "long-poll subscribers (GET /poll)")
	fs.StringVar(&c.channels, "channels", "shared", "shared: every subscriber reads the same channel(s); per-sub: one channel each (user:bench-<i> with tokens, bench:<i> with -anonymous)")
	fs.IntVar(&c.broadcast, "broadcast", 0, "call broadcast with this many channels per call (0: send to one channel); with -channels shared every subscriber reads all of them (at most 32)")
	fs.BoolVar(&c.anonymous, "anonymous", false, "subscribe without a token (the server must allow anonymous reading); channels are bench:*")
	fs.StringVar(&c.jwtSecret, "jwt-secret", "", "HS256 secret to mint subscriber tokens with (default with -spawn: benchsecret-0123456789abcdef-0123456789)")
	fs.StringVar(&c.key, "key", "", "API key for send and broadcast (default with -spawn: benchkey)")
	fs.Float64Var(&c.rate, "rate", 100, "calls per second over all senders (each broadcast call appends -broadcast messages); 0: as fast as possible")
	fs.IntVar(&c.senders, "senders", 4, "sending goroutines, each with one call in flight")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to send (at most 10m)")
	fs.IntVar(&c.size, "size", 100, "bytes of message data (the timestamp and sequence, padded with a filler field)")
	fs.BoolVar(&c.idle, "idle", false, "connect the subscribers, let them settle, report memory per connection; send nothing")
	fs.DurationVar(&c.settle, "settle", 2*time.Second, "with -idle: how long connections settle before memory is read")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "after sending, how long to wait at most for deliveries still on the way")
	fs.IntVar(&c.connectConcurrency, "connect-concurrency", 64, "connections being set up at once")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 10*time.Second, "per connection, until its feed is live; also bounds the warm-up")
	fs.IntVar(&c.pollTimeout, "poll-timeout", 20, "seconds the server may hold a long-poll")
	fs.IntVar(&c.pid, "pid", 0, "the server's PID, for its CPU and memory (default: the owner of -addr's listening socket, else /metrics)")
	fs.IntVar(&c.maxConns, "max-conns", 20000, "refuse to open more subscriber connections than this")
	fs.IntVar(&c.sourceAddrs, "source-addrs", 0, "connect subscribers from this many loopback addresses 127.0.0.1, .2, ... so that a server's per-IP limits see many clients (0: one per 50 subscribers with an IPv4 loopback target on Linux and Windows, else the system's choice)")
	fs.BoolVar(&c.json, "json", false, "print one JSON object with every figure instead of the table")
	fs.Func("budget", "a bound on a figure of the report, figure<=limit or figure>=limit, the figure named by its path in -json "+
		"(latency.p99Ms<=15, server.cpuPerDeliveryUs<=7, server.memPerConnKB<=16, send.callsPerSec>=54000); repeatable. "+
		"Each gets a pass/FAIL line after the report, and pushbench exits 1 when one fails", func(v string) error {
		b, err := parseBudget(v)
		c.budgets = append(c.budgets, b)
		return err
	})
	fs.BoolVar(&c.quiet, "quiet", false, "no progress lines on stderr")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write pushbench's own CPU profile of the send phase to this file")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.spawn {
		if c.key == "" {
			c.key = "benchkey"
		}
		if c.jwtSecret == "" {
			c.jwtSecret = "benchsecret-0123456789abcdef-0123456789"
		}
	}
	return c, c.validate()
}

func (c *config) validate() error {
	c.addr = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(c.addr, "http://"), "https://"), "/")
	if _, _, err := net.SplitHostPort(c.addr); err != nil && !c.spawn {
		return fmt.Errorf("-addr %q: want host:port: %w", c.addr, err)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch n := c.conns(); {
	case c.ws < 0 || c.sse < 0 || c.gsse < 0 || c.poll < 0:
		bad("-ws, -sse, -gsse and -poll cannot be negative")
	case n == 0:
		bad("no subscribers: give -ws, -sse, -gsse and/or -poll")
	case n > c.maxConns:
		bad("%d connections are over -max-conns %d", n, c.maxConns)
	}
	switch c.channels {
	case "shared":
		if c.broadcast > 32 {
			bad("-channels shared reads every broadcast channel in one subscription: -broadcast at most 32")
		}
	case "per-sub":
	default:
		bad("-channels must be shared or per-sub, not %q", c.channels)
	}
	if c.broadcast < 0 || c.broadcast > 100 {
		bad("-broadcast must be 0..100")
	}
	if !c.anonymous && c.jwtSecret == "" {
		bad("subscribers need -jwt-secret to mint tokens, or -anonymous")
	}
	if c.key == "" && !c.idle {
		bad("senders need the API key: -key")
	}
	if c.rate < 0 {
		bad("-rate cannot be negative")
	}
	if c.senders < 1 || c.senders > 1024 {
		bad("-senders must be 1..1024")
	}
	if c.duration <= 0 || c.duration > maxDuration {
		bad("-duration must be more than 0 and at most %v", maxDuration)
	}
	if c.size < 0 || c.size > 1<<20 {
		bad("-size must be 0..1048576")
	}
	if c.settle < 0 || c.settle > maxSettleDrain || c.drain < 0 || c.drain > maxSettleDrain {
		bad("-settle and -drain must be 0..%v", maxSettleDrain)
	}
	if c.connectConcurrency < 1 {
		bad("-connect-concurrency must be at least 1")
	}
	if c.connectTimeout <= 0 || c.connectTimeout > maxSettleDrain {
		bad("-connect-timeout must be more than 0 and at most %v", maxSettleDrain)
	}
	if c.sourceAddrs < 0 || c.sourceAddrs > maxSourceAddrs {
		bad("-source-addrs must be 0..%d", maxSourceAddrs)
	}
	if c.pollTimeout < 1 || c.pollTimeout > 50 {
		bad("-poll-timeout must be 1..50 seconds")
	}
	if !c.spawn && (c.spawnBin != "" || c.redisURL != "" || len(c.spawnArgs) > 0) {
		bad("-spawn-bin, -spawn-arg and -redis-url apply with -spawn")
	}
	return errors.Join(errs...)
}

// layout is who reads what: each subscriber's channels, and the groups of
// channels one call reaches.
type layout struct {
	subChannels [][]string // by subscriber
	subGroups   [][]int    // by subscriber: the group of each channel
	groups      [][]string
}

// planLayout assigns channels. Shared: every subscriber reads the same
// -broadcast channels (one, bench:shared, when sending), the one group.
// Per-sub: subscriber i reads user:bench-<i> (bench:<i> when anonymous),
// and the channels form groups of -broadcast in subscriber order.
func planLayout(c *config) layout {
	n, k := c.conns(), c.perCall()
	l := layout{subChannels: make([][]string, n), subGroups: make([][]int, n)}
	if c.channels == "shared" {
		names := []string{"bench:shared"}
		if k > 1 {
			names = make([]string, k)
			for i := range names {
				names[i] = "bench:shared-" + strconv.Itoa(i)
			}
		}
		groups := make([]int, k)
		l.groups = [][]string{names}
		for i := range n {
			l.subChannels[i], l.subGroups[i] = names, groups
		}
		return l
	}
	for i := range n {
		name := "user:bench-" + strconv.Itoa(i)
		if c.anonymous {
			name = "bench:" + strconv.Itoa(i)
		}
		g := i / k
		if g == len(l.groups) {
			l.groups = append(l.groups, nil)
		}
		l.groups[g] = append(l.groups[g], name)
		l.subChannels[i], l.subGroups[i] = []string{name}, []int{g}
	}
	return l
}

// mintToken returns an HS256 subscriber token for bench-<i> granting
// channels, valid for ttl.
func mintToken(secret string, i int, channels []string, ttl time.Duration) (string, error) {
	claims := struct {
		Channels []string `json:"channels"`
		jwt.RegisteredClaims
	}{
		Channels: channels,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   "bench-" + strconv.Itoa(i),
			ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl)),
		},
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
}
