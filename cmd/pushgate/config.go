package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/limits"
	"github.com/pushgate/pushgate/wechat"
)

// config is pushgate's configuration: flags, each with an environment
// variable of the same name, and the config file (file.go); a flag wins
// over its variable, which wins over the file.
type config struct {
	Addr              string
	TLSCert, TLSKey   string // both or neither: TLS with HTTP/2 (tls.go)
	RedisURL          string
	Redis             *redis.UniversalOptions // nil: the memory store
	RedisFencing      pubsub.Fencing
	RedisWaitReplicas int
	RedisWaitTimeout  time.Duration
	// RedisWait is how long start-up retries a Redis that does not
	// answer (waitForStore).
	RedisWait time.Duration
	// RedisTimeout bounds a publish (pubsub.Options.PublishTimeout).
	RedisTimeout time.Duration
	APIKeys      []access.APIKey
	JWTSecret    string
	// AllowWeakJWTSecret lets an HS256 secret be shorter than 32 bytes
	// (checkJWTSecret).
	AllowWeakJWTSecret bool
	AllowAnonymous     bool
	HistorySize        int
	HistoryTTL         time.Duration
	IdempotencyWindow  time.Duration
	MaxMessageSize     int
	WriteTimeout       time.Duration
	ShutdownTimeout    time.Duration
	LogLevel           zerolog.Level

	// From the config file only. The default namespace's rules are
	// AllowAnonymous, HistorySize, HistoryTTL, MaxMessageSize, TokenPublish
	// and Presence; Namespaces are the named ones, each rule resolved.
	ConfigFile     string
	TokenPublish   bool
	Presence       bool
	Namespaces     map[string]access.Namespace
	AllowedOrigins []string
	JWT            access.TokenConfig

	// jwtFlags are the --jwks-url, --jwt-issuer, --jwt-audience and
	// --jwt-leeway values; they win over the file's jwt section.
	jwtFlags       access.TokenConfig
	TrustedProxies []netip.Prefix
	MaxBodyBytes   int64
	// MaxResponseBytes bounds a GraphQL response's history pages and a
	// long-poll answer (server.Config.MaxResponseBytes).
	MaxResponseBytes int64
	// ReadTimeout bounds the read of a request body (server.Config).
	ReadTimeout  time.Duration
	GCMinHeapMB  int
	GoMaxProcs   int // -1: auto (goMaxProcs)
	Heartbeat    time.Duration
	Limits       limits.Limits
	MetricsToken string
	Pprof        bool
	Console      bool

	// WeChat is the WeChat side (docs/wechat.md): the file's wechat.apps,
	// and the app of the --wechat-* flags. No apps: none of it.
	WeChat wechat.Config
	// wechatFlags is the app of the --wechat-* flags (AppID "": none).
	wechatFlags wechat.AppConfig
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
	{flag: "tls-cert", env: "PUSHGATE_TLS_CERT", usage: "PEM certificate chain to serve HTTPS (HTTP/2 and HTTP/1.1) with; reloaded on SIGHUP and when the file changes; needs --tls-key",
		set: func(c *config, v string) error { c.TLSCert = v; return nil }},
	{flag: "tls-key", env: "PUSHGATE_TLS_KEY", usage: "PEM private key of --tls-cert",
		set: func(c *config, v string) error { c.TLSKey = v; return nil }},
	{flag: "redis-url", env: "PUSHGATE_REDIS_URL", usage: "Redis URL: redis://[:pass@]host:port/db (rediss:// for TLS), a cluster redis+cluster://h1:p1,h2:p2, or Sentinel redis-sentinel://[:pass@]s1:p1,s2:p2/<master>; empty: the in-memory store",
		set: func(c *config, v string) error {
			if v == "" {
				c.RedisURL, c.Redis = "", nil
				return nil
			}
			opts, err := pubsub.ParseRedisURL(v)
			if err != nil {
				return err
			}
			c.RedisURL, c.Redis = v, opts
			return nil
		}},
	{flag: "redis-fencing", env: "PUSHGATE_REDIS_FENCING", def: "auto",
		usage: "start a new epoch when the Redis master changed (failover, restart), so that offsets a lost master acknowledged are never reused: auto (on for Sentinel and Cluster), on or off (docs/redis.md)",
		set: func(c *config, v string) error {
			switch v {
			case "auto":
				c.RedisFencing = pubsub.FencingAuto
			case "on":
				c.RedisFencing = pubsub.FencingOn
			case "off":
				c.RedisFencing = pubsub.FencingOff
			default:
				return errors.New("must be auto, on or off")
			}
			return nil
		}},
	{flag: "redis-wait-replicas", env: "PUSHGATE_REDIS_WAIT_REPLICAS", def: "0",
		usage: "replicas that must have each publish (Redis WAIT) before it is acknowledged; one not confirmed within --redis-wait-timeout fails with UNAVAILABLE (0: do not wait)",
		set: func(c *config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 16 {
				return errors.New("must be an integer from 0 to 16")
			}
			c.RedisWaitReplicas = n
			return nil
		}},
	{flag: "redis-wait-timeout", env: "PUSHGATE_REDIS_WAIT_TIMEOUT", def: "100ms", usage: "how long a publish waits for --redis-wait-replicas",
		set: func(c *config, v string) (err error) { c.RedisWaitTimeout, err = positiveDuration(v); return err }},
	{flag: "redis-wait", env: "PUSHGATE_REDIS_WAIT", def: "30s",
		usage: "how long start-up keeps trying a Redis that does not answer, /healthz answering 200 and /readyz 503 meanwhile, before it gives up (0s: one try), so that pushgate may start before its Redis",
		set: func(c *config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > 24*time.Hour {
				return errors.New("must be a duration from 0s to 24h, such as 30s or 5m")
			}
			c.RedisWait = d
			return nil
		}},
	{flag: "redis-timeout", env: "PUSHGATE_REDIS_TIMEOUT",
		usage: "bound of one send's wait for Redis, a free connection and retries included: over it the send fails with UNAVAILABLE (extensions.stored \"unknown\" when it may have been stored: retry with the same idempotencyKey) (default 3s)",
		set:   func(c *config, v string) (err error) { c.RedisTimeout, err = positiveDuration(v); return err }},
	{flag: "api-key", env: "PUSHGATE_API_KEYS", list: true,
		usage: "API key name:secret that may send to every channel, or name[pattern,...]:secret that may send to the channels matching a pattern (repeatable; the variable is a comma list)",
		set: func(c *config, v string) error {
			k, err := parseAPIKey(v)
			if err != nil {
				return err
			}
			return addAPIKey(&c.APIKeys, k)
		}},
	{flag: "jwt-secret", env: "PUSHGATE_JWT_SECRET", usage: "HS256 secret of subscriber tokens; empty: only API keys read",
		set: func(c *config, v string) error { c.JWTSecret = v; return nil }},
	{flag: "allow-weak-jwt-secret", env: "PUSHGATE_ALLOW_WEAK_JWT_SECRET", def: "false", boolean: true,
		usage: "accept an HS256 secret shorter than 32 bytes (RFC 7518 section 3.2 requires a key at least as long as the hash: 256 bits); for tests only",
		set:   func(c *config, v string) error { return parseBool(&c.AllowWeakJWTSecret, v) }},
	{flag: "allow-anonymous", env: "PUSHGATE_ALLOW_ANONYMOUS", def: "false", boolean: true,
		usage: "let requests without credentials read every channel but user:* ones, except in namespaces whose anonymous_read is false (the default namespace's anonymous_read; development)",
		set:   func(c *config, v string) error { return parseBool(&c.AllowAnonymous, v) }},
	{flag: "history-size", env: "PUSHGATE_HISTORY_SIZE", def: strconv.Itoa(pubsub.DefaultHistorySize), usage: "messages retained per channel (the default namespace's history_size)",
		set: func(c *config, v string) (err error) { c.HistorySize, err = positiveInt(v, maxHistorySize); return err }},
	{flag: "history-ttl", env: "PUSHGATE_HISTORY_TTL", def: "24h", usage: "how long messages are retained (the default namespace's history_ttl)",
		set: func(c *config, v string) (err error) { c.HistoryTTL, err = positiveDuration(v); return err }},
	{flag: "idempotency-window", env: "PUSHGATE_IDEMPOTENCY_WINDOW", def: "5m", usage: "how long an idempotency key is remembered",
		set: func(c *config, v string) (err error) { c.IdempotencyWindow, err = positiveDuration(v); return err }},
	{flag: "max-message-size", env: "PUSHGATE_MAX_MESSAGE_SIZE", def: "65536", usage: "maximum message data in bytes (the default namespace's max_message_size)",
		set: func(c *config, v string) (err error) {
			c.MaxMessageSize, err = positiveInt(v, maxMessageSizeCap)
			return err
		}},
	{flag: "write-timeout", env: "PUSHGATE_WRITE_TIMEOUT", def: "10s", usage: "a streaming client that does not take a write within it is disconnected",
		set: func(c *config, v string) (err error) { c.WriteTimeout, err = positiveDuration(v); return err }},
	{flag: "shutdown-timeout", env: "PUSHGATE_SHUTDOWN_TIMEOUT", def: "10s", usage: "grace period for requests in flight at shutdown",
		set: func(c *config, v string) (err error) { c.ShutdownTimeout, err = positiveDuration(v); return err }},
	{flag: "jwks-url", env: "PUSHGATE_JWKS_URL", usage: "JWKS URL of the RS256/ES256 keys that sign subscriber tokens",
		set: func(c *config, v string) error {
			if u, err := url.Parse(v); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return errors.New("must be an http(s) URL")
			}
			c.jwtFlags.JWKSURL = v
			return nil
		}},
	{flag: "jwt-issuer", env: "PUSHGATE_JWT_ISSUER", usage: "required iss of subscriber tokens (empty: not checked)",
		set: func(c *config, v string) error { c.jwtFlags.Issuer = v; return nil }},
	{flag: "jwt-audience", env: "PUSHGATE_JWT_AUDIENCE", usage: "required aud of subscriber tokens (empty: not checked)",
		set: func(c *config, v string) error { c.jwtFlags.Audience = v; return nil }},
	{flag: "jwt-leeway", env: "PUSHGATE_JWT_LEEWAY", usage: "clock skew allowed on exp, nbf and iat (default 30s; 0s: none)",
		set: func(c *config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > 10*time.Minute {
				return errors.New("must be a duration from 0s to 10m")
			}
			if d == 0 {
				d = -1 // TokenConfig: negative is none, zero the default
			}
			c.jwtFlags.Leeway = d
			return nil
		}},
	{flag: "allowed-origin", env: "PUSHGATE_ALLOWED_ORIGINS", list: true,
		usage: "browser origin allowed on /graphql, /events and /poll (https://app.example.com, https://*.example.com or *; repeatable; default: same origin only; requests without Origin, as from mini-programs, are always allowed)",
		set: func(c *config, v string) error {
			if err := checkOrigin(v); err != nil {
				return err
			}
			c.AllowedOrigins = append(c.AllowedOrigins, v)
			return nil
		}},
	{flag: "trusted-proxy", env: "PUSHGATE_TRUSTED_PROXIES", list: true,
		usage: "IP or CIDR of a reverse proxy whose X-Forwarded-For names the client (repeatable)",
		set: func(c *config, v string) error {
			p, err := netip.ParsePrefix(v)
			if err != nil {
				a, aerr := netip.ParseAddr(v)
				if aerr != nil {
					return errors.New("must be an IP address or a CIDR prefix")
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			c.TrustedProxies = append(c.TrustedProxies, p.Masked())
			return nil
		}},
	{flag: "max-body-bytes", env: "PUSHGATE_MAX_BODY_BYTES", def: "1048576", usage: "largest request body, or WebSocket message, in bytes",
		set: func(c *config, v string) error {
			n, err := positiveInt(v, 64<<20)
			c.MaxBodyBytes = int64(n)
			return err
		}},
	// Settings whose default is the server's (zero here) have no def:
	// the usage says it.
	{flag: "max-response-bytes", env: "PUSHGATE_MAX_RESPONSE_BYTES",
		usage: "largest response a GraphQL operation's history pages may make, estimated as they are read (over it: RESPONSE_TOO_LARGE), and largest long-poll answer, in bytes (default 16777216)",
		set: func(c *config, v string) error {
			n, err := positiveInt(v, 1<<30)
			c.MaxResponseBytes = int64(n)
			return err
		}},
	{flag: "read-timeout", env: "PUSHGATE_READ_TIMEOUT",
		usage: "a request whose body has not arrived within it is answered 408 and closed; streams are not bounded by it (default 30s)",
		set:   func(c *config, v string) (err error) { c.ReadTimeout, err = positiveDuration(v); return err }},
	{flag: "gc-min-heap-mb", env: "PUSHGATE_GC_MIN_HEAP_MB", def: "64",
		usage: "the heap the garbage collector lets grow to before it collects, at least, in MiB: while the live heap is below half of it, GOGC is raised so that the goal is this (0: the runtime's default; ignored when GOGC is set)",
		set: func(c *config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 1<<20 {
				return errors.New("must be a number of MiB from 0 to 1048576")
			}
			c.GCMinHeapMB = n
			return nil
		}},
	{flag: "gomaxprocs", env: "PUSHGATE_GOMAXPROCS", def: "auto",
		usage: "Go processors: auto: two more than the CPUs when the process may use them all (no CPU quota), else Go's default; 0: Go's default; or a number. Ignored when GOMAXPROCS is set",
		set: func(c *config, v string) error {
			if v == "auto" {
				c.GoMaxProcs = -1
				return nil
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 1024 {
				return errors.New("must be auto or a number from 0 to 1024")
			}
			c.GoMaxProcs = n
			return nil
		}},
	{flag: "sse-heartbeat", env: "PUSHGATE_SSE_HEARTBEAT", def: "15s", usage: "how often an idle SSE stream gets a comment line",
		set: func(c *config, v string) (err error) { c.Heartbeat, err = positiveDuration(v); return err }},
	limitOption("max-subscriptions-per-connection", "operations active at once on one WebSocket", "100",
		func(l *limits.Limits, n int) { l.MaxSubscriptionsPerConnection = n }),
	limitOption("max-connections-per-subject", "streaming connections open at once per token subject", "100",
		func(l *limits.Limits, n int) { l.MaxConnectionsPerSubject = n }),
	limitOption("max-connections-per-ip", "streaming connections open at once per client IP", "1000",
		func(l *limits.Limits, n int) { l.MaxConnectionsPerIP = n }),
	rateOption("connect-rate-per-ip", "new streaming connections (and long-polls) per second per client IP", "50",
		func(l *limits.Limits) *limits.Rate { return &l.ConnectRatePerIP }),
	rateOption("send-rate-per-key", "messages per second per API key", "1000",
		func(l *limits.Limits) *limits.Rate { return &l.SendRatePerKey }),
	rateOption("send-rate-per-token", "messages per second per token holder, where tokens may send", "10",
		func(l *limits.Limits) *limits.Rate { return &l.SendRatePerToken }),
	limitOption("max-requests-in-flight-per-ip", "requests other than streams in progress at once per client IP (default 256)", "",
		func(l *limits.Limits, n int) { l.MaxRequestsInFlightPerIP = n }),
	limitOption("max-query-depth", "GraphQL field nesting", "10",
		func(l *limits.Limits, n int) { l.MaxQueryDepth = n }),
	limitOption("max-query-complexity", "GraphQL operation cost: one per field, a list's fields once per item it may hold (history(last: 1000) { nodes { data } } costs 1002)", "10000",
		func(l *limits.Limits, n int) { l.MaxQueryComplexity = n }),
	{flag: "introspection", env: "PUSHGATE_INTROSPECTION", def: "true", boolean: true, usage: "answer __schema and __type queries",
		set: func(c *config, v string) error {
			on, err := strconv.ParseBool(v)
			if err != nil {
				return errors.New("must be true or false")
			}
			c.Limits.DisableIntrospection = !on
			return nil
		}},
	{flag: "metrics-token", env: "PUSHGATE_METRICS_TOKEN", usage: "bearer token required on /metrics (Authorization: Bearer <token>); empty: /metrics is open",
		set: func(c *config, v string) error { c.MetricsToken = v; return nil }},
	{flag: "pprof", env: "PUSHGATE_PPROF", def: "false", boolean: true,
		usage: "serve /debug/pprof/ (but cmdline) to requests bearing an API key allowed every channel (Authorization: Bearer <key>); others, scoped keys included, get 404",
		set:   func(c *config, v string) error { return parseBool(&c.Pprof, v) }},
	// WeChat (docs/wechat.md): the flags configure one app; the config
	// file's wechat.apps may list several. Values are checked by
	// wechat.Config.Validate, whose errors never repeat a secret.
	{flag: "wechat-app-id", env: "PUSHGATE_WECHAT_APP_ID", usage: "AppID of the WeChat mini-program: turns on wechatLogin, notify and the message push route /wechat/events/<appId> (docs/wechat.md)",
		set: func(c *config, v string) error { c.wechatFlags.AppID = v; return nil }},
	{flag: "wechat-app-secret", env: "PUSHGATE_WECHAT_APP_SECRET", usage: "AppSecret of the mini-program (never logged or echoed)",
		set: func(c *config, v string) error { c.wechatFlags.AppSecret = wechat.Secret(v); return nil }},
	{flag: "wechat-api-url", env: "PUSHGATE_WECHAT_API_URL", usage: "WeChat's API root (an egress proxy, or a stand-in in tests) (default https://api.weixin.qq.com)",
		set: func(c *config, v string) error { c.wechatFlags.APIURL = v; return nil }},
	{flag: "wechat-push-token", env: "PUSHGATE_WECHAT_PUSH_TOKEN", usage: "message push Token (消息推送), 3..32 letters and digits (never logged)",
		set: func(c *config, v string) error { c.wechatFlags.PushToken = wechat.Secret(v); return nil }},
	{flag: "wechat-aes-key", env: "PUSHGATE_WECHAT_AES_KEY", usage: "message push EncodingAESKey (43 characters): safe mode only (never logged)",
		set: func(c *config, v string) error { c.wechatFlags.AESKey = wechat.Secret(v); return nil }},
	{flag: "wechat-miniprogram-state", env: "PUSHGATE_WECHAT_MINIPROGRAM_STATE", usage: "the version a subscribe message opens: formal, trial or developer (default formal)",
		set: func(c *config, v string) error { c.wechatFlags.MiniprogramState = v; return nil }},
	{flag: "wechat-lang", env: "PUSHGATE_WECHAT_LANG", usage: "language of a subscribe message's link: zh_CN, en_US, zh_HK or zh_TW (default zh_CN)",
		set: func(c *config, v string) error { c.wechatFlags.Lang = v; return nil }},
	{flag: "wechat-offline-grace", env: "PUSHGATE_WECHAT_OFFLINE_GRACE", def: "10s",
		usage: "how long after a send an OFFLINE or UNSEEN notification waits before it looks at presence and acks (WeChat cuts a backgrounded app's network ~5s after it leaves the foreground)",
		set: func(c *config, v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return errors.New("must be a duration such as 10s")
			}
			c.wechatFlags.OfflineGrace = d
			return nil
		}},
	{flag: "wechat-notify-max-age", env: "PUSHGATE_WECHAT_NOTIFY_MAX_AGE", def: "24h", usage: "how long a notification is retried through WeChat outages",
		set: func(c *config, v string) (err error) {
			c.wechatFlags.NotifyMaxAge, err = positiveDuration(v)
			return err
		}},
	rateOption("wechat-login-rate-per-ip", "wechatLogin calls per second per client IP", "10",
		func(l *limits.Limits) *limits.Rate { return &l.WechatLoginRatePerIP }),
	{flag: "console", env: "PUSHGATE_CONSOLE", def: "false", boolean: true,
		usage: "serve the console page on /console: watch channels, send, history, GraphQL and metrics in a browser, with a key or token its user enters (on in make run)",
		set:   func(c *config, v string) error { return parseBool(&c.Console, v) }},
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

// parseConfig reads the flags in args, the variables through getenv and
// the config file they name (--config, PUSHGATE_CONFIG). A bad value is an
// error naming its flag (and variable, when it came from one), or its field
// in the file. -h prints the usage to stderr and returns flag.ErrHelp.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fs, given, configFile, showVersion := newFlagSet(stderr)
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if *showVersion {
		return config{}, errVersion
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q (flags are --name value)", fs.Arg(0))
	}
	var c config
	var file *fileConfig
	if c.ConfigFile = *configFile; c.ConfigFile == "" {
		c.ConfigFile = getenv("PUSHGATE_CONFIG")
	}
	if c.ConfigFile != "" {
		var err error
		if file, err = loadFile(c.ConfigFile); err != nil {
			return config{}, err
		}
	}
	var fromFile map[string]flagValue
	if file != nil {
		fromFile = file.flagValues()
	}
	for _, o := range options {
		values, from := given[o.flag], ""
		if len(values) == 0 {
			if v := getenv(o.env); v != "" {
				values, from = []string{v}, o.env
				if o.list {
					values = splitList(v)
				}
			} else if fv, ok := fromFile[o.flag]; ok {
				if err := o.set(&c, fv.text); err != nil {
					return config{}, fieldError(fv.field, err.Error(), fv.text)
				}
				continue
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
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return config{}, errors.New("--tls-cert and --tls-key go together: give both to serve HTTPS, or neither")
	}
	if file != nil {
		if err := file.apply(&c); err != nil {
			return config{}, err
		}
	}
	if c.JWTSecret != "" { // flag, variable or the file's jwt.secret, in that order
		c.JWT.Secret = c.JWTSecret
	}
	if f := c.jwtFlags; f.JWKSURL != "" {
		c.JWT.JWKSURL = f.JWKSURL
	}
	if f := c.jwtFlags; f.Issuer != "" {
		c.JWT.Issuer = f.Issuer
	}
	if f := c.jwtFlags; f.Audience != "" {
		c.JWT.Audience = f.Audience
	}
	if f := c.jwtFlags; f.Leeway != 0 {
		c.JWT.Leeway = f.Leeway
	}
	if err := checkJWTSecret(c.JWT.Secret, c.AllowWeakJWTSecret); err != nil {
		return config{}, err
	}
	if err := c.JWT.Validate(); err != nil {
		return config{}, fmt.Errorf("invalid token settings: %w", err)
	}
	if err := c.weChat(file); err != nil {
		return config{}, err
	}
	return c, nil
}

// minJWTSecret is the shortest HS256 secret accepted without
// --allow-weak-jwt-secret: RFC 7518 section 3.2 requires a key of at least
// the hash's size (SHA-256: 32 bytes). A shorter one, like a word, is
// found by brute force from one token, and with it any token can be forged.
const minJWTSecret = 32

// checkJWTSecret refuses an HS256 secret (from --jwt-secret, its variable
// or the file's jwt.secret) shorter than minJWTSecret unless weak is set.
// The error names the setting and its length, never the secret.
func checkJWTSecret(secret string, weak bool) error {
	if secret == "" || len(secret) >= minJWTSecret || weak {
		return nil
	}
	return fmt.Errorf("invalid --jwt-secret (PUSHGATE_JWT_SECRET, jwt.secret in the config file): %d bytes, "+
		"an HS256 secret must have at least %d (RFC 7518 section 3.2); make one with `openssl rand -base64 32`, "+
		"or pass --allow-weak-jwt-secret in a test setup", len(secret), minJWTSecret)
}

// checkOrigin checks an allowed origin (--allowed-origin, the file's
// allowed_origins): "*", or scheme://host[:port] where the host and port
// may hold wildcards. An origin the browser could never send, such as
// example.com without its scheme or one with a path, would silently match
// nothing; it is refused with the spelling that works.
func checkOrigin(v string) error {
	v = strings.TrimSpace(v)
	if v == "*" {
		return nil
	}
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok || scheme == "" {
		v = strings.TrimSuffix(v, "/")
		return fmt.Errorf("an origin starts with its scheme: https://%s (or http://%s)", v, v)
	}
	rest = strings.TrimSuffix(rest, "/") // as the server reads it
	if rest == "" {
		return errors.New("an origin names a host after its scheme, as in https://app.example.com")
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		return fmt.Errorf("an origin is scheme://host[:port], without a path, query or fragment: %s://%s", scheme, rest[:i])
	}
	return nil
}

// configUsage is the usage of --config (env PUSHGATE_CONFIG).
const configUsage = "YAML config file: namespaces, API keys with channel patterns, jwt, " +
	"allowed origins and any flag's value; flags and variables win over it"

// newFlagSet defines every flag: --config, --version and one per option,
// whose values are recorded in given (by flag name) to be applied in
// order of precedence. configDoc walks the same set.
func newFlagSet(stderr io.Writer) (fs *flag.FlagSet, given map[string][]string, configFile *string, showVersion *bool) {
	fs = flag.NewFlagSet("pushgate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage:\n  pushgate [flags]               serve\n"+
			"  pushgate healthcheck [flags]   GET /healthz on the port of --addr over loopback: exit 0 on 200, else 1\n"+
			"  pushgate --version             print the version, commit and Go version\n\nFlags:\n")
		fs.PrintDefaults()
	}
	configFile = fs.String("config", "", configUsage+" (env PUSHGATE_CONFIG)")
	showVersion = fs.Bool("version", false, "print the version, commit and Go version, and exit")
	given = make(map[string][]string)
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
	return fs, given, configFile, showVersion
}

// splitList splits a comma list, except inside [...] (the channel
// patterns of an API key).
func splitList(s string) []string {
	var parts []string
	start, depth := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
		case ']':
			depth = max(depth-1, 0)
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	parts = append(parts, s[start:])
	var out []string
	for _, v := range parts {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// limitOption is a count limit: a positive integer, or off.
func limitOption(name, what, def string, set func(*limits.Limits, int)) option {
	return option{flag: name, env: "PUSHGATE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")), def: def,
		usage: what + `; "off" or -1: no limit`,
		set: func(c *config, v string) error {
			n, err := intOrOff(v)
			set(&c.Limits, n)
			return err
		}}
}

// rateOption is a token bucket: "rate" or "rate/burst" (burst defaults to
// twice the rate), or off.
func rateOption(name, what, def string, field func(*limits.Limits) *limits.Rate) option {
	return option{flag: name, env: "PUSHGATE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")), def: def,
		usage: what + `, as rate or rate/burst; "off" or -1: no limit`,
		set: func(c *config, v string) error {
			r := field(&c.Limits)
			if v == "off" || v == "-1" {
				*r = limits.Rate{PerSecond: -1}
				return nil
			}
			rate, burst, hasBurst := strings.Cut(v, "/")
			per, err := strconv.ParseFloat(rate, 64)
			if err != nil || per <= 0 || per > 1e9 {
				return errors.New(`must be a positive rate per second, rate/burst, or "off"`)
			}
			*r = limits.Rate{PerSecond: per}
			if hasBurst {
				if r.Burst, err = positiveInt(burst, 1<<30); err != nil {
					return fmt.Errorf("burst %w", err)
				}
			}
			return nil
		}}
}

// parseBool reads a boolean option's value into dst.
func parseBool(dst *bool, v string) (err error) {
	if *dst, err = strconv.ParseBool(v); err != nil {
		return errors.New("must be true or false")
	}
	return nil
}

func intOrOff(s string) (int, error) {
	if s == "off" || s == "-1" {
		return -1, nil
	}
	n, err := positiveInt(s, 1<<30)
	if err != nil {
		return 0, fmt.Errorf(`%w, or "off"`, err)
	}
	return n, nil
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

// weChat sets c.WeChat: the file's apps, and the --wechat-* flags' app,
// which replaces the file's app of the same id. It checks the result
// (wechat.Config.Validate: errors name the field, never a secret).
func (c *config) weChat(file *fileConfig) error {
	if file != nil {
		c.WeChat.Apps = append(c.WeChat.Apps, file.WeChat.Apps...)
	}
	f := c.wechatFlags
	if f.AppID == "" {
		if f.AppSecret != "" || f.APIURL != "" || f.PushToken != "" || f.AESKey != "" || f.MiniprogramState != "" || f.Lang != "" {
			return errors.New("invalid WeChat settings: the --wechat-* flags configure an app: set --wechat-app-id (PUSHGATE_WECHAT_APP_ID)")
		}
	} else {
		if f.AppSecret == "" {
			return errors.New("invalid WeChat settings: --wechat-app-id needs --wechat-app-secret (PUSHGATE_WECHAT_APP_SECRET)")
		}
		replaced := false
		for i := range c.WeChat.Apps {
			if c.WeChat.Apps[i].AppID == f.AppID {
				c.WeChat.Apps[i], replaced = f, true
			}
		}
		if !replaced {
			c.WeChat.Apps = append(c.WeChat.Apps, f)
		}
	}
	if len(c.WeChat.Apps) == 0 {
		return nil
	}
	if err := c.WeChat.Validate(); err != nil {
		if file != nil && f.AppID == "" {
			return fmt.Errorf("config: %w", err)
		}
		return fmt.Errorf("invalid WeChat settings: %w", err)
	}
	return nil
}
