package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestKeepAlive: a sender's connection carries its calls one after the
// other, reads each answer whole, dials again after an answer with
// Connection: close, and gives up a call when its context ends.
func TestKeepAlive(t *testing.T) {
	var conns, calls atomic.Int64
	block := make(chan struct{})
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer k" || r.URL.Path != "/graphql" {
			http.Error(w, "bad request line or headers", http.StatusBadRequest)
			return
		}
		if string(body) == "block" {
			<-block
			return
		}
		if n := calls.Add(1); n%3 == 0 {
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write(bytes.Repeat(body, 1000)) // longer than one read
	}))
	startCountingConns(ts, &conns)
	defer ts.Close()
	defer close(block)

	var d net.Dialer
	k := newKeepAlive(d.DialContext, ts.Listener.Addr().String(), "/graphql", "k", 10*time.Second)
	defer k.close()
	ctx := context.Background()
	var out bytes.Buffer
	for i := range 9 {
		body := []byte("call-" + strconv.Itoa(i))
		status, err := k.post(ctx, body, &out)
		if err != nil || status != http.StatusAccepted || !bytes.Equal(out.Bytes(), bytes.Repeat(body, 1000)) {
			t.Fatalf("call %d: status %d, %d bytes, %v", i, status, out.Len(), err)
		}
	}
	// Calls 3, 6 and 9 were answered with Connection: close.
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections for 9 calls, want 3", n)
	}

	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		_, err := k.post(cctx, []byte("block"), &out)
		errc <- err
	}()
	for conns.Load() < 4 { // the blocking call is on its way
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled call: %v", err)
	}
}

// startCountingConns starts ts counting the connections it accepts in n.
func startCountingConns(ts *httptest.Server, n *atomic.Int64) {
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	ts.Start()
}
