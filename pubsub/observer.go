package pubsub

// Observer is told what the broker does, for metrics. Options.Observer sets
// it; nil observes nothing. Its methods are called synchronously from the
// broker's and the subscriptions' goroutines, concurrently, and sometimes
// on a publisher's or a subscriber's path: they must be safe for concurrent
// use, return at once and never call back into the broker. They carry no
// channel names, so an implementation cannot leak them into labels.
type Observer interface {
	// Reset is called for every Reset a subscription queues for its
	// consumer, with its reason.
	Reset(reason ResetReason)
	// Resumed is called once for a subscription whose cursor named one of
	// its channels, when its first catch-up ends (it is live on every
	// channel): withReset reports that a Reset came first on at least one
	// channel. A subscription that ends before it caught up is not
	// reported.
	Resumed(withReset bool)
	// StoreError is called when the store failed an operation the broker
	// needed (the operation then fails with ErrUnavailable, or is retried):
	// op is "publish", "history", "state", "subscribe" or "catch_up".
	StoreError(op string)
}

// Store operations reported to Observer.StoreError.
const (
	opPublish   = "publish"
	opHistory   = "history"
	opState     = "state"
	opSubscribe = "subscribe"
	opCatchUp   = "catch_up"
)

// nopObserver observes nothing.
type nopObserver struct{}

func (nopObserver) Reset(ResetReason) {}
func (nopObserver) Resumed(bool)      {}
func (nopObserver) StoreError(string) {}
