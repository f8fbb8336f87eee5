package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Senders call send (or broadcast) over HTTP keep-alive with the API key.
// The channels are split into groups of -broadcast channels (one channel
// when sending); each call goes to the next group, round-robin over all
// senders. Each sender numbers its calls per group 0, 1, 2, ... and has one
// call in flight at a time, so each (group, sender) stream must arrive in
// order at every subscriber.

const (
	sendMutation      = `mutation($in: SendInput!) { send(input: $in) { message { id } } }`
	broadcastMutation = `mutation($in: BroadcastInput!) { broadcast(input: $in) { messages { id } } }`
)

// sendPlan is what all senders share.
type sendPlan struct {
	addr      string // host:port
	key       string
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	groups    [][]string // channel groups; a call goes to one group
	broadcast bool
	size      int // data bytes to pad to
	run       int64
	next      atomic.Uint64 // round-robin over groups
	// perCall[g] is how many deliveries a successful call to group g owes:
	// the connected subscribers of its channels.
	perCall  []int64
	expected atomic.Int64
	calls    atomic.Int64 // calls made
	ok       atomic.Int64 // calls that succeeded
	messages atomic.Int64 // messages the successful calls appended
	lat      histogram    // call round trips

	mu     sync.Mutex
	errors map[string]int64
}

func (p *sendPlan) countError(kind string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.errors == nil {
		p.errors = make(map[string]int64)
	}
	p.errors[kind]++
}

// sender is one sending goroutine and its ledger.
type sender struct {
	w      int
	plan   *sendPlan
	seq    []int64   // by group: the next sequence
	failed [][]int64 // by group: sequences whose call failed, ascending
	body   []byte
	resp   bytes.Buffer
	conn   *keepAlive

	// The call begun (begin) and not ended yet.
	inflight bool
	g        int
	cur      int64
	start    time.Time
}

func newSender(w int, plan *sendPlan) *sender {
	return &sender{w: w, plan: plan, seq: make([]int64, len(plan.groups)), failed: make([][]int64, len(plan.groups)),
		conn: newKeepAlive(plan.dial, plan.addr, "/graphql", plan.key, 10*time.Second)}
}

// pace sends at rate calls per second (as fast as it can when rate is 0)
// from start until stop: call k is due at start + k/rate, and the sender
// sleeps until the next one is (pacer), so senders started at offsets of
// one call interleave evenly. A rate above 1,000/s is reached by small
// bursts once a millisecond, and a sender that fell behind catches up.
// Calls in flight when stop comes finish (ctx aborts them).
func (s *sender) pace(ctx context.Context, rate float64, start, stop time.Time) {
	defer s.conn.close()
	if rate <= 0 {
		for time.Now().Before(stop) && ctx.Err() == nil {
			s.call(ctx)
		}
		return
	}
	p := pacer{start: start, rate: rate}
	t := time.NewTimer(time.Until(start))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for n := p.due(time.Now()); n > 0 && time.Now().Before(stop) && ctx.Err() == nil; n-- {
			s.call(ctx)
			p.sent++
		}
		now := time.Now()
		if !now.Before(stop) {
			return
		}
		t.Reset(p.next(now).Sub(now))
	}
}

// pacer schedules calls at rate per second: call k (from 0) is due at
// start + k/rate.
type pacer struct {
	start time.Time
	rate  float64
	sent  int64
}

// minTick is the shortest sleep between two bursts of calls.
const minTick = time.Millisecond

// due returns how many calls are due at now and not sent yet.
func (p *pacer) due(now time.Time) int64 {
	if now.Before(p.start) {
		return 0
	}
	return max(0, int64(now.Sub(p.start).Seconds()*p.rate)+1-p.sent)
}

// next returns when the next unsent call is due, but not sooner than
// minTick after now.
func (p *pacer) next(now time.Time) time.Time {
	t := p.start.Add(time.Duration(float64(p.sent) / p.rate * float64(time.Second)))
	if soonest := now.Add(minTick); t.Before(soonest) {
		return soonest
	}
	return t
}

// call makes one call to the next group.
func (s *sender) call(ctx context.Context) {
	s.begin()
	s.end(s.post(ctx))
}

// begin starts the next call: to the next group, with the next sequence.
func (s *sender) begin() {
	p := s.plan
	s.g = int((p.next.Add(1) - 1) % uint64(len(p.groups)))
	s.cur = s.seq[s.g]
	s.seq[s.g]++
	p.calls.Add(1)
	s.start = time.Now()
	s.body = appendCallBody(s.body[:0], p, s.g, s.w, s.cur, s.start.UnixNano())
	s.inflight = true
}

// end records the outcome of the call begun.
func (s *sender) end(err error) {
	p := s.plan
	s.inflight = false
	p.lat.RecordDuration(time.Since(s.start))
	if err != nil {
		s.failed[s.g] = append(s.failed[s.g], s.cur)
		p.countError(errorKind(err))
		return
	}
	p.ok.Add(1)
	p.messages.Add(int64(len(p.groups[s.g])))
	p.expected.Add(p.perCall[s.g])
}

func (s *sender) post(ctx context.Context) error {
	status, err := s.conn.post(ctx, s.body, &s.resp)
	if err != nil {
		return err
	}
	return s.check(status, s.resp.Bytes())
}

// check returns the error of an answer: an HTTP status or GraphQL errors,
// or no data.
func (s *sender) check(status int, body []byte) error {
	op := "send"
	if s.plan.broadcast {
		op = "broadcast"
	}
	var errs []byte
	var hasData bool
	ok := eachMember(body, func(key, value []byte) bool {
		switch string(key) {
		case "errors":
			if string(value) != "null" {
				errs = value
			}
		case "data":
			hasData = string(value) != "null"
		}
		return true
	})
	switch {
	case errs != nil:
		return &statusError{op: op, status: status, code: graphqlErrorCode(errs)}
	case status != http.StatusOK:
		return httpError(op, status, body)
	case !ok || !hasData:
		return errors.New(op + ": an answer without data")
	}
	return nil
}

// appendCallBody appends the GraphQL request of one call: the mutation and
// its input, whose data is benchData.
func appendCallBody(b []byte, p *sendPlan, g, w int, seq, nanos int64) []byte {
	if p.broadcast {
		b = append(b, `{"query":`...)
		b = strconv.AppendQuote(b, broadcastMutation)
		b = append(b, `,"variables":{"in":{"channels":[`...)
		for i, ch := range p.groups[g] {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, ch)
		}
		b = append(b, `],"data":`...)
	} else {
		b = append(b, `{"query":`...)
		b = strconv.AppendQuote(b, sendMutation)
		b = append(b, `,"variables":{"in":{"channel":`...)
		b = strconv.AppendQuote(b, p.groups[g][0])
		b = append(b, `,"data":`...)
	}
	b = appendBenchData(b, p.run, w, seq, nanos, p.size)
	return append(b, `}}}`...)
}

// appendBenchData appends {"r":run,"w":sender,"s":seq,"t":unixNanos}, with
// a filler "p" field when that is shorter than size bytes, so the data is
// size bytes (or a little more while the numbers are long).
func appendBenchData(b []byte, run int64, w int, seq, nanos int64, size int) []byte {
	start := len(b)
	b = append(b, `{"r":`...)
	b = strconv.AppendInt(b, run, 10)
	b = append(b, `,"w":`...)
	b = strconv.AppendInt(b, int64(w), 10)
	b = append(b, `,"s":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, nanos, 10)
	const fill = `,"p":""}`
	if pad := size - (len(b) - start) - len(fill); pad > 0 {
		b = append(b, `,"p":"`...)
		for range pad {
			b = append(b, 'x')
		}
		b = append(b, '"')
	}
	return append(b, '}')
}

// appendWarmBody appends a send or broadcast of the warm-up data
// {"r":run,"warm":true} to channels.
func appendWarmBody(b []byte, run int64, channels []string) []byte {
	b = append(b, `{"query":`...)
	if len(channels) == 1 {
		b = strconv.AppendQuote(b, sendMutation)
		b = append(b, `,"variables":{"in":{"channel":`...)
		b = strconv.AppendQuote(b, channels[0])
	} else {
		b = strconv.AppendQuote(b, broadcastMutation)
		b = append(b, `,"variables":{"in":{"channels":[`...)
		for i, ch := range channels {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, ch)
		}
		b = append(b, ']')
	}
	b = append(b, `,"data":{"r":`...)
	b = strconv.AppendInt(b, run, 10)
	return append(b, `,"warm":true}}}}`...)
}

// warm sends the warm-up to channels (in calls of at most 100 channels).
func (p *sendPlan) warm(ctx context.Context, channels []string) error {
	s := newSender(0, p)
	defer s.conn.close()
	for len(channels) > 0 {
		n := min(len(channels), 100)
		s.body = appendWarmBody(s.body[:0], p.run, channels[:n])
		if err := s.post(ctx); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		channels = channels[n:]
	}
	return nil
}
