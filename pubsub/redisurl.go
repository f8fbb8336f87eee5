package pubsub

import (
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

func parseRedisURL(s string) (*redis.UniversalOptions, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return nil, errors.New("no scheme: want redis://, rediss://, redis+cluster://, rediss+cluster://, redis-sentinel:// or rediss-sentinel://")
	}
	var kind redisURLKind
	var useTLS bool
	switch strings.ToLower(scheme) {
	case "redis":
	case "rediss":
		useTLS = true
	case "redis+cluster":
		kind = urlCluster
	case "rediss+cluster":
		kind, useTLS = urlCluster, true
	case "redis-sentinel", "redis+sentinel":
		kind = urlSentinel
	case "rediss-sentinel", "rediss+sentinel":
		kind, useTLS = urlSentinel, true
	default:
		return nil, fmt.Errorf("unknown scheme %q: want redis, rediss, redis+cluster, rediss+cluster, redis-sentinel or rediss-sentinel", scheme)
	}

	rawQuery := ""
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest, rawQuery = rest[:i], rest[i+1:]
	}
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		return nil, errors.New("a fragment (#...) is not allowed")
	}
	authority, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i+1:]
	}
	hostList := authority
	o := &redis.UniversalOptions{}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		userinfo := authority[:i]
		hostList = authority[i+1:]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		var err error
		if o.Username, err = url.PathUnescape(user); err != nil {
			return nil, errors.New("the user name is not valid percent-encoding")
		}
		if hasPass {
			if o.Password, err = url.PathUnescape(pass); err != nil {
				return nil, errors.New("the password is not valid percent-encoding")
			}
		}
	}

	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	opt := queryReader{q: q}
	if v, ok := opt.take("cluster"); ok {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("option cluster=%q: want true or false", v)
		}
		if on {
			if kind != urlSingle {
				return nil, fmt.Errorf("option cluster=true is for redis:// and rediss:// URLs, not %s://", scheme)
			}
			kind = urlCluster
		}
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

	dbFromPath := false
	switch kind {
	case urlSentinel:
		name, err := url.PathUnescape(strings.TrimSuffix(path, "/"))
		if err != nil || name == "" || strings.Contains(name, "/") {
			return nil, errors.New("want the master's name as the path, as in redis-sentinel://host:26379/mymaster")
		}
		o.MasterName = name
	default:
		if p := strings.TrimSuffix(path, "/"); p != "" {
			db, err := strconv.Atoi(p)
			if err != nil || db < 0 {
				return nil, fmt.Errorf("path %q: want a database number, as in /0", "/"+path)
			}
			o.DB, dbFromPath = db, true
		}
	}
	if v, ok := opt.take("db"); ok {
		db, err := strconv.Atoi(v)
		if err != nil || db < 0 {
			return nil, fmt.Errorf("option db=%q: want a database number", v)
		}
		if dbFromPath && db != o.DB {
			return nil, fmt.Errorf("database %d in the path and db=%d in the query", o.DB, db)
		}
		o.DB = db
	}
	if kind == urlCluster {
		if o.DB != 0 {
			return nil, fmt.Errorf("database %d: a cluster has only database 0", o.DB)
		}
		o.IsClusterMode = true
	}

	o.DialTimeout = opt.duration("dial_timeout")
	o.ReadTimeout = opt.duration("read_timeout")
	o.WriteTimeout = opt.duration("write_timeout")
	o.PoolTimeout = opt.duration("pool_timeout")
	o.PoolSize = opt.int("pool_size", 1)
	o.MinIdleConns = opt.int("min_idle_conns", 0)
	o.MaxRetries = opt.int("max_retries", -1)
	o.DialerRetries = opt.int("dialer_retries", 1)
	if _, ok := opt.q["max_redirects"]; ok && kind != urlCluster {
		return nil, errors.New("option max_redirects is for a cluster only")
	}
	o.MaxRedirects = opt.int("max_redirects", -1)
	o.ClientName, _ = opt.take("client_name")
	if v, ok := opt.take("protocol"); ok {
		switch v {
		case "2", "3":
			o.Protocol, _ = strconv.Atoi(v)
		default:
			opt.fail(fmt.Errorf("option protocol=%q: want 2 or 3", v))
		}
	}
	skipVerify := false
	if v, ok := opt.take("skip_verify"); ok {
		if !useTLS {
			opt.fail(errors.New("option skip_verify is for TLS (rediss) URLs only"))
		} else if skipVerify, err = strconv.ParseBool(v); err != nil {
			opt.fail(fmt.Errorf("option skip_verify=%q: want true or false", v))
		}
	}
	for _, name := range []string{"sentinel_username", "sentinel_password"} {
		v, ok := opt.take(name)
		if !ok {
			continue
		}
		if kind != urlSentinel {
			opt.fail(fmt.Errorf("option %s is for redis-sentinel:// URLs only", name))
		}
		if name == "sentinel_username" {
			o.SentinelUsername = v
		} else {
			o.SentinelPassword = v
		}
	}
	if opt.err != nil {
		return nil, opt.err
	}
	if len(opt.q) > 0 {
		unknown := make([]string, 0, len(opt.q))
		for k := range opt.q {
			unknown = append(unknown, k)
		}
		slices.Sort(unknown)
		return nil, fmt.Errorf("unknown option %s (known: db, cluster, dial_timeout, read_timeout, write_timeout, pool_timeout, pool_size, min_idle_conns, max_retries, dialer_retries, max_redirects, client_name, protocol, skip_verify, sentinel_username, sentinel_password)", strings.Join(unknown, ", "))
	}

	if useTLS {
		// ServerName stays empty: it is taken from each node's address.
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: skipVerify} //nolint:gosec // only on request
	}
	applyRedisDefaults(o)
	return o, nil
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

// queryReader takes options out of a query, so that what is left is
// unknown; the first error sticks.
type queryReader struct {
	q   url.Values
	err error
}

func (r *queryReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *queryReader) take(name string) (string, bool) {
	vs, ok := r.q[name]
	if !ok {
		return "", false
	}
	delete(r.q, name)
	if len(vs) != 1 {
		r.fail(fmt.Errorf("option %s is given %d times", name, len(vs)))
		return "", false
	}
	return vs[0], true
}

func (r *queryReader) duration(name string) time.Duration {
	v, ok := r.take(name)
	if !ok {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.fail(fmt.Errorf("option %s=%q: want a positive duration such as 500ms or 2s", name, v))
		return 0
	}
	return d
}

// int reads a whole number of at least min (-1 is go-redis's "none").
func (r *queryReader) int(name string, min int) int {
	v, ok := r.take(name)
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		r.fail(fmt.Errorf("option %s=%q: want a whole number of at least %d", name, v, min))
		return 0
	}
	return n
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
