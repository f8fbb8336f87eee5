package server_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/pushclient"
	"github.com/pushgate/pushgate/pubsub"
)

// TestConnectionChurnLeaksNothing: after 10,000 connect/disconnect cycles
// over SSE, WebSocket and long-poll (some while messages flow), goroutines
// and heap return to their baseline.
func TestConnectionChurnLeaksNothing(t *testing.T) {
	b := memoryBroker(t, pubsub.Options{})
	e := startEnv(t, anonConfig(), b)
	u, _ := url.Parse(e.url)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Messages flow on the churned channels throughout.
	var pubs sync.WaitGroup
	pubs.Add(1)
	go func() {
		defer pubs.Done()
		for i := 0; ctx.Err() == nil; i++ {
			_, _ = b.Publish(ctx, pubsub.PublishRequest{Channel: fmt.Sprintf("churn:%d", i%8), Data: []byte(`{"x":1}`)})
			time.Sleep(time.Millisecond)
		}
	}()

	cycle := func(i int) error {
		ch := fmt.Sprintf("churn:%d", i%8)
		switch i % 10 {
		case 0: // WebSocket: connect, init, subscribe, leave
			s, err := pushclient.OpenWS(ctx, e.url, []string{ch}, "", "")
			if err != nil {
				return err
			}
			return s.Close()
		case 1: // long-poll without and with a cursor
			r, err := pushclient.PollOnce(ctx, e.url, []string{ch}, "", "", 0)
			if err != nil {
				return err
			}
			_, err = pushclient.PollOnce(ctx, e.url, []string{ch}, r.Cursor, "", 0)
			return err
		default: // SSE on a raw connection, dropped right after the start
			return rawSSEStart(u.Host, ch)
		}
	}
	warm := func(n int) {
		for i := 0; i < n; i++ {
			if err := cycle(i); err != nil {
				t.Fatal(err)
			}
		}
	}
	warm(100) // pools, buffers and the transport's idle connections settle
	baseG, baseHeap := settle()

	const total = 10000
	runCycles(t, 1, total, 4, cycle)

	backToBaseline(t, total, baseG, baseHeap, 8<<20)
	cancel()
	pubs.Wait()
}

// runCycles runs cycle(i) for i from from to to on workers goroutines, and
// fails the test with the first error.
func runCycles(t *testing.T, from, to, workers int, cycle func(i int) error) {
	t.Helper()
	var next atomic.Int64
	next.Store(int64(from - 1))
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)); i <= to; i = int(next.Add(1)) {
				if err := cycle(i); err != nil {
					errs <- fmt.Errorf("cycle %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// backToBaseline waits until, after cycles connect/disconnect cycles, the
// goroutines are back to baseG (give or take the few of idle keep-alive
// connections) and the heap in use within margin of baseHeap; it fails the
// test, with every goroutine's stack, after 30 s.
func backToBaseline(t *testing.T, cycles, baseG int, baseHeap, margin uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		g, heap := settle()
		if g <= baseG+4 && heap < baseHeap+margin {
			t.Logf("after %d cycles: %d goroutines (baseline %d), heap in use %d KiB (baseline %d KiB)", cycles, g, baseG, heap>>10, baseHeap>>10)
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("after %d cycles: %d goroutines (baseline %d), heap %d KiB (baseline %d KiB)\n%s",
				cycles, g, baseG, heap>>10, baseHeap>>10, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settle collects garbage and returns the goroutines and the heap in use.
func settle() (goroutines int, heapInuse uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms.HeapInuse
}

// rawSSEStart opens GET /events for ch on a raw connection, waits for the
// stream's start block and drops the connection.
func rawSSEStart(host, ch string) error {
	conn, err := net.Dial("tcp", host)
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /events?channel=%s HTTP/1.1\r\nHost: %s\r\n\r\n", ch, host)
	_ = conn.SetReadDeadline(time.Now().Add(waitTimeout))
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.HasPrefix(line, "id: ") {
			return nil
		}
	}
}
