package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/limits"
)

var benchPayload = json.RawMessage(`{"type":"order.updated","id":"a1b2c3d4","status":"shipped","items":3,"total":12999}`)

func benchServer(b *testing.B) (pubsub.Broker, string) {
	br := pubsub.NewMemory(pubsub.Options{QueueSize: 1024})
	// Every subscriber connects from one IP, at once.
	cfg := server.Config{AllowAnonymous: true, Limits: limits.Limits{
		MaxConnectionsPerIP: -1, ConnectRatePerIP: limits.Rate{PerSecond: -1}}}
	ts := httptest.NewServer(server.New(cfg, br, zerolog.New(io.Discard)))
	b.Cleanup(func() { ts.Close(); _ = br.Close() })
	return br, ts.URL
}

// BenchmarkSSEFanout: one channel, many SSE subscribers over loopback; the
// server encodes and writes, each client counts events. Reported per
// delivery (one message to one subscriber), end to end.
func BenchmarkSSEFanout(b *testing.B) {
	for _, subs := range []int{100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			br, base := benchServer(b)
			u, _ := url.Parse(base)
			var ready, done sync.WaitGroup
			for i := 0; i < subs; i++ {
				conn, err := net.Dial("tcp", u.Host)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { conn.Close() })
				fmt.Fprintf(conn, "GET /events?channel=bench HTTP/1.1\r\nHost: %s\r\n\r\n", u.Host)
				ready.Add(1)
				done.Add(1)
				go func() {
					defer done.Done()
					r := bufio.NewReaderSize(conn, 64<<10)
					started := false
					for got := 0; got < b.N; {
						line, err := r.ReadSlice('\n')
						if err != nil {
							if !started {
								ready.Done()
							}
							return
						}
						if !started && bytes.HasPrefix(line, []byte("id: ")) {
							started = true
							ready.Done()
						}
						if bytes.HasPrefix(line, []byte("data: ")) {
							got++
						}
					}
				}()
			}
			ready.Wait()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := br.Publish(context.Background(), pubsub.PublishRequest{Channel: "bench", Data: benchPayload}); err != nil {
					b.Fatal(err)
				}
			}
			done.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subs), "ns/delivery")
		})
	}
}

// BenchmarkPoll: long-polls that each collect a retained backlog of 100
// messages, over HTTP keep-alive.
func BenchmarkPoll(b *testing.B) {
	br, base := benchServer(b)
	start := ""
	for i := 0; i < 100; i++ {
		r, err := br.Publish(context.Background(), pubsub.PublishRequest{Channel: "poll", Data: benchPayload})
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			start = pubsub.NewCursor(map[string]pubsub.Position{"poll": {Epoch: r.Message.Epoch}}).String()
		}
	}
	u := base + "/poll?" + url.Values{"channel": {"poll"}, "cursor": {start}, "limit": {"100"}}.Encode()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := http.Get(u)
			if err != nil {
				b.Error(err)
				return
			}
			var out struct{ Messages []json.RawMessage }
			err = json.NewDecoder(res.Body).Decode(&out)
			res.Body.Close()
			if err != nil || len(out.Messages) != 100 {
				b.Errorf("poll: %d messages, %v", len(out.Messages), err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "messages/s")
}

// BenchmarkSend: the send mutation over HTTP keep-alive, parallel clients,
// memory store: the whole path of a backend's send.
func BenchmarkSend(b *testing.B) {
	br := pubsub.NewMemory(pubsub.Options{})
	cfg := server.Config{APIKeys: []access.APIKey{{Name: "bench", Secret: "benchkey"}},
		Limits: limits.Limits{SendRatePerKey: limits.Rate{PerSecond: -1}, ConnectRatePerIP: limits.Rate{PerSecond: -1}}}
	ts := httptest.NewServer(server.New(cfg, br, zerolog.New(io.Discard)))
	b.Cleanup(func() { ts.Close(); _ = br.Close() })
	body := []byte(`{"query":"mutation($in: SendInput!) { send(input: $in) { message { id } } }","variables":{"in":{"channel":"bench","data":` + string(benchPayload) + `}}}`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, ts.URL+"/graphql", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer benchkey")
			res, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
}

// BenchmarkSendHandler: the send mutation through the whole handler chain
// (middleware, routing, the send fast path, the memory store), in process,
// without the network: pushgate's own share of a send's CPU and garbage.
func BenchmarkSendHandler(b *testing.B) {
	br := pubsub.NewMemory(pubsub.Options{})
	b.Cleanup(func() { _ = br.Close() })
	cfg := server.Config{APIKeys: []access.APIKey{{Name: "bench", Secret: "benchkey"}},
		Limits: limits.Limits{SendRatePerKey: limits.Rate{PerSecond: -1}, ConnectRatePerIP: limits.Rate{PerSecond: -1}}}
	h := server.New(cfg, br, zerolog.New(io.Discard))
	body := []byte(`{"query":"mutation($in: SendInput!) { send(input: $in) { message { id } } }","variables":{"in":{"channel":"bench","data":` + string(benchPayload) + `}}}`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		rd := bytes.NewReader(body)
		req := httptest.NewRequest(http.MethodPost, "/graphql", rd)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer benchkey")
		req.RemoteAddr = "127.0.0.1:40000"
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			rd.Reset(body)
			r := *req
			r.Body = io.NopCloser(rd)
			clear(w.h)
			w.status = 0
			h.ServeHTTP(w, &r)
			if w.status != http.StatusOK {
				b.Errorf("status %d", w.status)
				return
			}
		}
	})
}

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(p), nil
}
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
