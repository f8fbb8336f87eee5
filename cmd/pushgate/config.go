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

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
)

// config is pushgate's configuration: flags, each with an environment
// variable of the same name; a flag wins over its variable.
type config struct {
	Addr              string
	RedisURL          string
	Redis             *redis.Options // nil: the memory store
	APIKeys           []server.APIKey
	JWTSecret         string
	AllowAnonymous    bool
	HistorySize       int
	HistoryTTL        time.Duration
	IdempotencyWindow time.Duration
	MaxMessageSize    int
	WriteTimeout      time.Duration
	ShutdownTimeout   time.Duration
	LogLevel          zerolog.Level
}

// option is one setting: its flag, variable, default and parser.
type option struct {
	flag, env, def, usage string
	// list: the flag repeats, the variable is a comma-separated list.
	list bool
	// boolean: the flag takes no value (--allow-anonymous).
	boolean bool
	set     func(c *config, v string) error
}

var options = []option{
	{flag: "addr", env: "PUSHGATE_ADDR", def: ":8080", usage: "address to listen on",
		set: func(c *config, v string) error {
			if _, _, err := net.SplitHostPort(v); err != nil {
				return errors.New("must be host:port or :port")
			}
			c.Addr = v
			return nil
		}},
	{flag: "redis-url", env: "PUSHGATE_REDIS_URL", usage: "Redis URL (redis:// or rediss://); empty: the in-memory store",
		set: func(c *config, v string) error {
			if v == "" {
				c.RedisURL, c.Redis = "", nil
				return nil
			}
			opts, err := redis.ParseURL(v)
			if err != nil {
				return err
			}
			c.RedisURL, c.Redis = v, opts
			return nil
		}},
	{flag: "api-key", env: "PUSHGATE_API_KEYS", list: true, usage: "API key name:secret that may send (repeatable; the variable is a comma list)",
		set: func(c *config, v string) error {
			name, secret, ok := strings.Cut(v, ":")
			if !ok || name == "" || secret == "" {
				return errors.New("must be name:secret")
			}
			for _, k := range c.APIKeys {
				if k.Name == name {
					return fmt.Errorf("key name %q is given twice", name)
				}
			}
			c.APIKeys = append(c.APIKeys, server.APIKey{Name: name, Secret: secret})
			return nil
		}},
	{flag: "jwt-secret", env: "PUSHGATE_JWT_SECRET", usage: "HS256 secret of subscriber tokens; empty: only API keys read",
		set: func(c *config, v string) error { c.JWTSecret = v; return nil }},
	{flag: "allow-anonymous", env: "PUSHGATE_ALLOW_ANONYMOUS", def: "false", boolean: true,
		usage: "let requests without credentials read every channel but user:* ones (development)",
		set: func(c *config, v string) (err error) {
			c.AllowAnonymous, err = strconv.ParseBool(v)
			if err != nil {
				return errors.New("must be true or false")
			}
			return nil
		}},
	{flag: "history-size", env: "PUSHGATE_HISTORY_SIZE", def: strconv.Itoa(pubsub.DefaultHistorySize), usage: "messages retained per channel",
		set: func(c *config, v string) (err error) { c.HistorySize, err = positiveInt(v, 1<<24); return err }},
	{flag: "history-ttl", env: "PUSHGATE_HISTORY_TTL", def: "24h", usage: "how long messages are retained",
		set: func(c *config, v string) (err error) { c.HistoryTTL, err = positiveDuration(v); return err }},
	{flag: "idempotency-window", env: "PUSHGATE_IDEMPOTENCY_WINDOW", def: "5m", usage: "how long an idempotency key is remembered",
		set: func(c *config, v string) (err error) { c.IdempotencyWindow, err = positiveDuration(v); return err }},
	{flag: "max-message-size", env: "PUSHGATE_MAX_MESSAGE_SIZE", def: "65536", usage: "maximum message data in bytes",
		set: func(c *config, v string) (err error) { c.MaxMessageSize, err = positiveInt(v, 16<<20); return err }},
	{flag: "write-timeout", env: "PUSHGATE_WRITE_TIMEOUT", def: "10s", usage: "a streaming client that does not take a write within it is disconnected",
		set: func(c *config, v string) (err error) { c.WriteTimeout, err = positiveDuration(v); return err }},
	{flag: "shutdown-timeout", env: "PUSHGATE_SHUTDOWN_TIMEOUT", def: "10s", usage: "grace period for requests in flight at shutdown",
		set: func(c *config, v string) (err error) { c.ShutdownTimeout, err = positiveDuration(v); return err }},
	{flag: "log-level", env: "PUSHGATE_LOG_LEVEL", def: "info", usage: "debug, info, warn or error",
		set: func(c *config, v string) error {
			l, err := zerolog.ParseLevel(strings.ToLower(v))
			if err != nil || v == "" {
				return errors.New("must be debug, info, warn or error")
			}
			c.LogLevel = l
			return nil
		}},
}

// parseConfig reads the flags in args and the variables through getenv.
// A bad value is an error naming its flag (and variable, when it came from
// one). -h prints the usage to stderr and returns flag.ErrHelp.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("pushgate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	given := make(map[string][]string)
	for _, o := range options {
		usage := fmt.Sprintf("%s (env %s", o.usage, o.env)
		if o.def != "" {
			usage += ", default " + o.def
		}
		usage += ")"
		record := func(v string) error {
			given[o.flag] = append(given[o.flag], v)
			return nil
		}
		if o.boolean {
			fs.BoolFunc(o.flag, usage, record)
		} else {
			fs.Func(o.flag, usage, record)
		}
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q (flags are --name value)", fs.Arg(0))
	}
	var c config
	for _, o := range options {
		values, from := given[o.flag], ""
		if len(values) == 0 {
			if v := getenv(o.env); v != "" {
				values, from = []string{v}, o.env
				if o.list {
					values = splitList(v)
				}
			} else if o.def != "" {
				values = []string{o.def}
			}
		}
		if !o.list && len(values) > 1 {
			values = values[len(values)-1:] // the last flag wins
		}
		for _, v := range values {
			if err := o.set(&c, v); err != nil {
				if from != "" {
					return config{}, fmt.Errorf("invalid --%s (from %s): %q: %w", o.flag, from, v, err)
				}
				return config{}, fmt.Errorf("invalid --%s: %q: %w", o.flag, v, err)
			}
		}
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func positiveInt(s string, max int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, fmt.Errorf("must be an integer from 1 to %d", max)
	}
	return n, nil
}

func positiveDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errors.New("must be a positive duration such as 30s, 5m or 24h")
	}
	return d, nil
}
