package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/internal/loopback"
	"github.com/pushgate/pushgate/server/delivery"
)

// TestWSNothingAfterClose: once the close frame is next (closeWrites), a
// message is refused and nothing reaches the socket; before, a message goes
// out as one unmasked text frame.
func TestWSNothingAfterClose(t *testing.T) {
	raw, client := loopback.TCPPair(t)
	c := &wsConn{dconn: delivery.NewSocket(raw, time.Minute)}
	if err := c.write([]byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	want := append([]byte{0x81, 15}, `{"type":"ping"}`...)
	got := make([]byte, len(want))
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("frame %q %v, want %q", got, err, want)
	}
	c.closeWrites()
	if err := c.write([]byte(`{"type":"next"}`)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("a message after closeWrites: %v, want net.ErrClosed", err)
	}
	// What reaches the socket next is the close frame, here a marker.
	if _, err := c.dconn.Write([]byte("CLOSE")); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, 5)
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "CLOSE" {
		t.Fatalf("after closeWrites the socket got %q %v", got, err)
	}
}

// TestRequestStateDropsWriter: a request's state, which a stream's
// context keeps after its handler returned (SSE), keeps neither net/http's
// response nor its buffers.
func TestRequestStateDropsWriter(t *testing.T) {
	var ctx context.Context
	h := requestContext(zerolog.Nop(), NewMetrics(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx = r.Context()
		w.WriteHeader(http.StatusAccepted)
		if st := requestOf(ctx); st == nil || st.w.ResponseWriter == nil {
			t.Fatal("no request state while the handler runs")
		}
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/events", nil))
	st := requestOf(ctx)
	if st == nil || st.w.ResponseWriter != nil || st.w.req != nil {
		t.Fatalf("after the handler: %+v", st)
	}
}
