package pubsub

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Client defaults that ParseRedisURL applies when the URL does not set them.
// They keep every command, and above all every Publish, bounded when Redis
// is unreachable or hangs: a refused connection fails at once, a silent host
// after DefaultRedisDialTimeout, a hung server after DefaultRedisReadTimeout.
// A Publish is never retried by the client (see NewRedis), so it returns
// ErrUnavailable within about DialTimeout + WriteTimeout + ReadTimeout in the
// worst case, and at once while the server refuses connections.
const (
	DefaultRedisDialTimeout  = time.Second
	DefaultRedisReadTimeout  = time.Second
	DefaultRedisWriteTimeout = time.Second
	// DefaultRedisMaxRetries applies to reads (idempotent); publishes are
	// never retried by the client.
	DefaultRedisMaxRetries = 2
	// DefaultRedisDialerRetries is one dial attempt per command: the client
	// retries the command instead, within MaxRetries.
	DefaultRedisDialerRetries   = 1
	DefaultRedisMinRetryBackoff = 8 * time.Millisecond
	DefaultRedisMaxRetryBackoff = 128 * time.Millisecond
)

// ParseRedisURL parses a Redis URL into options for redis.NewUniversalClient,
// which then returns a client of the right kind (a *redis.Client for one
// server or Sentinel, a *redis.ClusterClient for a cluster):
//
//	opts, err := pubsub.ParseRedisURL(s)
//	client := redis.NewUniversalClient(opts)
//	broker, err := pubsub.NewRedis(ctx, client, pubsub.RedisOptions{...})
//
// Accepted forms ([...] is optional; a host without a port gets 6379, or
// 26379 for a sentinel):
//
//	redis://[[user]:password@]host[:port][/db][?option=value&...]
//	    one server; rediss:// is the same over TLS.
//	redis+cluster://[[user]:password@]host:port[,host:port...][?...]
//	    Redis Cluster: any number of seed nodes (one is enough, the rest of
//	    the cluster is discovered); rediss+cluster:// over TLS. The same as
//	    redis://host:port[,host:port...]?cluster=true. A cluster has only
//	    database 0.
//	redis-sentinel://[[user]:password@]host:port[,host:port...]/master-name[?db=N&...]
//	    Sentinel: the sentinels' addresses and the monitored master's name.
//	    The user and password are the Redis servers' (master and replicas);
//	    sentinels that require a password take sentinel_password (and
//	    sentinel_username). rediss-sentinel:// over TLS.
//
// Several hosts in a plain redis:// URL without cluster=true are an error:
// a list is either a cluster's seeds or a set of sentinels, and the URL must
// say which. User and password are percent-decoded; a password with '@', '/',
// '?', ',' or '%' must be percent-encoded.
//
// Options (durations are Go durations such as 500ms or a bare number of
// seconds):
//
//	db                    database number (single server and Sentinel)
//	cluster               true: the hosts are cluster seeds (redis:// and rediss://)
//	dial_timeout          default 1s (DefaultRedisDialTimeout)
//	read_timeout          default 1s
//	write_timeout         default 1s
//	pool_timeout          how long a command waits for a free connection (default read_timeout + 1s)
//	pool_size             connections per node (default 10 per CPU)
//	min_idle_conns        idle connections kept open per node (default 0)
//	max_retries           retries of an idempotent command (default 2; -1: none); publishes are never retried
//	dialer_retries        dial attempts per connection (default 1)
//	max_redirects         cluster MOVED/ASK redirects followed (default 3; cluster only)
//	client_name           CLIENT SETNAME of every connection
//	protocol              2 or 3 (RESP version; default 3)
//	skip_verify           true: do not verify the TLS certificate (rediss only)
//	sentinel_username     sentinels' user (Sentinel only)
//	sentinel_password     sentinels' password (Sentinel only)
//
// Every client command honours its context's deadline
// (ContextTimeoutEnabled). Errors name the part of the URL that is wrong and
// never repeat its password.
func ParseRedisURL(s string) (*redis.UniversalOptions, error) {
	o, err := parseRedisURL(s)
	if err != nil {
		return nil, fmt.Errorf("redis URL %q: %w", redactRedisURL(s), err)
	}
	return o, nil
}

type redisURLKind int

const (
	urlSingle redisURLKind = iota
	urlCluster
	urlSentinel
)

var redisSchemes = map[string]struct {
	kind redisURLKind
	tls  bool
}{
	"redis": {urlSingle, false}, "rediss": {urlSingle, true},
	"redis+cluster": {urlCluster, false}, "rediss+cluster": {urlCluster, true},
	"redis-sentinel": {urlSentinel, false}, "rediss-sentinel": {urlSentinel, true},
	"redis+sentinel": {urlSentinel, false}, "rediss+sentinel": {urlSentinel, true},
}

// redisURLOptions are the options of docs/redis.md. go-redis parses more,
// some of which break what pushgate relies on (reads from replicas, no
// timeouts, its own retry backoff, and route_by_latency, which makes
// NewFailoverClient panic), so a URL may set only these.
var redisURLOptions = []string{"db", "cluster", "dial_timeout", "read_timeout", "write_timeout", "pool_timeout", "pool_size", "min_idle_conns", "max_retries", "dialer_retries", "max_redirects", "client_name", "protocol", "skip_verify", "sentinel_username", "sentinel_password"}

func parseRedisURL(s string) (*redis.UniversalOptions, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return nil, errors.New("no scheme: want redis://, rediss://, redis+cluster://, rediss+cluster://, redis-sentinel:// or rediss-sentinel://")
	}
	sch, ok := redisSchemes[strings.ToLower(scheme)]
	if !ok {
		return nil, fmt.Errorf("unknown scheme %q: want redis, rediss, redis+cluster, rediss+cluster, redis-sentinel or rediss-sentinel", scheme)
	}
	kind := sch.kind
	rest, rawQuery, _ := strings.Cut(rest, "?")
	if strings.Contains(rest, "#") {
		return nil, errors.New("a fragment (#...) is not allowed")
	}
	authority, path, _ := strings.Cut(rest, "/")
	path = strings.TrimSuffix(path, "/")
	o := &redis.UniversalOptions{}
	hostList := authority
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		hostList = authority[i+1:]
		user, pass, _ := strings.Cut(authority[:i], ":")
		var err error
		if o.Username, err = url.PathUnescape(user); err != nil {
			return nil, errors.New("the user name is not valid percent-encoding")
		}
		if o.Password, err = url.PathUnescape(pass); err != nil {
			return nil, errors.New("the password is not valid percent-encoding")
		}
	}

	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	var unknown []string
	for name, vs := range q {
		if len(vs) > 1 {
			return nil, fmt.Errorf("option %s is given %d times", name, len(vs))
		}
		if !slices.Contains(redisURLOptions, name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, fmt.Errorf("unknown option %s (known: %s)", strings.Join(unknown, ", "), strings.Join(redisURLOptions, ", "))
	}
	if q.Has("cluster") {
		on, err := strconv.ParseBool(q.Get("cluster"))
		switch {
		case err != nil:
			return nil, fmt.Errorf("option cluster=%q: want true or false", q.Get("cluster"))
		case on && kind != urlSingle:
			return nil, fmt.Errorf("option cluster=true is for redis:// and rediss:// URLs, not %s://", scheme)
		case on:
			kind = urlCluster
		}
	}
	switch {
	case q.Has("max_redirects") && kind != urlCluster:
		return nil, errors.New("option max_redirects is for a cluster only")
	case q.Has("skip_verify") && !sch.tls:
		return nil, errors.New("option skip_verify is for TLS (rediss) URLs only")
	case q.Has("sentinel_username") && kind != urlSentinel:
		return nil, errors.New("option sentinel_username is for redis-sentinel:// URLs only")
	case q.Has("sentinel_password") && kind != urlSentinel:
		return nil, errors.New("option sentinel_password is for redis-sentinel:// URLs only")
	}

	defaultPort := "6379"
	if kind == urlSentinel {
		defaultPort = "26379"
	}
	if hostList == "" {
		return nil, errors.New("no host")
	}
	for _, h := range strings.Split(hostList, ",") {
		addr, err := parseHostPort(h, defaultPort)
		if err != nil {
			return nil, err
		}
		if slices.Contains(o.Addrs, addr) {
			return nil, fmt.Errorf("host %q is listed twice", addr)
		}
		o.Addrs = append(o.Addrs, addr)
	}
	if kind == urlSingle && len(o.Addrs) > 1 {
		return nil, fmt.Errorf("%d hosts in a %s:// URL: add ?cluster=true (or use redis+cluster://) for a cluster's seed nodes, or use redis-sentinel://.../master-name for sentinels", len(o.Addrs), scheme)
	}

	// The path: a sentinel's master, else a database.
	dbFromPath := false
	if kind == urlSentinel {
		name, err := url.PathUnescape(path)
		if err != nil || name == "" || strings.Contains(name, "/") {
			return nil, errors.New("want the master's name as the path, as in redis-sentinel://host:26379/mymaster")
		}
		o.MasterName = name
	} else if path != "" {
		if o.DB, err = strconv.Atoi(path); err != nil || o.DB < 0 {
			return nil, fmt.Errorf("path %q: want a database number, as in /0", "/"+path)
		}
		dbFromPath = true
	}
	if kind == urlCluster {
		o.IsClusterMode = true
		if db, err := strconv.Atoi(cmp.Or(q.Get("db"), "0")); o.DB != 0 {
			return nil, fmt.Errorf("database %d: a cluster has only database 0", o.DB)
		} else if err != nil || db != 0 {
			return nil, fmt.Errorf("database %s: a cluster has only database 0", q.Get("db"))
		}
	}

	pathDB := o.DB
	if err := parseRedisOptions(o, kind, q); err != nil {
		return nil, err
	}
	if dbFromPath && o.DB != pathDB {
		return nil, fmt.Errorf("database %d in the path and db=%d in the query", pathDB, o.DB)
	}
	// The ranges go-redis does not check.
	const positive, atLeast = "a positive duration such as 500ms or 2s", "a whole number of at least "
	for _, r := range []struct {
		name string
		ok   bool
		want string
	}{
		{"db", o.DB >= 0, "a database number"},
		{"dial_timeout", o.DialTimeout > 0, positive}, // go-redis: none at all
		{"read_timeout", o.ReadTimeout > 0, positive},
		{"write_timeout", o.WriteTimeout > 0, positive},
		{"pool_timeout", o.PoolTimeout > 0, positive},
		{"pool_size", o.PoolSize >= 1, atLeast + "1"},
		{"min_idle_conns", o.MinIdleConns >= 0, atLeast + "0"},
		{"max_retries", o.MaxRetries >= -1, atLeast + "-1"},
		{"dialer_retries", o.DialerRetries >= 1, atLeast + "1"},
		{"max_redirects", o.MaxRedirects >= -1, atLeast + "-1"},
		{"protocol", o.Protocol == 2 || o.Protocol == 3, "2 or 3"},
	} {
		if q.Has(r.name) && !r.ok {
			return nil, fmt.Errorf("option %s=%q: want %s", r.name, q.Get(r.name), r.want)
		}
	}

	if sch.tls {
		skipVerify := false
		if q.Has("skip_verify") {
			if skipVerify, err = strconv.ParseBool(q.Get("skip_verify")); err != nil {
				return nil, fmt.Errorf("option skip_verify=%q: want true or false", q.Get("skip_verify"))
			}
		}
		// ServerName stays empty: it is taken from each node's address.
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: skipVerify} //nolint:gosec // only on request
	}
	o.SentinelUsername, o.SentinelPassword = q.Get("sentinel_username"), q.Get("sentinel_password")
	applyRedisDefaults(o)
	return o, nil
}

// parseRedisOptions has go-redis read the options in q into o: the parser
// of kind (redis.ParseURL, ParseClusterURL or ParseFailoverURL) reads them
// from a URL of its own form, which holds no credentials (o has them), so
// that its errors, which may repeat it, cannot either. o's DB is the
// path's, which db= in q overrides.
//
// The rest is pushgate's, in parseRedisURL: its schemes and host lists,
// the credentials (ParseFailoverURL's user info is the sentinels'), the
// path as a master's name, TLS (go-redis's cluster parser has no
// skip_verify, and all three pin the server name to the first host, which
// the other nodes of a cluster or a sentinel's master do not answer to),
// dialer_retries for one server (ParseURL does not read it), the ranges
// (go-redis takes a duration of 0 or less as no timeout at all), the
// refusal of an option given twice (go-redis takes the last), and the
// defaults.
func parseRedisOptions(o *redis.UniversalOptions, kind redisURLKind, q url.Values) error {
	gq := url.Values{}
	for name, vs := range q {
		switch {
		case name == "cluster" || name == "skip_verify" || name == "sentinel_username" || name == "sentinel_password":
		case name == "db" && kind == urlCluster: // checked: 0
		case name == "dialer_retries" && kind == urlSingle: // redis.ParseURL does not read it
			n, err := strconv.Atoi(vs[0])
			if err != nil {
				return fmt.Errorf("invalid dialer_retries number: %w", err)
			}
			o.DialerRetries = n
		default:
			gq[name] = vs
		}
	}
	u := (&url.URL{Scheme: "redis", Host: o.Addrs[0], Path: "/" + strconv.Itoa(o.DB), RawQuery: gq.Encode()}).String()
	switch kind {
	case urlSingle:
		r, err := redis.ParseURL(u)
		if err != nil {
			return err
		}
		o.DB, o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = r.DB, r.DialTimeout, r.ReadTimeout, r.WriteTimeout, r.PoolTimeout
		o.PoolSize, o.MinIdleConns, o.MaxRetries, o.ClientName, o.Protocol = r.PoolSize, r.MinIdleConns, r.MaxRetries, r.ClientName, r.Protocol
	case urlCluster:
		r, err := redis.ParseClusterURL(u)
		if err != nil {
			return err
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = r.DialTimeout, r.ReadTimeout, r.WriteTimeout, r.PoolTimeout
		o.PoolSize, o.MinIdleConns, o.MaxRetries, o.ClientName, o.Protocol = r.PoolSize, r.MinIdleConns, r.MaxRetries, r.ClientName, r.Protocol
		o.DialerRetries, o.MaxRedirects = r.DialerRetries, r.MaxRedirects
	case urlSentinel:
		r, err := redis.ParseFailoverURL(u)
		if err != nil {
			return err
		}
		o.DB, o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = r.DB, r.DialTimeout, r.ReadTimeout, r.WriteTimeout, r.PoolTimeout
		o.PoolSize, o.MinIdleConns, o.MaxRetries, o.ClientName, o.Protocol = r.PoolSize, r.MinIdleConns, r.MaxRetries, r.ClientName, r.Protocol
		o.DialerRetries = r.DialerRetries
	}
	return nil
}

// applyRedisDefaults fills what the URL left unset.
func applyRedisDefaults(o *redis.UniversalOptions) {
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultRedisDialTimeout
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = DefaultRedisReadTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultRedisWriteTimeout
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = DefaultRedisMaxRetries
	}
	if o.DialerRetries == 0 {
		o.DialerRetries = DefaultRedisDialerRetries
	}
	o.MinRetryBackoff = DefaultRedisMinRetryBackoff
	o.MaxRetryBackoff = DefaultRedisMaxRetryBackoff
	o.ContextTimeoutEnabled = true
}

func parseHostPort(h, defaultPort string) (string, error) {
	if h == "" {
		return "", errors.New("empty host in the host list")
	}
	host, port := h, defaultPort
	if strings.HasPrefix(h, "[") || strings.Count(h, ":") == 1 {
		var err error
		if host, port, err = net.SplitHostPort(h); err != nil {
			if !strings.HasPrefix(h, "[") || !strings.HasSuffix(h, "]") {
				return "", fmt.Errorf("host %q: %v", h, err)
			}
			host, port = strings.Trim(h, "[]"), defaultPort
		}
	} else if strings.Contains(h, ":") {
		return "", fmt.Errorf("host %q: an IPv6 address must be in brackets, as in [::1]:6379", h)
	}
	if host == "" {
		return "", fmt.Errorf("host %q has no host name", h)
	}
	if strings.ContainsAny(host, " \t/\\@") {
		return "", fmt.Errorf("host %q: invalid host name", h)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("host %q: port %q is not a number in 1..65535", h, port)
	}
	return net.JoinHostPort(host, port), nil
}

// redactRedisURL hides the passwords of a Redis URL (for errors and logs):
// the user info's and a sentinel_password option's.
func redactRedisURL(s string) string {
	if i := strings.Index(s, "sentinel_password="); i >= 0 {
		end := strings.IndexAny(s[i:], "&#")
		if end < 0 {
			end = len(s) - i
		}
		s = s[:i] + "sentinel_password=xxxxx" + s[i+end:]
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	end := len(rest)
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		end = i
	}
	at := strings.LastIndexByte(rest[:end], '@')
	if at < 0 {
		return s
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return s
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}

// DescribeRedis says, for a log line, what options from ParseRedisURL
// connect to, without credentials: "redis 10.0.0.5:6379 db 0",
// "cluster seeds [a:6379 b:6379]" or "sentinel master mymaster via [a:26379 b:26379] db 0".
func DescribeRedis(o *redis.UniversalOptions) string {
	tlsNote := ""
	if o.TLSConfig != nil {
		tlsNote = " (TLS)"
	}
	switch {
	case o.MasterName != "":
		return fmt.Sprintf("sentinel master %s via %v db %d%s", o.MasterName, o.Addrs, o.DB, tlsNote)
	case o.IsClusterMode || len(o.Addrs) > 1:
		return fmt.Sprintf("cluster seeds %v%s", o.Addrs, tlsNote)
	default:
		addr := "127.0.0.1:6379"
		if len(o.Addrs) > 0 {
			addr = o.Addrs[0]
		}
		return fmt.Sprintf("redis %s db %d%s", addr, o.DB, tlsNote)
	}
}
