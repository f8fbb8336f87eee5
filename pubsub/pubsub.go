// Package pubsub is pushgate's semantic core: channels, messages, stream
// positions, cursors and the Broker that publishes, stores and fans out.
//
// Every transport (WebSocket, SSE, long-poll, GraphQL queries) is a thin
// adapter over the Broker contract below; the memory and Redis backends both
// honour it, and pubsubtest.Run proves it for each.
package pubsub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Limits that are part of the contract.
const (
	// MaxChannelsPerSubscription bounds how many channels one Subscribe call
	// may name.
	MaxChannelsPerSubscription = 32
	// MaxHistoryLimit bounds how many messages one History call returns.
	MaxHistoryLimit = 1000
	// DefaultHistorySize is how many messages a channel retains by default.
	DefaultHistorySize = 1000
	// DefaultHistoryTTL is how long a channel retains a message by default.
	DefaultHistoryTTL = 24 * time.Hour
	// DefaultIdempotencyWindow is how long an idempotency key is remembered.
	DefaultIdempotencyWindow = 5 * time.Minute
)

// Errors a Broker returns. Callers check them with errors.Is; every one of
// them but ErrUnavailable means nothing was appended.
var (
	// ErrInvalidChannel: a channel name outside [A-Za-z0-9_:.@-]{1,128},
	// or "user:" (ChannelProblem).
	ErrInvalidChannel = errors.New("invalid channel name")
	// ErrInvalidEvent: an event name outside [A-Za-z0-9_:.@-]{1,64}.
	ErrInvalidEvent = errors.New("invalid event name")
	// ErrInvalidData: message data that is not exactly one JSON value.
	ErrInvalidData = errors.New("data is not valid JSON")
	// ErrInvalidIdempotencyKey: a key longer than 128 bytes or with control
	// characters.
	ErrInvalidIdempotencyKey = errors.New("invalid idempotency key")
	// ErrInvalidCursor: a cursor that does not decode, or names a position
	// that cannot exist.
	ErrInvalidCursor = errors.New("invalid cursor")
	// ErrTooManyChannels: more than MaxChannelsPerSubscription channels.
	ErrTooManyChannels = errors.New("too many channels")
	// ErrInvalidLimit: a history limit outside 1..MaxHistoryLimit.
	ErrInvalidLimit = errors.New("invalid limit")
	// ErrTooLarge: the data of a history page is over the request's
	// MaxBytes.
	ErrTooLarge = errors.New("history page too large")
	// ErrEpochMismatch: a history position from an epoch the channel no
	// longer has; the caller must start over without a position.
	ErrEpochMismatch = errors.New("position is from an earlier epoch of the channel")
	// ErrUnavailable: the store could not be reached; the operation may or
	// may not be retried by the caller, and a Publish that returns it was not
	// acknowledged (it is reported as not sent). Usually nothing was
	// appended, but when the connection broke after the store received the
	// request the outcome is unknown: a retry with the same IdempotencyKey
	// is safe either way.
	ErrUnavailable = errors.New("store unavailable")
	// ErrOutcomeUnknown comes with ErrUnavailable from a Publish whose
	// request may have reached the store before it failed (a timeout or a
	// connection lost after the request was sent): the message may have
	// been stored, and delivered. A retry with the same IdempotencyKey
	// returns the stored message if it was (Duplicate), or stores it.
	// ErrUnavailable without it means nothing was stored.
	ErrOutcomeUnknown = errors.New("the message may have been stored")
	// ErrClosed: the Broker or Subscription was closed.
	ErrClosed = errors.New("closed")
	// ErrInternal: a subscription ended because the broker failed inside
	// it (a panic, recovered: see PanicError and Options.Panicked). Its
	// subscriber resumes from its cursor, as after any end.
	ErrInternal = errors.New("internal error")
)

// PanicError is why a subscription ended when a goroutine serving it
// panicked: the panic's value and the stack where it was recovered. It
// wraps ErrInternal.
type PanicError struct {
	Where string
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("internal error: panic in %s: %v", e.Where, e.Value)
}

func (e *PanicError) Unwrap() error { return ErrInternal }

// Message is one message in a channel. Offset is its position in its channel
// within Epoch: offsets are contiguous, start at 1 in each epoch and are
// never reused within an epoch.
type Message struct {
	Channel string
	Epoch   string
	Offset  uint64
	// Event is an optional application-defined name ("" when absent).
	Event string
	// Tag is the PublishRequest's Tag, stored with the message and read
	// back with it by every reader ("" when absent).
	Tag string
	// Data is exactly one compact JSON value.
	Data json.RawMessage
	// Time is when the store appended the message (millisecond precision).
	Time time.Time
}

// Position returns the stream position of m.
func (m *Message) Position() Position { return Position{Epoch: m.Epoch, Offset: m.Offset} }

// Position is a place in one channel's stream: right after the message with
// Offset in Epoch. Offset 0 is the start of the epoch. The zero Position
// (empty epoch, offset 0) means "the start of whatever epoch the channel has".
type Position struct {
	Epoch  string
	Offset uint64
}

// ChannelState describes a channel as the store sees it now.
type ChannelState struct {
	Channel string
	// Epoch is the channel's current epoch; "" when the channel has never been
	// published to (or its history and metadata are gone and nothing was
	// published since).
	Epoch string
	// Top is the offset of the newest message ever appended in Epoch (0 when
	// none).
	Top uint64
	// First is the offset of the oldest retained message; when nothing is
	// retained First is Top+1.
	First uint64
	// Retained is how many messages are retained (Top-First+1 when any).
	Retained int
	// LastTime is when the newest retained message was appended (zero when
	// none is retained).
	LastTime time.Time
}

// Position returns the channel's current top position.
func (s ChannelState) Position() Position { return Position{Epoch: s.Epoch, Offset: s.Top} }

// PublishRequest is one message to append.
type PublishRequest struct {
	Channel string
	Event   string
	// Tag is an optional mark of the application's own, stored with the
	// message in the same atomic step as its data: whoever reads the
	// message (history, a live subscriber on any node, a resume) reads its
	// tag too, so a fact about the message that must be seen with it from
	// its first delivery belongs here, not in a write after Publish. Same
	// alphabet and length as Event. Subscribers' transports do not send it.
	Tag string
	// Data must be one JSON value; it is stored compacted.
	Data json.RawMessage
	// IdempotencyKey, when not empty, makes the publish idempotent within the
	// broker's idempotency window, per channel.
	IdempotencyKey string
}

// PublishResult is the outcome of one Publish.
type PublishResult struct {
	Message Message
	// Duplicate reports that IdempotencyKey was seen within the window: Message
	// is the original message and nothing was appended.
	Duplicate bool
}

// HistoryRequest selects a page of one channel's retained messages. Exactly
// one of the two directions applies:
//   - After set (forward paging): up to Limit messages with offset greater
//     than After.Offset, oldest first;
//   - otherwise (backward paging): up to Limit of the newest messages with
//     offset lower than Before.Offset (Before nil: the newest messages),
//     returned oldest first.
type HistoryRequest struct {
	After  *Position
	Before *Position
	// Limit is 1..MaxHistoryLimit.
	Limit int
	// MaxBytes, when positive, bounds the data of the page's messages:
	// History returns ErrTooLarge instead of a larger page, and the store
	// stops reading soon after the bound, so a page that is refused costs
	// little more than the bound.
	MaxBytes int
}

// HistoryPage is one page of history.
type HistoryPage struct {
	State ChannelState
	// Messages are contiguous in offset, oldest first.
	Messages []Message
	// More reports that retained messages exist beyond the page in the
	// requested direction.
	More bool
}

// Event is one item a Subscription delivers: a Message or a Reset.
type Event struct {
	Message *Message
	Reset   *Reset
	// Cursor resumes the subscription right after this event: subscribing
	// again with it delivers exactly what follows.
	Cursor Cursor
}

// Reset tells a subscriber that the store cannot deliver everything between
// the subscriber's position and the next message of Channel: its history was
// lost (a new epoch) or trimmed by retention. The subscriber must refetch its
// state. Delivery continues with every retained message after Position.
type Reset struct {
	Channel  string
	Reason   ResetReason
	Position Position
}

// ResetReason says why a Reset happened.
type ResetReason string

const (
	// ResetEpochChanged: the channel's history was lost (store flushed,
	// metadata expired, failover) and a new epoch began.
	ResetEpochChanged ResetReason = "epoch_changed"
	// ResetExpired: messages after the position were trimmed by retention
	// (count or age) before they could be delivered.
	ResetExpired ResetReason = "expired"
	// ResetUnknownPosition: the position is ahead of the channel's newest
	// message, so it cannot be matched with the stream.
	ResetUnknownPosition ResetReason = "unknown_position"
)

// Broker is the contract every backend honours.
//
// Ordering: within one channel, offsets are assigned in append order and every
// subscriber on every node receives a channel's messages in offset order.
// Across channels no order is promised.
//
// Delivery is at-least-once within retention: a subscriber that resumes with
// the cursor of the last event it processed receives every retained message
// after it, then live ones, with no gap and no duplicate across that seam. Where
// the store can no longer honour a position, the subscriber gets a Reset, never
// a silent gap. Clients de-duplicate by (channel, offset) if they resume with
// older cursors.
//
// All methods are safe for concurrent use.
type Broker interface {
	// Publish validates req and appends it to its channel: one atomic step
	// assigns the next offset (starting a new epoch when the channel has no
	// metadata), appends, trims retention by count and age and notifies live
	// subscribers on every node. On error nothing was appended (but see
	// ErrUnavailable) and the error wraps one of the package errors
	// (ErrInvalid*, ErrUnavailable, ErrClosed).
	// With an IdempotencyKey seen on the same channel within the idempotency
	// window, Publish appends nothing and returns the original message with
	// Duplicate set.
	Publish(ctx context.Context, req PublishRequest) (PublishResult, error)

	// History returns a page of retained messages of one channel (see
	// HistoryRequest). Messages older than the retention age are never
	// returned even if not yet trimmed. A position from another epoch yields
	// ErrEpochMismatch; a zero-epoch position matches any epoch. A position
	// beyond the channel's newest message (its offset above
	// ChannelState.Top, up to 2^64-1) yields ErrInvalidCursor.
	History(ctx context.Context, channel string, req HistoryRequest) (HistoryPage, error)

	// State returns the channel's current state. A channel that was never
	// published to has an empty epoch and Top 0; this is not an error.
	State(ctx context.Context, channel string) (ChannelState, error)

	// Subscribe starts a subscription to 1..MaxChannelsPerSubscription
	// distinct, valid channels. For each channel the start position is the
	// cursor's position for it when the cursor names it, otherwise the
	// channel's current top (live messages only). Channels the cursor names
	// that are not subscribed are ignored. Subscribe returns once every
	// channel is registered for live delivery, so a message published after
	// it returns is delivered. The subscription ends when ctx is done, when
	// Close is called or when the broker closes.
	//
	// A subscription never blocks publishers or other subscribers: a
	// consumer that falls behind is served from the store when it catches up,
	// with a Reset if retention has moved past it. Its memory is bounded.
	Subscribe(ctx context.Context, channels []string, cursor Cursor) (*Subscription, error)

	// Ready reports whether the store is reachable.
	Ready(ctx context.Context) error

	// Close ends every subscription (Next returns ErrClosed) and releases
	// the store. Publish after Close returns ErrClosed.
	Close() error
}
