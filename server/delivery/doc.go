// Package delivery is the one pipe between a subscription and a client's
// connection: a Stream owns a pubsub.Subscription, a Conn and its turn at
// the server's Writers, and a transport (SSE, a WebSocket feed) supplies
// only its Encoder (how an event, a heartbeat and an end are framed) and
// its handshake.
//
// It owns, for every streaming transport at once:
//   - write scheduling: one Writers per server, on at most half the Go
//     processors, coalescing up to maxCoalesce events per write and
//     delaying a stream written to more than once per writeDelay;
//   - the connection: Socket (a hijacked connection: direct write(2) to
//     the descriptor, cork/uncork, a congested socket finished on a
//     goroutine of its own, the MSG_PEEK wait for readability), and the
//     Conn interface a second implementation (http.ResponseController,
//     where a response cannot be hijacked) plugs into;
//   - write timeouts and slow-client drops (SlowClient), the end of a
//     stream and why (End, Finish: the encoder's end frame, e.g. on token
//     expiry), shutdown (Shutdowns, ErrShutdown), the accounting of
//     delivered messages (observe.Stream);
//   - which requests are streams (KindOf).
//
// Contract: nothing outside delivery touches a file descriptor or a
// socket option; a transport writes to its connection only through its
// Stream (Send, Finish) or, for messages of its own protocol, through the
// Socket's Write, Cork and Uncork. delivery knows no wire format (that is
// the Encoder's), no GraphQL, no credentials and no limits: a token's
// expiry or a shutdown reaches it as a context its caller ends, and the
// caller names the end (Expired, Shutdown). It imports only pubsub and
// observe.
//
// Performance: the write path allocates nothing per event (buffers are
// pooled, an idle stream holds none) and makes one interface call per
// write batch to its Conn and one per event to its Encoder. Figures are in
// the commit messages that changed it (go test -bench ./server/).
package delivery
