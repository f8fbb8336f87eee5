package server_test

import (
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
)

// TestWebSocketOperationIDBound: an operation id over 128 bytes is refused
// as the protocol says, and holds nothing: graphql-transport-ws closes with
// 4400; graphql-ws answers an error (BAD_USER_INPUT) for it and the
// connection goes on, its one operation slot (the limit is 1 here) free
// for the next. An id of exactly 128 bytes is served on both.
func TestWebSocketOperationIDBound(t *testing.T) {
	cfg := anonConfig()
	cfg.Limits.MaxSubscriptionsPerConnection = 1
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	long := strings.Repeat("i", server.MaxOperationIDLength+1)
	ok := strings.Repeat("k", server.MaxOperationIDLength)

	t.Run(transportWS, func(t *testing.T) {
		c := e.dialWS(t, transportWS, "", nil)
		c.init(nil)
		c.subscribe(long, []string{"ids"}, "")
		err := c.waitClosed()
		if ce, isClose := err.(*websocket.CloseError); !isClose || ce.Code != 4400 || !strings.Contains(ce.Text, "at most 128 bytes") {
			t.Fatalf("connection ended with %v, want close 4400", err)
		}
		c = e.dialWS(t, transportWS, "", nil)
		c.init(nil)
		c.subscribe(ok, []string{"ids"}, "")
		waitSubscribed(t, e, c, ok, "ids")
	})
	t.Run(legacyWS, func(t *testing.T) {
		c := e.dialWS(t, legacyWS, "", nil)
		c.init(nil)
		c.subscribe(long, []string{"ids"}, "")
		if code := c.errorCode(long); code != "BAD_USER_INPUT" {
			t.Fatalf("long id: %s", code)
		}
		c.subscribe(ok, []string{"ids"}, "")
		waitSubscribed(t, e, c, ok, "ids")
	})
}
