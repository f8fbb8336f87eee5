package main

import (
	"io"
	"testing"
)

// TestRedisURLFromEnvironment: PUSHGATE_REDIS_URL selects the Redis store
// like --redis-url (TestParseConfig covers the flag), and the flag wins.
func TestRedisURLFromEnvironment(t *testing.T) {
	env := map[string]string{"PUSHGATE_REDIS_URL": "redis://:pw@localhost:6390/3"}
	got, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got.RedisURL != env["PUSHGATE_REDIS_URL"] || got.Redis == nil || len(got.Redis.Addrs) != 1 ||
		got.Redis.Addrs[0] != "localhost:6390" || got.Redis.DB != 3 || got.Redis.Password != "pw" {
		t.Fatalf("from the environment: url %q, redis options %+v", got.RedisURL, got.Redis)
	}
	got, err = parseConfig([]string{"--redis-url", "redis://localhost:6391/1"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got.Redis == nil || got.Redis.Addrs[0] != "localhost:6391" || got.Redis.DB != 1 {
		t.Fatalf("the flag did not win: %+v", got.Redis)
	}
}
