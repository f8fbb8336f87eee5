package server

import "github.com/pushgate/pushgate/pubsub"

// A stream opened with a subscriber token lasts no longer than the token:
// when the verifier stops accepting it (exp plus the leeway), the client is
// told, with what it needs to resume, and the stream ends.
//
//   - WebSocket: the connection is closed with access.CloseTokenExpired ("token
//     expired"); its subscriptions end without complete. graphql-ws clients
//     retry on that code and call connectionParams again, so they come
//     back with a fresh token.
//   - SSE (GET /events): the last block is "event: expired" with data
//     {"reason":"token expired","cursor":"<cursor>"}; the client reconnects
//     with a fresh token and that cursor.
//   - graphql-sse: the operation gets a last result whose error has code
//     UNAUTHENTICATED, then completes.
//   - Long-poll: a poll is short; one whose token expires during its hold
//     answers normally, and the next poll needs a fresh token.
//
// API keys do not expire, so their streams are not bounded
// (access.Auth.UntilTokenExpires).

// appendExpiredEvent appends the SSE block that ends a stream whose token
// expired.
func appendExpiredEvent(b []byte, cursor pubsub.Cursor) []byte {
	b = append(b, "event: expired\ndata: {\"reason\":\"token expired\",\"cursor\":\""...)
	b, _ = cursor.AppendText(b)
	return append(b, "\"}\n\n"...)
}

// graphqlSSEExpired is the result sent before complete when the token
// expired.
const graphqlSSEExpired = "event: next\ndata: " +
	`{"errors":[{"message":"the token has expired","extensions":{"code":"UNAUTHENTICATED"}}]}` + "\n\n"
