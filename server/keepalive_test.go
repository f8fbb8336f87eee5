package server_test

import (
	"testing"
	"time"

	"github.com/pushgate/pushgate/pubsub"
)

// TestWebSocketPingPong: on graphql-transport-ws the server pings every
// PingInterval; a client that answers with pong stays connected and keeps
// receiving, one that never answers is disconnected after about two
// intervals. Legacy graphql-ws clients get "ka" keep-alives instead.
func TestWebSocketPingPong(t *testing.T) {
	const interval = 100 * time.Millisecond
	cfg := testConfig()
	cfg.PingInterval = interval
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	const ch = "ka"

	// Answers pings (wsClient's read loop sends pong for every ping).
	polite := e.dialWS(t, transportWS, "", nil)
	polite.init(map[string]any{"token": testKey})
	polite.subscribe("1", []string{ch}, e.cursor(t, ch))

	// Reads everything, answers nothing.
	mute, err := e.tryDialWS(transportWS, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mute.conn.Close() })
	if err := mute.conn.WriteJSON(wsMsg{Type: "connection_init", Payload: []byte(`{"token":"` + testKey + `"}`)}); err != nil {
		t.Fatal(err)
	}
	muteStart := time.Now()
	pings := 0
	var muteErr error
	for deadline := time.Now().Add(waitTimeout); ; {
		_ = mute.conn.SetReadDeadline(deadline)
		var m wsMsg
		if muteErr = mute.conn.ReadJSON(&m); muteErr != nil {
			break
		}
		if m.Type == "ping" {
			pings++
		}
	}
	lived := time.Since(muteStart)
	if pings == 0 || lived >= waitTimeout-time.Second {
		t.Fatalf("a client that never answers pings: %d pings, still open after %v (%v)", pings, lived, muteErr)
	}
	t.Logf("silent client got %d pings and was closed after %v: %v", pings, lived.Round(time.Millisecond), muteErr)

	// The polite client outlives many intervals and is still served.
	select {
	case <-polite.done:
		t.Fatalf("polite client closed: %v", polite.err)
	case <-time.After(10 * interval):
	}
	sent := e.send(t, ch, "still here")
	if ev := polite.event("1"); ev.ID != sent.ID {
		t.Fatalf("polite client got %+v after %v, want %s", ev, lived, sent.ID)
	}
	select {
	case <-polite.done:
		t.Fatalf("polite client closed: %v", polite.err)
	default:
	}

	// Legacy graphql-ws: "ka" messages while idle.
	legacy, err := e.tryDialWS(legacyWS, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { legacy.conn.Close() })
	if err := legacy.conn.WriteJSON(wsMsg{Type: "connection_init", Payload: []byte(`{"token":"` + testKey + `"}`)}); err != nil {
		t.Fatal(err)
	}
	kas := 0
	_ = legacy.conn.SetReadDeadline(time.Now().Add(waitTimeout))
	for kas < 3 {
		var m wsMsg
		if err := legacy.conn.ReadJSON(&m); err != nil {
			t.Fatalf("legacy client after %d keep-alives: %v", kas, err)
		}
		if m.Type == "ka" {
			kas++
		}
	}
}
