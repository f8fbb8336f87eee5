package pubsub_test

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushgate/pushgate/pubsub"
)

func TestParseRedisURL(t *testing.T) {
	type want struct {
		addrs                  string // comma-separated
		db                     int
		cluster                bool
		master                 string
		user, pass             string
		sentinelUser, sentPass string
		tls, skipVerify        bool
		dial, read, write      time.Duration
		poolSize, maxRetries   int
		maxRedirects           int
		clientName             string
		protocol               int
	}
	defaults := func(w want) want {
		if w.dial == 0 {
			w.dial = pubsub.DefaultRedisDialTimeout
		}
		if w.read == 0 {
			w.read = pubsub.DefaultRedisReadTimeout
		}
		if w.write == 0 {
			w.write = pubsub.DefaultRedisWriteTimeout
		}
		if w.maxRetries == 0 {
			w.maxRetries = pubsub.DefaultRedisMaxRetries
		}
		return w
	}
	tests := []struct {
		name string
		url  string
		want want
		kind string // what redis.NewUniversalClient makes: single, cluster or sentinel
	}{
		{"host only", "redis://localhost", want{addrs: "localhost:6379"}, "single"},
		{"host, port, db", "redis://10.0.0.5:6380/2", want{addrs: "10.0.0.5:6380", db: 2}, "single"},
		{"trailing slash", "redis://h:1/", want{addrs: "h:1"}, "single"},
		{"db in the query", "redis://h:1?db=3", want{addrs: "h:1", db: 3}, "single"},
		{"password only", "redis://:s3cret@h:1/0", want{addrs: "h:1", pass: "s3cret"}, "single"},
		{"user and password", "redis://app:p%40ss%2Fw@h:1", want{addrs: "h:1", user: "app", pass: "p@ss/w"}, "single"},
		{"ipv6", "redis://[::1]:7000", want{addrs: "[::1]:7000"}, "single"},
		{"ipv6 without port", "redis://[::1]", want{addrs: "[::1]:6379"}, "single"},
		{"tls", "rediss://h:6380", want{addrs: "h:6380", tls: true}, "single"},
		{"tls skip verify", "rediss://h?skip_verify=true", want{addrs: "h:6379", tls: true, skipVerify: true}, "single"},
		{"timeouts and pool", "redis://h?dial_timeout=3&read_timeout=500ms&write_timeout=2s&pool_size=50&max_retries=-1&client_name=pg&protocol=2",
			want{addrs: "h:6379", dial: 3 * time.Second, read: 500 * time.Millisecond, write: 2 * time.Second, poolSize: 50, maxRetries: -1, clientName: "pg", protocol: 2}, "single"},
		{"cluster scheme", "redis+cluster://a:7000,b:7001,c:7002", want{addrs: "a:7000,b:7001,c:7002", cluster: true}, "cluster"},
		{"cluster one seed", "redis+cluster://a:7000", want{addrs: "a:7000", cluster: true}, "cluster"},
		{"cluster tls with auth", "rediss+cluster://u:p@a:7000,b:7001?max_redirects=5", want{addrs: "a:7000,b:7001", cluster: true, tls: true, user: "u", pass: "p", maxRedirects: 5}, "cluster"},
		{"cluster=true", "redis://a:7000,b:7001?cluster=true", want{addrs: "a:7000,b:7001", cluster: true}, "cluster"},
		{"cluster=true one host", "redis://a:7000?cluster=true", want{addrs: "a:7000", cluster: true}, "cluster"},
		{"cluster db 0", "redis+cluster://a:7000/0", want{addrs: "a:7000", cluster: true}, "cluster"},
		{"cluster=false", "redis://a:7000?cluster=false", want{addrs: "a:7000"}, "single"},
		{"sentinel", "redis-sentinel://s1:26379,s2:26380,s3/mymaster", want{addrs: "s1:26379,s2:26380,s3:26379", master: "mymaster"}, "sentinel"},
		{"sentinel db and password", "redis-sentinel://:pw@s1,s2/mymaster?db=4", want{addrs: "s1:26379,s2:26379", master: "mymaster", pass: "pw", db: 4}, "sentinel"},
		{"sentinel own auth", "redis-sentinel://s1/m?sentinel_username=su&sentinel_password=sp", want{addrs: "s1:26379", master: "m", sentinelUser: "su", sentPass: "sp"}, "sentinel"},
		{"sentinel tls", "rediss-sentinel://s1:1/m/", want{addrs: "s1:1", master: "m", tls: true}, "sentinel"},
		{"sentinel plus", "redis+sentinel://s1:1/m", want{addrs: "s1:1", master: "m"}, "sentinel"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := pubsub.ParseRedisURL(tc.url)
			if err != nil {
				t.Fatalf("ParseRedisURL(%q): %v", tc.url, err)
			}
			w := defaults(tc.want)
			got := want{
				addrs: strings.Join(o.Addrs, ","), db: o.DB, cluster: o.IsClusterMode, master: o.MasterName,
				user: o.Username, pass: o.Password, sentinelUser: o.SentinelUsername, sentPass: o.SentinelPassword,
				tls: o.TLSConfig != nil, skipVerify: o.TLSConfig != nil && o.TLSConfig.InsecureSkipVerify,
				dial: o.DialTimeout, read: o.ReadTimeout, write: o.WriteTimeout,
				poolSize: o.PoolSize, maxRetries: o.MaxRetries, maxRedirects: o.MaxRedirects,
				clientName: o.ClientName, protocol: o.Protocol,
			}
			if got != w {
				t.Fatalf("options = %+v\nwant      %+v", got, w)
			}
			if !o.ContextTimeoutEnabled || o.DialerRetries != pubsub.DefaultRedisDialerRetries {
				t.Fatalf("ContextTimeoutEnabled %v, DialerRetries %d", o.ContextTimeoutEnabled, o.DialerRetries)
			}
			c := redis.NewUniversalClient(o)
			defer c.Close()
			kind := "single"
			switch c := c.(type) {
			case *redis.ClusterClient:
				kind = "cluster"
			case *redis.Client:
				if c.Options().Addr == "FailoverClient" {
					kind = "sentinel"
				}
			}
			if kind != tc.kind {
				t.Fatalf("NewUniversalClient made a %s client, want %s", kind, tc.kind)
			}
		})
	}
}

func TestParseRedisURLErrors(t *testing.T) {
	tests := []struct {
		url  string
		want string // in the error
	}{
		{"", "no scheme"},
		{"localhost:6379", "no scheme"},
		{"http://h", `unknown scheme "http"`},
		{"redis://", "no host"},
		{"redis://:pw@", "no host"},
		{"redis://h:abc", `port "abc"`},
		{"redis://h:0", `port "0"`},
		{"redis://h:70000", `port "70000"`},
		{"redis://::1", "brackets"},
		{"redis://a:1,b:2", "2 hosts in a redis:// URL: add ?cluster=true"},
		{"redis://a:1,,b:2?cluster=true", "empty host"},
		{"redis://a:1,a:1?cluster=true", "listed twice"},
		{"redis://h/x", `path "/x": want a database number`},
		{"redis://h/-1", "want a database number"},
		{"redis://h/1?db=2", "database 1 in the path and db=2"},
		{"redis+cluster://a:1/1", "a cluster has only database 0"},
		{"redis://a:1?cluster=maybe", `cluster="maybe"`},
		{"redis-sentinel://s1?cluster=true", "cluster=true is for redis:// and rediss://"},
		{"redis-sentinel://s1:26379", "want the master's name"},
		{"redis-sentinel://s1/a/b", "want the master's name"},
		{"redis://h?read_timeout=soon", `invalid read_timeout duration`}, // go-redis's words
		{"redis://h?dial_timeout=-1s", "dial_timeout"},
		{"redis://h?pool_size=0", `pool_size="0"`},
		{"redis://h?max_retries=x", "max_retries"},
		{"redis://h?max_redirects=2", "max_redirects is for a cluster only"},
		{"redis://h?protocol=4", "protocol=\"4\""},
		{"redis://h?skip_verify=true", "skip_verify is for TLS"},
		{"redis://h?sentinel_password=x", "sentinel_password is for redis-sentinel"},
		{"redis://h?db=1&db=2", "db is given 2 times"},
		{"redis://h?bogus=1&other=2", "unknown option bogus, other"},
		{"redis://h#frag", "fragment"},
		{"redis://:%zz@h", "password is not valid percent-encoding"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			_, err := pubsub.ParseRedisURL(tc.url)
			if err == nil {
				t.Fatalf("ParseRedisURL(%q) succeeded, want an error with %q", tc.url, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseRedisURL(%q) = %v, want an error with %q", tc.url, err, tc.want)
			}
		})
	}
}

// TestParseRedisURLHidesPassword: an error repeats the URL without its
// password, and DescribeRedis names the target without credentials.
func TestParseRedisURLHidesPassword(t *testing.T) {
	_, err := pubsub.ParseRedisURL("redis://app:topsecret@h:1/x")
	if err == nil || strings.Contains(err.Error(), "topsecret") || !strings.Contains(err.Error(), "redis://app:xxxxx@h:1/x") {
		t.Fatalf("error %v: want the URL with the password hidden", err)
	}
	_, err = pubsub.ParseRedisURL("redis-sentinel://s1/m?sentinel_password=alsosecret&bogus=1")
	if err == nil || strings.Contains(err.Error(), "alsosecret") {
		t.Fatalf("error %v: want the sentinel password hidden", err)
	}
	for url, want := range map[string]string{
		"redis://:pw@h:1/2":                  "redis h:1 db 2",
		"rediss+cluster://:pw@a:1,b:2":       "cluster seeds [a:1 b:2] (TLS)",
		"redis-sentinel://:pw@s:1/main?db=1": "sentinel master main via [s:1] db 1",
	} {
		o, err := pubsub.ParseRedisURL(url)
		if err != nil {
			t.Fatal(err)
		}
		if got := pubsub.DescribeRedis(o); got != want {
			t.Fatalf("DescribeRedis(%s) = %q, want %q", url, got, want)
		}
	}
}

// TestParseRedisURLBeyondGoRedis: what pushgate adds to go-redis's parsers
// holds. TLS leaves the server name to each node's address (go-redis pins
// it to the first host, which a cluster's other nodes and a sentinel's
// master do not answer to) and takes skip_verify for a cluster too;
// dialer_retries works for one server (redis.ParseURL does not read it);
// go-redis's other options, some of which break pushgate or panic, are
// refused.
func TestParseRedisURLBeyondGoRedis(t *testing.T) {
	for _, u := range []string{"rediss://h:1", "rediss+cluster://a:1,b:2?skip_verify=true", "rediss-sentinel://s1,s2/m?skip_verify=true"} {
		o, err := pubsub.ParseRedisURL(u)
		if err != nil {
			t.Fatal(err)
		}
		if c := o.TLSConfig; c == nil || c.ServerName != "" || c.MinVersion != tls.VersionTLS12 || c.InsecureSkipVerify != strings.Contains(u, "skip_verify") {
			t.Fatalf("%s: TLS config %+v", u, c)
		}
	}
	for u, want := range map[string]int{"redis://h?dialer_retries=3": 3, "redis+cluster://a?dialer_retries=4": 4, "redis-sentinel://s/m?dialer_retries=5": 5} {
		o, err := pubsub.ParseRedisURL(u)
		if err != nil || o.DialerRetries != want {
			t.Fatalf("%s: DialerRetries %v, %v; want %d", u, o, err, want)
		}
	}
	for _, u := range []string{
		"redis+cluster://a?read_only=true", "redis+cluster://a?route_randomly=true", "redis-sentinel://s/m?route_by_latency=true",
		"redis-sentinel://s/m?replica_only=true", "redis-sentinel://s/m?context_timeout_enabled=false", "redis://h?min_retry_backoff=1s",
		"redis-sentinel://s/m?master_name=other", "redis-sentinel://s/m?password=x", "redis+cluster://a?addr=b:1",
	} {
		if _, err := pubsub.ParseRedisURL(u); err == nil || !strings.Contains(err.Error(), "unknown option") {
			t.Fatalf("%s: %v, want unknown option", u, err)
		}
	}
}
