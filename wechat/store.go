package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// Store is the state the Service shares between nodes: a key-value space
// with expiry (access tokens, their locks, push nonces, acknowledgements,
// the unionid→openid map), the quota ledger, and one durable notification
// queue per app. NewMemoryStore keeps it in the process (one node);
// NewRedisStore keeps it in Redis, where every node sees the same state.
//
// Keys given to the key-value methods are relative: each implementation
// puts them under its own prefix. Every method is safe for concurrent use.
type Store interface {
	// Get returns key's value, or ErrNotFound.
	Get(ctx context.Context, key string) (string, error)
	// Set sets key to value for ttl (> 0).
	Set(ctx context.Context, key, value string, ttl time.Duration) error
	// SetNX sets key to value for ttl only if key does not exist, and
	// reports whether it did. It is the lock's acquire (value names the
	// owner) and the replay check's claim.
	SetNX(ctx context.Context, key, value string, ttl time.Duration) (bool, error)
	// CompareAndDelete deletes key only if its value is value, and reports
	// whether it did: a lock's release by its owner.
	CompareAndDelete(ctx context.Context, key, value string) (bool, error)
	// Delete deletes key (no error when it does not exist).
	Delete(ctx context.Context, key string) error

	// Quota returns the ledger entry of k (Known false when none).
	Quota(ctx context.Context, k QuotaKey) (Quota, error)
	// UpdateQuota applies op to k's entry atomically and returns the entry
	// after it. QuotaUse changes only an entry that exists.
	UpdateQuota(ctx context.Context, k QuotaKey, op QuotaOp, at time.Time) (Quota, error)

	// Queue returns the notification queue of app.
	Queue(app string) Queue
}

// ErrNotFound: the key or record does not exist.
var ErrNotFound = errors.New("wechat: not found")

// QuotaKey names one ledger entry: a user (openid) of an app and a
// subscribe-message template.
type QuotaKey struct {
	App, OpenID, Template string
}

// Quota is what the ledger knows of a user's permission to receive a
// template, from WeChat's message push and from the sends' answers.
type Quota struct {
	// Known: an event or an answer about this user and template was seen.
	// Without one, a notification is tried (WeChat decides).
	Known bool `json:"known"`
	// Accepted: the user's last choice for the template was to accept it.
	Accepted bool `json:"accepted"`
	// Count is the number of one-time acceptances not yet used by a send.
	Count int `json:"count"`
	// UpdatedAt is the time of the last change.
	UpdatedAt time.Time `json:"updatedAt"`
}

// Allows reports whether a send may use the entry: unknown entries are
// tried, a long-term template needs the acceptance to stand, a one-time
// template an unused acceptance.
func (q Quota) Allows(longTerm bool) bool {
	switch {
	case !q.Known:
		return true
	case longTerm:
		return q.Accepted
	default:
		return q.Count > 0
	}
}

// QuotaOp is a change to a ledger entry.
type QuotaOp int

const (
	// QuotaAccept: the user accepted the template once more (one more
	// one-time message; a long-term template stays accepted).
	QuotaAccept QuotaOp = iota + 1
	// QuotaReject: the user rejected or cancelled the template, or WeChat
	// refused a send with 43101: nothing may be sent.
	QuotaReject
	// QuotaUse: a send succeeded and used one acceptance.
	QuotaUse
)

// Status is a notification's state.
type Status string

const (
	// StatusPending: queued, waiting for its grace period or a retry.
	StatusPending Status = "PENDING"
	// StatusSent: WeChat accepted the subscribe message.
	StatusSent Status = "SENT"
	// StatusSkipped: not sent, by decision (the user was online, had
	// acknowledged the message, or has no quota).
	StatusSkipped Status = "SKIPPED"
	// StatusRefused: WeChat refused it with 43101 (the user refused the
	// template or has no quota left).
	StatusRefused Status = "REFUSED"
	// StatusFailed: a final error (bad data, openid, template or page, an
	// unknown errcode), or the notification's max age passed.
	StatusFailed Status = "FAILED"
	// StatusUnknown: a send went out but its answer was never read (a node
	// died mid-call, a timeout, a reset): WeChat may or may not have
	// delivered it, and it is not sent again.
	StatusUnknown Status = "UNKNOWN"
)

// Final reports whether s is an end state.
func (s Status) Final() bool { return s != StatusPending && s != "" }

// Reasons, with the status they go with.
const (
	ReasonWaiting     = "WAITING"      // PENDING: waiting out the grace period
	ReasonRetrying    = "RETRYING"     // PENDING: a transient failure, retried with backoff
	ReasonOnline      = "ONLINE"       // SKIPPED: the user had a live subscription (OFFLINE)
	ReasonAcked       = "ACKED"        // SKIPPED: the user's client acknowledged the message
	ReasonNoQuota     = "NO_QUOTA"     // SKIPPED: the ledger says the user has no quota
	ReasonUserRefused = "USER_REFUSED" // REFUSED: 43101
	ReasonBadData     = "BAD_DATA"     // FAILED: 47003
	ReasonBadOpenID   = "BAD_OPENID"   // FAILED: 40003
	ReasonBadTemplate = "BAD_TEMPLATE" // FAILED: 40037
	ReasonBadPage     = "BAD_PAGE"     // FAILED: 41030
	ReasonWeChatError = "WECHAT_ERROR" // FAILED: another errcode
	ReasonExpired     = "EXPIRED"      // FAILED: the max age passed before a send succeeded
	ReasonNoOpenID    = "NO_OPENID"    // FAILED: no openid is known for the unionid
	ReasonNotQueued   = "NOT_QUEUED"   // FAILED: the message was appended, its notification never queued
	ReasonInterrupted = "INTERRUPTED"  // UNKNOWN: an attempt's answer was never recorded (its node died)
	ReasonNoAnswer    = "NO_ANSWER"    // UNKNOWN: the request went out and no answer came back
)

// Outcome is what became of a notification.
type Outcome struct {
	Status Status `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Errcode and Errmsg are WeChat's last answer (0 and "" when none).
	Errcode int    `json:"errcode,omitempty"`
	Errmsg  string `json:"errmsg,omitempty"`
	// Attempts is the number of calls to subscribeMessage.send.
	Attempts  int       `json:"attempts"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// When says when a notification is sent.
type When string

const (
	// WhenOffline: after the grace period, if the user has no live
	// subscription to user:<sub> on any node and has not acknowledged the
	// message.
	WhenOffline When = "OFFLINE"
	// WhenUnseen: after the grace period, unless the user's client has
	// acknowledged the message.
	WhenUnseen When = "UNSEEN"
	// WhenAlways: at once, regardless.
	WhenAlways When = "ALWAYS"
)

// Job is a queued notification.
type Job struct {
	App        string          `json:"app"`
	Channel    string          `json:"channel"`
	MessageID  string          `json:"message"`
	Subject    string          `json:"subject"`
	TemplateID string          `json:"template"`
	Data       json.RawMessage `json:"data"`
	Page       string          `json:"page,omitempty"`
	When       When            `json:"when"`
	CreatedAt  time.Time       `json:"created"`
}

// ref names a notification within its app's queue: (channel, message id),
// length-prefixed so that no two pairs share a ref.
func (j *Job) ref() string { return notificationRef(j.Channel, j.MessageID) }

func notificationRef(channel, messageID string) string {
	return strconv.Itoa(len(channel)) + ":" + channel + messageID
}

// Delivery is a job handed to one consumer. Until it is finished or
// retried it is held by that consumer; one held longer than the claim idle
// time goes to the next consumer that asks.
type Delivery struct {
	// ID is the queue's id of this delivery.
	ID  string
	Job Job
	// Outcome is the notification's record when it was taken.
	Outcome Outcome
	// InFlight: an attempt began (Begin) and recorded no answer.
	InFlight bool
	// Retries is the number of times the notification was rescheduled
	// after a transient failure (the backoff's exponent).
	Retries int
}

// BeginResult is Queue.Begin's verdict.
type BeginResult int

const (
	// BeginSend: the attempt is recorded as in flight; send.
	BeginSend BeginResult = iota + 1
	// BeginDone: the notification already has a final outcome.
	BeginDone
	// BeginUnknown: an earlier attempt went out without a recorded
	// answer; the notification is now UNKNOWN and must not be sent.
	BeginUnknown
)

// Queue is one app's durable notification queue with at-most-once sends:
// each notification has one record, keyed by (channel, message id), that
// holds its job, its outcome and whether an attempt is in flight.
type Queue interface {
	// Put records job as PENDING (reason) and schedules it at due (at once
	// when due is not after now). It returns false and changes nothing when
	// the notification already exists. The record lives ttl after its last
	// change.
	Put(ctx context.Context, job *Job, reason string, due, now time.Time, ttl time.Duration) (bool, error)
	// Take hands consumer up to n deliveries: first it moves the
	// notifications due by now to the queue, then claims deliveries other
	// consumers have held for claimIdle or longer, then takes new ones,
	// waiting up to wait when there are none. Deliveries whose record has
	// expired are dropped.
	Take(ctx context.Context, consumer string, n int, now time.Time, claimIdle, wait time.Duration) ([]Delivery, error)
	// Begin records an attempt before a send. If the record is final it
	// returns BeginDone; if an earlier attempt is in flight it returns
	// BeginSend when atLeastOnce, else marks the record UNKNOWN
	// (INTERRUPTED) and returns BeginUnknown; otherwise it marks the
	// attempt in flight, counts it and returns BeginSend. The returned
	// Outcome is the record after the step.
	Begin(ctx context.Context, d *Delivery, now time.Time, atLeastOnce bool) (BeginResult, Outcome, error)
	// Finish writes o (final) and removes the delivery, atomically. o is
	// written over a PENDING record, and over an UNKNOWN one when answered
	// (o is WeChat's own answer to this delivery's attempt, which beats
	// another node's guess); a final record is otherwise kept. It returns
	// the record after the step.
	Finish(ctx context.Context, d *Delivery, o Outcome, answered bool, ttl time.Duration) (Outcome, error)
	// Retry keeps a PENDING record PENDING with o's reason, errcode and
	// errmsg, counts the retry, clears its in-flight mark when began (this delivery's own
	// attempt failed without reaching WeChat or with a retryable answer),
	// schedules it at due and removes the delivery, atomically. A final
	// record only loses the delivery.
	Retry(ctx context.Context, d *Delivery, o Outcome, began bool, due time.Time, ttl time.Duration) error
	// Get returns the record of (channel, messageID), or ErrNotFound.
	Get(ctx context.Context, channel, messageID string) (Outcome, error)
}
