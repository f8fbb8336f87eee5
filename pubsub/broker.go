package pubsub

import (
	"context"
	"errors"
	"fmt"
	"log"
	"sync"
	"time"
)

// Options configure a Broker. The zero value of each field means its default.
type Options struct {
	// HistorySize is how many messages each channel retains (default 1000).
	HistorySize int
	// HistoryTTL is how long each message is retained (default 24h).
	HistoryTTL time.Duration
	// Retention, when set, overrides HistorySize and HistoryTTL per channel
	// (pushgate uses it for per-namespace settings). A zero result field
	// means the default.
	Retention func(channel string) (size int, ttl time.Duration)
	// IdempotencyWindow is how long an idempotency key is remembered
	// (default 5 minutes).
	IdempotencyWindow time.Duration
	// QueueSize is how many events a subscription holds for its consumer
	// before it falls back to reading the store (default 64: every idle
	// subscription holds it; a consumer that drains as events come, as the
	// transports do, rarely has more than a few queued).
	QueueSize int
	// Observer is told of resets, resumes and store errors, for metrics
	// (nil: nothing is observed).
	Observer Observer
	// PublishTimeout bounds one append to a store that does I/O (Redis),
	// whatever the caller's context allows, waiting for a connection and
	// retries included (default DefaultPublishTimeout, 3 s). A publish that
	// runs out of it fails with ErrUnavailable, and ErrOutcomeUnknown when
	// its request had been sent. The memory store's appends do not wait.
	PublishTimeout time.Duration
	// Panicked is told of a panic recovered in a goroutine the broker runs
	// for one subscription (its catch-up), with the panic's value and
	// stack; that subscription ends with an error wrapping ErrInternal
	// (a *PanicError), and nothing else is affected. It must be safe for
	// concurrent use. nil: the panic is written to the standard logger.
	Panicked func(where string, value any, stack []byte)
}

func (o Options) withDefaults() Options {
	if o.HistorySize <= 0 {
		o.HistorySize = DefaultHistorySize
	}
	if o.HistoryTTL <= 0 {
		o.HistoryTTL = DefaultHistoryTTL
	}
	if o.IdempotencyWindow <= 0 {
		o.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 64
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.Panicked == nil {
		o.Panicked = logPanic
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = DefaultPublishTimeout
	}
	return o
}

// DefaultPublishTimeout is Options.PublishTimeout's default.
const DefaultPublishTimeout = 3 * time.Second

// retention returns the bounds that apply to channel.
func (o Options) retention(channel string) (int, time.Duration) {
	size, ttl := o.HistorySize, o.HistoryTTL
	if o.Retention != nil {
		if s, t := o.Retention(channel); s > 0 || t > 0 {
			if s > 0 {
				size = s
			}
			if t > 0 {
				ttl = t
			}
		}
	}
	return size, ttl
}

// store is what a backend provides. The broker adds validation, local
// fan-out (hub) and subscriptions on top, so both backends share the
// subscription and resume logic.
type store interface {
	// append stores req (already validated) and notifies every node's hub
	// (for this node: h.dispatch) in offset order per channel.
	append(ctx context.Context, req PublishRequest) (PublishResult, error)
	// readAfter returns the channel's state and up to limit retained
	// messages with offset > after in the current epoch, oldest first, read
	// in one atomic step. With maxBytes > 0 it may stop before limit once
	// the data of the messages read exceeds maxBytes (the message that
	// crossed it included): a store that copies messages out (Redis) so
	// bounds what one read allocates.
	readAfter(ctx context.Context, channel string, after uint64, limit, maxBytes int) (ChannelState, []Message, error)
	// readBefore returns the state and up to limit of the newest retained
	// messages with offset < before (before 0: no upper bound), oldest
	// first; maxBytes as for readAfter (the newest are kept).
	readBefore(ctx context.Context, channel string, before uint64, limit, maxBytes int) (ChannelState, []Message, error)
	state(ctx context.Context, channel string) (ChannelState, error)
	// watch starts live notifications for channel and returns once any
	// message appended afterwards will be dispatched; unwatch stops them.
	// The hub calls them once per channel (reference counting is its job).
	watch(ctx context.Context, channel string) error
	unwatch(channel string)
	ping(ctx context.Context) error
	close() error
}

// broker implements Broker over a store.
type broker struct {
	opts  Options
	st    store
	hub   *hub
	mu    sync.Mutex
	subs  map[*Subscription]struct{}
	done  chan struct{}
	close sync.Once
}

func newBroker(opts Options, st store, h *hub) *broker {
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.Panicked == nil {
		opts.Panicked = logPanic
	}
	return &broker{opts: opts, st: st, hub: h, subs: make(map[*Subscription]struct{}), done: make(chan struct{})}
}

func (b *broker) closed() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

func (b *broker) Publish(ctx context.Context, req PublishRequest) (PublishResult, error) {
	if b.closed() {
		return PublishResult{}, ErrClosed
	}
	if err := validatePublish(&req); err != nil {
		return PublishResult{}, err
	}
	res, err := b.st.append(ctx, req)
	if err != nil {
		b.storeError(opPublish, err)
	}
	return res, err
}

// storeError reports a failed store operation to the observer, unless the
// caller gave up (its context was cancelled) or the broker is closed.
func (b *broker) storeError(op string, err error) {
	if !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed) {
		b.opts.Observer.StoreError(op)
	}
}

func (b *broker) History(ctx context.Context, channel string, req HistoryRequest) (HistoryPage, error) {
	if b.closed() {
		return HistoryPage{}, ErrClosed
	}
	if !ValidChannel(channel) {
		return HistoryPage{}, channelError(channel)
	}
	if req.Limit < 1 || req.Limit > MaxHistoryLimit {
		return HistoryPage{}, fmt.Errorf("%w: %d is outside 1..%d", ErrInvalidLimit, req.Limit, MaxHistoryLimit)
	}
	var (
		st   ChannelState
		msgs []Message
		err  error
		pos  *Position
	)
	if req.After != nil {
		pos = req.After
		// One more than asked tells whether there is more.
		st, msgs, err = b.st.readAfter(ctx, channel, req.After.Offset, req.Limit+1, req.MaxBytes)
	} else {
		var before uint64
		if req.Before != nil {
			pos = req.Before
			before = req.Before.Offset
			if before == 0 {
				return HistoryPage{State: st}, nil
			}
		}
		st, msgs, err = b.st.readBefore(ctx, channel, before, req.Limit+1, req.MaxBytes)
	}
	if err != nil {
		b.storeError(opHistory, err)
		return HistoryPage{}, err
	}
	if pos != nil && pos.Epoch != "" && pos.Epoch != st.Epoch {
		return HistoryPage{}, fmt.Errorf("%w: cursor epoch %q, channel epoch %q", ErrEpochMismatch, pos.Epoch, st.Epoch)
	}
	if pos != nil && pos.Offset > st.Top {
		// Ahead of the newest message ever appended in this epoch: no
		// cursor the server issued names it (a subscription gets a Reset
		// with ResetUnknownPosition for the same position).
		return HistoryPage{}, fmt.Errorf("%w: position %d is beyond the channel's newest message (%d)", ErrInvalidCursor, pos.Offset, st.Top)
	}
	page := HistoryPage{State: st, Messages: msgs}
	if len(msgs) > req.Limit {
		page.More = true
		if req.After != nil {
			page.Messages = msgs[:req.Limit]
		} else {
			page.Messages = msgs[1:]
		}
	}
	if req.MaxBytes > 0 {
		size := 0
		for i := range page.Messages {
			size += len(page.Messages[i].Data)
		}
		if size > req.MaxBytes {
			return HistoryPage{}, fmt.Errorf("%w: the page's data is over %d bytes", ErrTooLarge, req.MaxBytes)
		}
	}
	return page, nil
}

func (b *broker) State(ctx context.Context, channel string) (ChannelState, error) {
	if b.closed() {
		return ChannelState{}, ErrClosed
	}
	if !ValidChannel(channel) {
		return ChannelState{}, channelError(channel)
	}
	st, err := b.st.state(ctx, channel)
	if err != nil {
		b.storeError(opState, err)
	}
	return st, err
}

func (b *broker) Ready(ctx context.Context) error {
	if b.closed() {
		return ErrClosed
	}
	return b.st.ping(ctx)
}

func (b *broker) Close() error {
	var err error
	b.close.Do(func() {
		close(b.done)
		b.mu.Lock()
		subs := make([]*Subscription, 0, len(b.subs))
		for s := range b.subs {
			subs = append(subs, s)
		}
		b.mu.Unlock()
		for _, s := range subs {
			s.end(ErrClosed)
		}
		err = b.st.close()
	})
	return err
}

func (b *broker) track(s *Subscription) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed() {
		return false
	}
	b.subs[s] = struct{}{}
	return true
}

func (b *broker) untrack(s *Subscription) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}

// logPanic is Options.Panicked's default.
func logPanic(where string, value any, stack []byte) {
	log.Printf("pubsub: recovered a panic in %s: %v\n%s", where, value, stack)
}
