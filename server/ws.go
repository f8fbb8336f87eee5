package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/coder/websocket"
	"github.com/rs/zerolog"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/server/delivery"
	"github.com/pushgate/pushgate/server/limits"
	"github.com/pushgate/pushgate/server/observe"
)

// wsTransport serves GraphQL over WebSocket on /graphql, with both
// graphql-transport-ws and the legacy graphql-ws (subscriptions-transport-ws)
// protocols; the chosen subprotocol is echoed, as wx.connectSocket requires.
//
// Queries, mutations and any operation it cannot encode itself go through
// gqlgen's executor. A feed subscription takes the fast path (wsfeed.go):
// its events are encoded once per selection and message for every
// subscriber, without gqlgen executing the selection per subscriber, and
// each feed is a delivery.Stream, written by the server's writers when its
// subscription queues events: a feed has no goroutine of its own. A connection, once upgraded,
// outlives its handler: one goroutine with a small stack reads it.
//
// Each connection lasts no longer than its token (expiry.go): it is closed
// with access.CloseTokenExpired when the token expires, and with
// CloseServiceRestart when the node shuts down.
type wsTransport struct {
	resolver *graph.Resolver
	auth     *access.Auth
	lim      *limits.Limiter
	metrics  *Metrics
	accept   websocket.AcceptOptions
	// readLimit bounds a client message (a larger one closes with 1009).
	readLimit    int64
	initTimeout  time.Duration
	pingInterval time.Duration
	// writeTimeout bounds every write (delivery.Socket).
	writeTimeout time.Duration
	plans        *feedPlans
	writers      *delivery.Writers // the server's, which write the feeds
	streams      *Streams
	stopping     *delivery.Shutdowns
}

var _ graphql.Transport = (*wsTransport)(nil)

const protoTransportWS = "graphql-transport-ws"

// MaxOperationIDLength bounds a WebSocket operation's id, which the server
// keeps while the operation runs and repeats in each of its messages.
const MaxOperationIDLength = 128

// Close codes of graphql-transport-ws.
const (
	closeBadRequest       = 4400
	closeUnauthorized     = 4401
	closeInitTimeout      = 4408
	closeSubscriberExists = 4409
	closeTooManyInits     = 4429
)

func (t *wsTransport) Supports(r *http.Request) bool { return delivery.KindOf(r) == delivery.Upgrade }

func (t *wsTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	acct := t.metrics.NewWSStream(r)
	// The connection outlives its request: once it is upgraded, the
	// handler returns and the connection is served on a goroutine of its
	// own, which starts with a small stack, and neither the handler's
	// goroutine nor the request are kept. Its context keeps the request's
	// values; it ends when the server shuts down (shutdowns), or with the
	// connection.
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(r.Context()))
	if acct != nil {
		ctx = observe.WithStream(ctx, acct.Stream)
	}
	opts := t.accept
	opts.Subprotocols = []string{protoTransportWS, "graphql-ws"}
	hw := delivery.NewHijacker(w, t.writeTimeout)
	ws, err := websocket.Accept(hw, r, &opts)
	if err != nil || hw.Socket == nil {
		cancel(nil)
		return // Accept answered the request
	}
	var cleanup cleanups
	stopWatch := t.stopping.Watch(r, cancel)
	cleanup.add(func() { stopWatch(); cancel(nil) })
	cleanup.add(limits.KeepStreamSlot(r.Context()))
	cleanup.add(t.streams.open())
	ws.SetReadLimit(t.readLimit)
	c := &wsConn{
		dconn:   hw.Socket,
		br:      hw.Reader,
		t:       t,
		ws:      ws,
		legacy:  ws.Subprotocol() != protoTransportWS,
		exec:    exec,
		acct:    acct,
		req:     ctx,
		ops:     make(map[string]context.CancelFunc),
		feeds:   make(map[*wsFeed]struct{}),
		ended:   make(chan struct{}),
		cleanup: cleanup,
	}
	c.dconn.OnResume(c.resumeFeeds)
	c.waitReadable = c.dconn.WatchReadable()
	if ws.Subprotocol() == "" {
		// Clients that name no subprotocol (a bare WebSocket, some
		// older Apollo setups) get the legacy graphql-ws protocol: said
		// once per connection, at debug, for whoever wonders why their
		// graphql-transport-ws messages are not understood.
		zerolog.Ctx(ctx).Debug().Msg("WebSocket without a subprotocol: served as legacy graphql-ws " +
			"(subscriptions-transport-ws); ask for graphql-transport-ws to get that protocol")
	}
	acct.Accepted(c)
	go c.serve()
}

// wsConn is one WebSocket connection.
type wsConn struct {
	t      *wsTransport
	ws     *websocket.Conn
	legacy bool // graphql-ws (subscriptions-transport-ws), not graphql-transport-ws
	exec   graphql.GraphExecutor
	acct   *observe.WSStream // nil: not accounted
	dconn  *delivery.Socket  // the socket
	req    context.Context   // the upgrade request's: cancelled with ErrShutdown on shutdown
	ended  chan struct{}     // closed once the read loop ended
	// cleanup runs once the read loop ended: what the connection took
	// over from its request.
	cleanup cleanups

	// ctx is the connection's once initialised: it carries the credential
	// of connection_init and ends when the token expires.
	ctx    context.Context
	cancel context.CancelFunc

	// br is the socket's reader; with waitReadable, the read loop waits
	// for the socket to be readable before reading (readLoop). rmu guards
	// br outside the library's reads.
	br           *bufio.Reader
	waitReadable bool
	rmu          sync.Mutex
	// wmu serializes the connection's messages; writesClosed: the close
	// frame is on its way, nothing more is written.
	wmu          sync.Mutex
	writesClosed bool

	mu       sync.Mutex
	ops      map[string]context.CancelFunc
	feeds    map[*wsFeed]struct{} // on the fast path
	closing  bool                 // a close frame is on its way
	lastPong time.Time
}

// Subprotocol and Close let the connection's account close it.
func (c *wsConn) Subprotocol() string { return c.ws.Subprotocol() }

func (c *wsConn) Close() error {
	err := c.ws.CloseNow()
	c.accountEnd()
	return err
}

// accountEnd ends the account of the closed connection.
func (c *wsConn) accountEnd() {
	if c.dconn.TimedOut() {
		// The read loop may see the socket closed before the writer
		// reports why.
		c.acct.SlowClient()
	}
	c.acct.Done()
}

// errBadMessage is a client message that is not a protocol message.
var errBadMessage = errors.New("invalid message")

type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// serve initialises the connection, then reads it on a fresh goroutine:
// the read loop, which an idle connection keeps for as long as it is open,
// starts with a small stack and keeps it (initialisation's work, token
// checks and all, grew this one's).
func (c *wsConn) serve() {
	defer recoverClient(c.req, "websocket init", c.end)
	if !c.init() {
		c.end()
		return
	}
	go c.readLoop()
}

// end ends the connection once its read loop has.
func (c *wsConn) end() {
	close(c.ended)
	c.closeWrites() // the library may have answered a close frame
	c.endOps()
	c.mu.Lock()
	closing := c.closing
	c.closing = true
	c.mu.Unlock()
	if !closing {
		_ = c.Close()
	}
	c.cleanup.run()
}

// readLoop reads the client's messages until the connection ends. The
// loop, which an idle connection keeps for as long as it is open, stays a
// few frames deep: it waits until the socket is readable (waitReadable),
// and the messages are read and handled on a fresh goroutine (onFreshStack),
// whose deeper stack goes with it.
func (c *wsConn) readLoop() {
	defer c.end()
	defer c.cancel()
	defer c.keepAlive()() // stopped before the cancel: an ending read loop closes the connection itself
	defer recoverClient(c.req, "websocket read loop", nil)
	for {
		if c.waitReadable && !c.buffered() {
			if err := c.dconn.WaitReadable(); err != nil {
				c.acct.ReadFailed(err)
				return
			}
		}
		if !c.onFreshStack(c.readMessages) {
			return
		}
	}
}

// readMessages reads and handles client messages as long as the reader
// holds more (one at least); false: the connection ends.
func (c *wsConn) readMessages() bool {
	for {
		_, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.acct.ReadFailed(err)
			return false
		}
		if !c.handle(data) {
			return false
		}
		if !c.waitReadable || !c.buffered() {
			return true
		}
	}
}

// buffered reports whether the connection's reader holds unread bytes.
// rmu keeps it off the reader while the WebSocket library reads the close
// handshake (close).
func (c *wsConn) buffered() bool {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.br.Buffered() > 0
}

// onFreshStack runs f on a goroutine of its own, and waits for it: what
// f's work grows is that goroutine's stack, not the caller's. A panic in f
// (a client message's handling) is recovered and ends the connection
// (false).
func (c *wsConn) onFreshStack(f func() bool) bool {
	done := make(chan bool, 1)
	go func() {
		ok := false
		defer func() { done <- ok }()
		defer recoverClient(c.req, "websocket message", nil)
		ok = f()
	}()
	return <-done
}

// handle handles one client message; false: the connection ends.
func (c *wsConn) handle(data []byte) bool {
	m, err := decodeMessage(data)
	if err != nil {
		c.protocolError("invalid message")
		return false
	}
	switch m.Type {
	case "subscribe", "start":
		if (m.Type == "start") != c.legacy {
			c.protocolError("unexpected message " + m.Type)
			return false
		}
		c.start(m)
	case "complete", "stop":
		if (m.Type == "stop") != c.legacy {
			c.protocolError("unexpected message " + m.Type)
			return false
		}
		c.stop(m.ID)
	case "ping":
		if c.legacy {
			c.protocolError("unexpected message ping")
			return false
		}
		c.writeMsg(wsMessage{Type: "pong", Payload: m.Payload})
	case "pong":
		c.mu.Lock()
		c.lastPong = time.Now()
		c.mu.Unlock()
	case "connection_init":
		if c.legacy {
			c.protocolError("unexpected message connection_init")
		} else {
			c.close(closeTooManyInits, "Too many initialisation requests")
		}
		return false
	case "connection_terminate":
		c.close(websocket.StatusNormalClosure, "terminated")
		return false
	default:
		c.protocolError("unexpected message " + m.Type)
		return false
	}
	return true
}

// read returns the next client message.
func (c *wsConn) read() (wsMessage, error) {
	_, data, err := c.ws.Read(context.Background())
	if err != nil {
		c.acct.ReadFailed(err)
		return wsMessage{}, err
	}
	return decodeMessage(data)
}

// decodeMessage decodes a client message.
func decodeMessage(data []byte) (wsMessage, error) {
	var m wsMessage
	if err := json.Unmarshal(data, &m); err != nil || m.Type == "" {
		return wsMessage{}, errBadMessage
	}
	return m, nil
}

// init waits for connection_init, checks the connection's limits and
// acknowledges it.
func (c *wsConn) init() bool {
	timer := time.AfterFunc(c.t.initTimeout, func() {
		code := closeInitTimeout
		if c.legacy {
			code = int(websocket.StatusProtocolError)
		}
		c.close(websocket.StatusCode(code), "connection initialisation timeout")
	})
	m, err := c.read()
	if !timer.Stop() {
		return false
	}
	if err != nil {
		if errors.Is(err, errBadMessage) {
			c.protocolError("invalid json")
		}
		return false
	}
	switch m.Type {
	case "connection_init":
	case "connection_terminate":
		c.close(websocket.StatusNormalClosure, "terminated")
		return false
	default:
		if !c.legacy && (m.Type == "subscribe") {
			c.close(closeUnauthorized, "Unauthorized")
			return false
		}
		c.protocolError("unexpected message " + m.Type)
		return false
	}
	var payload transport.InitPayload
	if len(m.Payload) > 0 && !bytes.Equal(m.Payload, []byte("null")) {
		if err := json.Unmarshal(m.Payload, &payload); err != nil {
			c.protocolError("the connection_init payload is not a JSON object")
			return false
		}
	}
	ctx := c.req
	if cred := access.InitCredential(payload); cred != "" {
		ctx = access.WithCredential(ctx, cred)
	}
	// The connection counts for its token's subject from here on.
	if err := c.t.lim.WebSocketInit(ctx); err != nil {
		c.connectionError(err.Error())
		c.close(limits.CloseTooManyConnections, err.Error())
		return false
	}
	c.ctx, c.cancel = c.t.auth.UntilTokenExpires(ctx)
	c.mu.Lock()
	c.lastPong = time.Now()
	c.mu.Unlock()
	c.writeMsg(wsMessage{Type: "connection_ack"})
	if c.legacy {
		c.writeMsg(wsMessage{Type: "ka"})
	}
	return true
}

// keepAlive pings (graphql-transport-ws: a client that has not answered
// for two intervals is disconnected) or sends "ka" (graphql-ws), and
// closes the connection when its context ends. It runs on a timer and a
// context callback, not on a goroutine of its own: an idle connection
// costs no stack for it. stop ends both.
func (c *wsConn) keepAlive() (stop func()) {
	stopCtx := context.AfterFunc(c.ctx, c.closeForContext)
	var t *time.Timer
	t = time.AfterFunc(time.Hour, func() {
		defer recoverClient(c.req, "websocket keep-alive", func() { _ = c.ws.CloseNow() })
		if c.ping() {
			t.Reset(c.t.pingInterval)
		}
	})
	t.Reset(c.t.pingInterval) // once t is set: the callback reads it
	return func() {
		stopCtx()
		t.Stop()
	}
}

// ping is one beat of keepAlive; false: the connection is closed.
func (c *wsConn) ping() bool {
	select {
	case <-c.ended:
		return false
	default:
	}
	if c.legacy {
		c.writeMsg(wsMessage{Type: "ka"})
		return true
	}
	c.mu.Lock()
	silent := time.Since(c.lastPong) > 2*c.t.pingInterval
	c.mu.Unlock()
	if silent {
		if c.acct != nil {
			c.acct.Note(observe.End{By: "server", Code: int(websocket.StatusAbnormalClosure), Reason: "no pong"})
		}
		_ = c.ws.CloseNow()
		return false
	}
	c.writeMsg(wsMessage{Type: "ping"})
	return true
}

// legacyExpired tells a legacy graphql-ws client why before the close (the
// graphql-transport-ws protocol has no such message: the code says it).
var legacyExpired = wsMessage{Type: "connection_error",
	Payload: json.RawMessage(`{"message":"the token has expired","extensions":{"code":"UNAUTHENTICATED"}}`)}

// closeForContext closes the connection whose context ended: its token
// expired, the node shuts down, or the request ended.
func (c *wsConn) closeForContext() {
	defer recoverClient(c.req, "websocket close", func() { _ = c.ws.CloseNow() })
	switch {
	case access.TokenExpired(c.ctx):
		if c.legacy {
			c.writeMsg(legacyExpired)
		}
		c.close(access.CloseTokenExpired, "token expired")
	case delivery.ShuttingDown(c.req):
		c.close(CloseServiceRestart, "server restarting: reconnect")
	default:
		c.close(websocket.StatusNormalClosure, "terminated")
	}
}

// close ends every operation and closes the connection with code; the
// closing handshake runs in the background (coder/websocket waits up to 5 s
// for the peer's close frame).
func (c *wsConn) close(code websocket.StatusCode, reason string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.mu.Unlock()
	c.endOps()
	c.acct.Closing(int(code), reason, closeDrop(code))
	c.closeWrites()
	go func() {
		c.rmu.Lock() // Close reads the peer's close frame
		_ = c.ws.Close(code, reason)
		c.rmu.Unlock()
		c.accountEnd()
	}()
}

// closeDrop is why the server dropped a connection it closes with code
// (none: it did not drop it, e.g. a protocol error).
func closeDrop(code websocket.StatusCode) observe.Drop {
	switch code {
	case access.CloseTokenExpired:
		return observe.DropExpired
	case CloseServiceRestart:
		return observe.DropShutdown
	}
	return observe.DropNone
}

// protocolError closes the connection for a message the protocol does not
// allow: 4400 on graphql-transport-ws; a connection_error, then 1002, on
// graphql-ws.
func (c *wsConn) protocolError(msg string) {
	if c.legacy {
		c.connectionError(msg)
		c.close(websocket.StatusProtocolError, msg)
		return
	}
	c.close(closeBadRequest, msg)
}

// connectionError sends graphql-ws's connection_error (graphql-transport-ws
// has none: its close reason says it).
func (c *wsConn) connectionError(msg string) {
	if !c.legacy {
		return
	}
	b, _ := json.Marshal(&gqlerror.Error{Message: msg})
	c.writeMsg(wsMessage{Type: "connection_error", Payload: b})
}

// write sends one text message, as one frame written in one system call.
// pushgate frames its messages itself (a server's frames are neither
// masked nor, without permessage-deflate, compressed): the WebSocket
// library writes only control frames, each in one write, which cannot
// split a frame of ours. No message follows the close frame (close). A
// write that fails closes the connection (delivery.Socket), which ends the
// read loop and every operation.
func (c *wsConn) write(b []byte) error {
	var hdr [10]byte
	h := textFrameHeader(&hdr, len(b))
	c.wmu.Lock()
	var err error
	if c.writesClosed {
		err = net.ErrClosed
	} else {
		c.dconn.Cork()
		if _, err = c.dconn.Write(h); err == nil {
			_, err = c.dconn.Write(b)
		}
		if uerr := c.dconn.Uncork(); err == nil {
			err = uerr
		}
	}
	c.wmu.Unlock()
	return c.writeFailed(err)
}

// writeFailed notes a failed write (nil: none), saying so when the client
// was too slow for it.
func (c *wsConn) writeFailed(err error) error {
	if err != nil && c.dconn.TimedOut() {
		err = fmt.Errorf("%w: %w", os.ErrDeadlineExceeded, err)
		c.acct.SlowClient()
	}
	return err
}

// textFrameHeader returns the header of an unfragmented text frame of n
// bytes from the server (RFC 6455, 5.2).
func textFrameHeader(hdr *[10]byte, n int) []byte {
	hdr[0] = 0x81 // FIN, text
	switch {
	case n <= 125:
		hdr[1] = byte(n)
		return hdr[:2]
	case n <= 0xffff:
		hdr[1] = 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
		return hdr[:4]
	default:
		hdr[1] = 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
		return hdr[:10]
	}
}

// closeWrites refuses every later message: the close frame is next.
func (c *wsConn) closeWrites() {
	c.wmu.Lock()
	c.writesClosed = true
	c.wmu.Unlock()
}

func (c *wsConn) writeMsg(m wsMessage) {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	_ = c.write(b)
}

func (c *wsConn) endOps() {
	c.mu.Lock()
	ops := c.ops
	c.ops = map[string]context.CancelFunc{}
	c.mu.Unlock()
	for _, cancel := range ops {
		cancel()
	}
}

func (c *wsConn) stop(id string) {
	c.mu.Lock()
	cancel := c.ops[id]
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// start runs the operation of a subscribe (start) message: parsed and
// validated here, in order, then run on a goroutine of its own.
func (c *wsConn) start(m wsMessage) {
	if m.ID == "" {
		c.protocolError("an operation needs an id")
		return
	}
	if len(m.ID) > MaxOperationIDLength {
		// Every event of the operation repeats its id: a long one would
		// make each a copy of it (graphql-transport-ws: 4400, the
		// protocol's invalid message; graphql-ws has no such close, so
		// the operation fails and the connection goes on).
		msg := fmt.Sprintf("an operation id is at most %d bytes, got %d", MaxOperationIDLength, len(m.ID))
		if c.legacy {
			c.sendError(m.ID, &gqlerror.Error{Message: msg, Extensions: map[string]any{"code": graph.CodeBadUserInput}})
			return
		}
		c.close(closeBadRequest, msg)
		return
	}
	c.mu.Lock()
	if _, dup := c.ops[m.ID]; dup || c.closing {
		c.mu.Unlock()
		if dup {
			if c.legacy {
				c.sendError(m.ID, &gqlerror.Error{Message: "an operation with id " + m.ID + " is already running"})
			} else {
				c.close(closeSubscriberExists, "Subscriber for "+m.ID+" already exists")
			}
		}
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	c.ops[m.ID] = cancel
	c.mu.Unlock()
	done := func() {
		cancel()
		c.mu.Lock()
		delete(c.ops, m.ID)
		c.mu.Unlock()
	}

	start := graphql.Now()
	params := &graphql.RawParams{}
	dec := json.NewDecoder(bytes.NewReader(m.Payload))
	dec.UseNumber()
	if err := dec.Decode(params); err != nil || bytes.Equal(m.Payload, []byte("null")) {
		c.badPayload(m, err)
		done()
		return
	}
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}
	// params.Headers stays empty: a connection does not keep its upgrade
	// request's headers (nothing in pushgate reads them).
	opCtx := ctx // without the operation: what a feed keeps
	ctx = graphql.StartOperationTrace(ctx)
	rc, errs := c.exec.CreateOperationContext(ctx, params)
	if errs != nil {
		resp := c.exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		if errcode.GetErrorKind(errs) == errcode.KindProtocol {
			c.fail(m.ID, resp.Errors...)
		} else {
			c.sendResponse(m.ID, &graphql.Response{Errors: errs})
			c.complete(m.ID)
		}
		done()
		return
	}
	ctx = graphql.WithOperationContext(ctx, rc)
	if feed := c.t.plans.of(rc); feed != nil {
		go func() {
			defer recoverClient(c.req, "websocket operation", c.closeInternalError)
			if !c.runFeed(opCtx, cancel, m.ID, rc, feed, done) {
				defer done()
				c.dispatch(ctx, m.ID, rc)
			}
		}()
		return
	}
	go func() {
		defer recoverClient(c.req, "websocket operation", c.closeInternalError)
		defer done()
		c.dispatch(ctx, m.ID, rc)
	}()
}

// badPayload refuses a subscribe (start) whose payload is not a GraphQL
// request, an object {query, variables?, operationName?, extensions?}
// (err says why, nil: none or null): graphql-transport-ws closes the
// connection with 4400, the protocol's answer to an invalid message (as
// the graphql-ws server does); the legacy graphql-ws fails the operation
// with a coded error and completes it.
func (c *wsConn) badPayload(m wsMessage, err error) {
	why := "has no payload"
	if typ, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		why = "has a JSON " + typ.Value + " where an object is needed"
		if typ.Field != "" {
			why = "has a JSON " + typ.Value + " as " + typ.Field
		}
	}
	msg := m.Type + " " + why + ": send {query, variables?, operationName?, extensions?}" // under 123 bytes, a close reason's most
	if !c.legacy {
		c.protocolError(msg)
		return
	}
	c.fail(m.ID, &gqlerror.Error{Message: msg, Extensions: map[string]any{"code": graph.CodeBadUserInput}})
}

// dispatch runs an operation through gqlgen's executor.
func (c *wsConn) dispatch(ctx context.Context, id string, rc *graphql.OperationContext) {
	defer func() {
		if r := recover(); r != nil {
			err := rc.Recover(ctx, r)
			var gqlErr *gqlerror.Error
			if !errors.As(err, &gqlErr) {
				gqlErr = &gqlerror.Error{Message: fmt.Sprint(err)}
			}
			c.fail(id, gqlErr) // ends the operation: nothing after it
		}
	}()
	responses, ctx := c.exec.DispatchOperation(ctx, rc)
	for {
		resp := responses(ctx)
		if resp == nil {
			break
		}
		c.sendResponse(id, resp)
	}
	c.completeUnlessClosed(id)
}

// completeUnlessClosed sends complete for id unless the connection is
// going away (a cancelled connection closes the socket: complete would
// signal a normal end).
func (c *wsConn) completeUnlessClosed(id string) {
	if c.ctx.Err() == nil {
		c.complete(id)
	}
}

func (c *wsConn) sendResponse(id string, resp *graphql.Response) {
	b, err := json.Marshal(resp)
	if err != nil {
		panic(err)
	}
	typ := "next"
	if c.legacy {
		typ = "data"
	}
	c.writeMsg(wsMessage{ID: id, Type: typ, Payload: b})
}

func (c *wsConn) sendError(id string, errs ...*gqlerror.Error) {
	b, err := json.Marshal(errs)
	if err != nil {
		panic(err)
	}
	c.writeMsg(wsMessage{ID: id, Type: "error", Payload: b})
}

func (c *wsConn) complete(id string) { c.writeMsg(wsMessage{ID: id, Type: "complete"}) }

// fail ends operation id with errs. In graphql-transport-ws, error is the
// operation's last message: nothing follows it, complete included (the
// protocol: "no further events will be sent after an Error"). The legacy
// graphql-ws completes the operation after its error, as Apollo's
// subscriptions-transport-ws clients expect.
func (c *wsConn) fail(id string, errs ...*gqlerror.Error) {
	c.sendError(id, errs...)
	if c.legacy {
		c.complete(id)
	}
}
