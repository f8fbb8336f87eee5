package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/pubsub"
)

// memoryBound is what one request or one connection may make the server
// allocate, with the limits at their defaults.
const memoryBound = 64 << 20

// allocated returns the bytes the process allocated while f ran
// (runtime/metrics /gc/heap/allocs:bytes, which counts every allocation,
// freed or not).
func allocated(f func()) uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	runtime.GC()
	metrics.Read(s)
	before := s[0].Value.Uint64()
	f()
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

// drain reads r to its end through a small buffer (the client allocates
// next to nothing) and returns how many bytes it held and its first 512.
func drain(t *testing.T, r io.Reader) (int64, string) {
	t.Helper()
	var head [512]byte
	n, _ := io.ReadFull(r, head[:])
	rest, err := io.CopyBuffer(io.Discard, r, make([]byte, 32<<10))
	if err != nil {
		t.Fatal(err)
	}
	return int64(n) + rest, string(head[:n])
}

// TestMemoryBoundPerRequest: with the limits at their defaults and a
// channel filled to its default retention with messages near the default
// size limit (1000 of 60 KB: 60 MB), a single request makes the server
// allocate no more than 64 MiB (measured in-process around the request,
// the client reading through a small buffer): the largest history request
// the complexity limit allows (four aliases of last: 1000 with id and
// data), refused by the response ceiling as its first page is read, and
// the 20 aliases, the largest page the ceiling serves (250
// messages, 15 MB: about 44 MiB on the memory store, 60 MiB on Redis,
// which reads the page from the store on top) and a long-poll of 1000
// messages (answered 16 MB: about 31 MiB on the memory store, 49 MiB on
// Redis), on both stores; a graphql-sse feed catching up the whole channel
// allocates with what it delivers (60 MB here), which no per-connection
// bound can cap: logged. The race detector's runtime allocates on its own
// account (sync.Pool drops a quarter of what it is given): under -race the
// figures are logged, not asserted; `go test -run TestMemoryBound
// ./server/` asserts them.
func TestMemoryBoundPerRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a channel with 60 MB")
	}
	for _, be := range []struct {
		name string
		new  func(t *testing.T, opts pubsub.Options) pubsub.Broker
	}{{"memory", memoryBroker}, {"redis", fastRedisBroker}} {
		t.Run(be.name, func(t *testing.T) {
			b := be.new(t, pubsub.Options{})
			e := startEnv(t, anonConfig(), b)
			item, _ := json.Marshal(strings.Repeat("m", 60_000))
			var first pubsub.Message
			for i := range 1000 {
				r, err := b.Publish(context.Background(), pubsub.PublishRequest{Channel: "full", Data: item})
				if err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					first = r.Message
				}
			}
			start := pubsub.NewCursor(map[string]pubsub.Position{"full": {Epoch: first.Epoch}}).String()
			page := `history(channel: "full", last: 1000) { nodes { id data } }` // 2002
			post := func(t *testing.T, accept string, body any) (int64, string) {
				raw, _ := json.Marshal(body)
				req, _ := http.NewRequest(http.MethodPost, e.url+"/graphql", bytes.NewReader(raw))
				req.Header.Set("Content-Type", "application/json")
				if accept != "" {
					req.Header.Set("Accept", accept)
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				if accept == "" {
					return drain(t, res.Body)
				}
				// graphql-sse: read until the 1000th event, then go.
				var got int64
				buf := make([]byte, 32<<10)
				events := 0
				for events < 1000 {
					n, err := res.Body.Read(buf)
					got += int64(n)
					events += bytes.Count(buf[:n], []byte("event: next"))
					if err != nil {
						t.Fatalf("graphql-sse after %d events: %v", events, err)
					}
				}
				return got, ""
			}
			t.Run("a WebSocket with 100 operations of 128-byte ids", func(t *testing.T) {
				n := allocated(func() {
					c := e.dialWS(t, transportWS, "", nil)
					c.init(nil)
					for i := range 99 {
						c.subscribe(fmt.Sprintf("%0128d", i), []string{"full"}, "")
					}
					// The 100th probes on "ws": "full" keeps its 1000 messages.
					probe := fmt.Sprintf("p%0127d", 0)
					c.subscribe(probe, []string{"ws"}, "")
					waitSubscribed(t, e, c, probe, "ws")
					_ = c.conn.Close()
					<-c.done
				})
				t.Logf("a WebSocket with 100 operations: %.1f MiB allocated", float64(n)/(1<<20))
				if n > memoryBound && !raceEnabled {
					t.Fatalf("%.1f MiB allocated, over the bound of %d MiB", float64(n)/(1<<20), memoryBound>>20)
				}
			})
			for _, tc := range []struct {
				name string
				run  func(t *testing.T) (int64, string)
				want string // in the answer's first bytes
				// bounded: the bound is asserted on this store
				bounded func(store string) bool
			}{
				{"four aliases of last: 1000, refused", func(t *testing.T) (int64, string) {
					return post(t, "", map[string]any{"query": aliases(4, page)}) // 4 x 2002: within 10000
				}, "RESPONSE_TOO_LARGE", everyStore},
				{"20 aliases, refused", func(t *testing.T) (int64, string) {
					return post(t, "", map[string]any{"query": aliases(20, `history(channel: "full", last: 1000) { nodes { data } }`)})
				}, "BAD_USER_INPUT", everyStore},
				{"the largest page served", func(t *testing.T) (int64, string) {
					return post(t, "", map[string]any{"query": `{ history(channel: "full", last: 250) { nodes { id data } } }`})
				}, `{"data":{"history":{"nodes":[{"id":"751"`, everyStore},
				{"long-poll of 1000", func(t *testing.T) (int64, string) {
					res, err := http.Get(e.url + "/poll?channel=full&timeout=0&limit=1000&cursor=" + start)
					if err != nil {
						t.Fatal(err)
					}
					defer res.Body.Close()
					return drain(t, res.Body)
				}, `{"messages":[{"channel":"full","id":"1"`, everyStore},
				{"graphql-sse catching up 1000", func(t *testing.T) (int64, string) {
					return post(t, "text/event-stream", map[string]any{"query": feedQuery,
						"variables": map[string]any{"channels": []string{"full"}, "cursor": start}})
				}, "", noStore},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var size int64
					var head string
					n := allocated(func() { size, head = tc.run(t) })
					t.Logf("%s: %d bytes answered, %.1f MiB allocated", tc.name, size, float64(n)/(1<<20))
					if !strings.Contains(head, tc.want) {
						t.Fatalf("answer %.300s, want %s", head, tc.want)
					}
					if tc.bounded(be.name) && n > memoryBound && !raceEnabled {
						t.Fatalf("%.1f MiB allocated, over the bound of %d MiB", float64(n)/(1<<20), memoryBound>>20)
					}
				})
			}
		})
	}
}

func everyStore(string) bool        { return true }
func memoryStore(store string) bool { return store == "memory" }
func noStore(string) bool           { return false }

// fastRedisBroker is redisBroker without the append-only file: filling a
// channel with 60 MB is the test's set-up, not its subject.
func fastRedisBroker(t *testing.T, opts pubsub.Options) pubsub.Broker {
	t.Helper()
	srv := redistest.Start(t, redistest.WithArgs("--appendonly", "no"))
	ropts, err := pubsub.ParseRedisURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewUniversalClient(ropts)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	b, err := pubsub.NewRedis(ctx, client, pubsub.RedisOptions{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.Close()
		_ = client.Close()
	})
	return b
}
