// Package pushclient is a small pushgate client for tests and tools: one
// Stream interface over the three ways to subscribe (WebSocket with
// graphql-transport-ws, SSE, long-poll), each resumable by cursor, and a
// sender for the send mutation. It speaks only the public protocol.
package pushclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Message is a message as every transport delivers it.
type Message struct {
	Channel   string          `json:"channel"`
	ID        string          `json:"id"`
	Event     string          `json:"event,omitempty"`
	Data      json.RawMessage `json:"data"`
	CreatedAt string          `json:"createdAt"`
}

// Offset is the message id as a number.
func (m *Message) Offset() uint64 {
	n, _ := strconv.ParseUint(m.ID, 10, 64)
	return n
}

// Reset is a feed reset.
type Reset struct {
	Channel string `json:"channel"`
	Reason  string `json:"reason"`
	Cursor  string `json:"cursor"`
}

// Event is one Message or Reset and the cursor that resumes after it.
type Event struct {
	Message *Message
	Reset   *Reset
	Cursor  string
}

// Stream is one subscription's events. Next blocks until an event, the end
// of the stream (an error) or ctx.
type Stream interface {
	Next(ctx context.Context) (Event, error)
	Close() error
}

// Transport names how to subscribe.
type Transport string

// The transports.
const (
	WebSocket Transport = "ws"
	SSE       Transport = "sse"
	Poll      Transport = "poll"
)

// Open subscribes to channels on the server at base (http://host:port) over
// t, resuming after cursor ("" for live), with token ("" for none).
func Open(ctx context.Context, t Transport, base string, channels []string, cursor, token string) (Stream, error) {
	switch t {
	case WebSocket:
		return OpenWS(ctx, base, channels, cursor, token)
	case SSE:
		return OpenSSE(ctx, base, channels, cursor, token)
	case Poll:
		return &poller{base: base, channels: channels, cursor: cursor, token: token, timeout: 5}, nil
	}
	return nil, fmt.Errorf("unknown transport %q", t)
}

// ---- SSE ----

type sseStream struct {
	res  *http.Response
	r    *bufio.Reader
	stop context.CancelFunc
}

// OpenSSE opens GET /events.
func OpenSSE(ctx context.Context, base string, channels []string, cursor, token string) (Stream, error) {
	q := url.Values{"channel": channels}
	if token != "" {
		q.Set("token", token)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events?"+q.Encode(), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	if cursor != "" {
		req.Header.Set("Last-Event-ID", cursor)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		return nil, fmt.Errorf("GET /events: %s %s", res.Status, bytes.TrimSpace(body))
	}
	return &sseStream{res: res, r: bufio.NewReader(res.Body), stop: cancel}, nil
}

func (s *sseStream) Next(ctx context.Context) (Event, error) {
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, s.stop)
		defer stop()
	}
	var id, event string
	var data []string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return Event{}, fmt.Errorf("sse: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if data == nil {
				continue // the id-only start block, or a heartbeat
			}
			ev := Event{Cursor: id}
			raw := []byte(strings.Join(data, "\n"))
			if event == "reset" {
				ev.Reset = new(Reset)
				err = json.Unmarshal(raw, ev.Reset)
			} else if event == "" {
				ev.Message = new(Message)
				err = json.Unmarshal(raw, ev.Message)
			} else {
				return Event{}, fmt.Errorf("sse: event %s: %s", event, raw)
			}
			if err != nil {
				return Event{}, fmt.Errorf("sse: data %q: %w", raw, err)
			}
			return ev, nil
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "event":
			event = value
		case "data":
			data = append(data, value)
		}
	}
}

func (s *sseStream) Close() error {
	s.stop()
	return s.res.Body.Close()
}

// ---- long-poll ----

type poller struct {
	base, token, cursor string
	channels            []string
	timeout             int
	queue               []Event
}

// PollResponse is the answer of GET /poll.
type PollResponse struct {
	Messages []Message `json:"messages"`
	Cursor   string    `json:"cursor"`
	Reset    *Reset    `json:"reset"`
}

// PollOnce runs one GET /poll.
func PollOnce(ctx context.Context, base string, channels []string, cursor, token string, timeout int) (PollResponse, error) {
	q := url.Values{"channel": channels, "timeout": {strconv.Itoa(timeout)}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if token != "" {
		q.Set("token", token)
	}
	var out PollResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/poll?"+q.Encode(), nil)
	if err != nil {
		return out, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return out, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return out, err
	}
	if res.StatusCode != http.StatusOK {
		return out, fmt.Errorf("GET /poll: %s %s", res.Status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return out, fmt.Errorf("GET /poll: %q: %w", body, err)
	}
	return out, nil
}

func (p *poller) Next(ctx context.Context) (Event, error) {
	for len(p.queue) == 0 {
		if err := ctx.Err(); err != nil {
			return Event{}, err
		}
		r, err := PollOnce(ctx, p.base, p.channels, p.cursor, p.token, p.timeout)
		if err != nil {
			return Event{}, err
		}
		if p.cursor == "" {
			p.cursor = r.Cursor // the start position
			continue
		}
		// Each event carries the answer's cursor only on the last one: a
		// client that stops in the middle of an answer resumes from the
		// start of it (at-least-once), so the earlier events carry the
		// cursor the poll started from.
		prev := p.cursor
		if r.Reset != nil {
			p.queue = append(p.queue, Event{Reset: r.Reset, Cursor: prev})
		}
		for i := range r.Messages {
			p.queue = append(p.queue, Event{Message: &r.Messages[i], Cursor: prev})
		}
		if n := len(p.queue); n > 0 {
			p.queue[n-1].Cursor = r.Cursor
		}
		p.cursor = r.Cursor
	}
	ev := p.queue[0]
	p.queue = p.queue[1:]
	return ev, nil
}

func (p *poller) Close() error { return nil }

// ---- WebSocket (graphql-transport-ws) ----

type wsStream struct {
	conn *websocket.Conn
	wmu  sync.Mutex
	msgs chan wsMsg
	done chan struct{}
	err  error
}

type wsMsg struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// FeedQuery is the feed subscription every WebSocket stream runs.
const FeedQuery = `subscription($channels: [String!]!, $cursor: String) {
  feed(channels: $channels, cursor: $cursor) {
    __typename
    ... on Message { channel id event data createdAt cursor }
    ... on Reset { channel reason cursor }
  }
}`

// OpenWS connects with graphql-transport-ws and starts the feed.
func OpenWS(ctx context.Context, base string, channels []string, cursor, token string) (Stream, error) {
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 10 * time.Second}
	conn, res, err := d.DialContext(ctx, "ws"+strings.TrimPrefix(base, "http")+"/graphql", nil)
	if err != nil {
		return nil, err
	}
	res.Body.Close()
	s := &wsStream{conn: conn, msgs: make(chan wsMsg, 256), done: make(chan struct{})}
	init, _ := json.Marshal(map[string]string{"token": token})
	if err := s.write(wsMsg{Type: "connection_init", Payload: init}); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ack wsMsg
	if err := conn.ReadJSON(&ack); err != nil || ack.Type != "connection_ack" {
		conn.Close()
		return nil, fmt.Errorf("ws: no connection_ack (%+v, %v)", ack, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	vars := map[string]any{"channels": channels}
	if cursor != "" {
		vars["cursor"] = cursor
	}
	payload, _ := json.Marshal(map[string]any{"query": FeedQuery, "variables": vars})
	if err := s.write(wsMsg{Type: "subscribe", ID: "1", Payload: payload}); err != nil {
		conn.Close()
		return nil, err
	}
	go s.readLoop()
	return s, nil
}

func (s *wsStream) write(m wsMsg) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return s.conn.WriteJSON(m)
}

func (s *wsStream) readLoop() {
	defer close(s.done)
	for {
		var m wsMsg
		if err := s.conn.ReadJSON(&m); err != nil {
			s.err = err
			return
		}
		switch m.Type {
		case "ping":
			_ = s.write(wsMsg{Type: "pong"})
		case "pong":
		default:
			s.msgs <- m
		}
	}
}

func (s *wsStream) Next(ctx context.Context) (Event, error) {
	var m wsMsg
	select {
	case m = <-s.msgs:
	case <-s.done:
		select {
		case m = <-s.msgs:
		default:
			return Event{}, fmt.Errorf("ws: %w", s.err)
		}
	case <-ctx.Done():
		return Event{}, ctx.Err()
	}
	if m.Type != "next" {
		return Event{}, fmt.Errorf("ws: %s %s", m.Type, m.Payload)
	}
	var p struct {
		Data struct {
			Feed struct {
				Typename string `json:"__typename"`
				Message
				Reason string `json:"reason"`
				Cursor string `json:"cursor"`
			} `json:"feed"`
		} `json:"data"`
		Errors json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return Event{}, fmt.Errorf("ws: %s: %w", m.Payload, err)
	}
	if len(p.Errors) > 0 {
		return Event{}, fmt.Errorf("ws: errors %s", p.Errors)
	}
	f := p.Data.Feed
	ev := Event{Cursor: f.Cursor}
	if f.Typename == "Reset" {
		ev.Reset = &Reset{Channel: f.Channel, Reason: f.Reason, Cursor: f.Cursor}
	} else {
		msg := f.Message
		ev.Message = &msg
	}
	return ev, nil
}

func (s *wsStream) Close() error { return s.conn.Close() }

// ---- sending ----

// Sender sends messages with an API key.
type Sender struct {
	Key    string
	Client *http.Client
}

// ErrNotSent is returned when the server answered with a GraphQL error: the
// message was not appended.
var ErrNotSent = errors.New("not sent")

// Send sends data to channel on the server at base with an idempotency key
// ("" for none) and returns the message id.
func (s *Sender) Send(ctx context.Context, base, channel string, data any, idempotencyKey string) (string, error) {
	in := map[string]any{"channel": channel, "data": data}
	if idempotencyKey != "" {
		in["idempotencyKey"] = idempotencyKey
	}
	body, _ := json.Marshal(map[string]any{
		"query":     `mutation($in: SendInput!) { send(input: $in) { message { id } } }`,
		"variables": map[string]any{"in": in},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/graphql", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.Key)
	c := s.Client
	if c == nil {
		c = http.DefaultClient
	}
	res, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var out struct {
		Data *struct {
			Send struct {
				Message struct{ ID string }
			}
		}
		Errors []struct {
			Message    string
			Extensions struct{ Code string }
		}
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("send: status %s: %w", res.Status, err)
	}
	if len(out.Errors) > 0 {
		return "", fmt.Errorf("%w: %s: %s", ErrNotSent, out.Errors[0].Extensions.Code, out.Errors[0].Message)
	}
	if out.Data == nil {
		// Not a GraphQL answer: a node still waiting for its store
		// answers 503 with a plain error body.
		return "", fmt.Errorf("send: status %s without data", res.Status)
	}
	return out.Data.Send.Message.ID, nil
}
