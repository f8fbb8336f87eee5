package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
)

// TestSSEEndsOnServerShutdown: an SSE stream outlives its request's
// handler; http.Server.Shutdown alone ends it cleanly (the chunked body's
// end, then EOF), and Streams sees it closed.
func TestSSEEndsOnServerShutdown(t *testing.T) {
	streams := new(server.Streams)
	cfg := anonConfig()
	cfg.Streams = streams
	ts := httptest.NewServer(server.New(cfg, memoryBroker(t, pubsub.Options{}), zerolog.New(io.Discard)))
	t.Cleanup(ts.Close)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, eventsURL(ts.URL, []string{"down"}, nil), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var first [1]byte
	if _, err := io.ReadFull(res.Body, first[:]); err != nil { // the start block is out: the stream is set up
		t.Fatal(err)
	}
	if err := ts.Config.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		t.Fatalf("the stream did not end cleanly: %v", err)
	}
	if err := streams.Wait(ctx); err != nil {
		t.Fatalf("Streams still counts the stream: %v", err)
	}
}
