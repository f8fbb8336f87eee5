package access

import (
	"fmt"
	"strings"
	"time"
)

// Namespace holds the rules of the channels of one namespace: the part of a
// channel name before its first ':' (orders for orders:42).
type Namespace struct {
	// HistorySize and HistoryTTL bound the channels' retention (0: the
	// broker's default). The broker applies them through
	// Namespaces.Retention.
	HistorySize int
	HistoryTTL  time.Duration
	// AnonymousRead lets requests without credentials read the channels.
	// user:<x> channels are never read anonymously.
	AnonymousRead bool
	// TokenPublish lets subscriber tokens send to the channels their
	// publish claim grants (chat-like use). Without it only API keys send.
	TokenPublish bool
	// Presence counts who is subscribed to the channels (Channel.presence)
	// and publishes join and leave events on their companion channels
	// <channel>:presence (server/presence.go).
	Presence bool
	// MaxMessageSize bounds a message's data in bytes (0: the server's
	// MaxMessageSize).
	MaxMessageSize int
}

// Namespaces are the rules of every channel: Named by namespace, and
// Default for the channels of any other namespace and for names without ':'.
type Namespaces struct {
	Default Namespace
	Named   map[string]Namespace
}

// NamespaceOf returns the namespace of channel: the part of its name before
// the first ':', or "" when the name has none.
func NamespaceOf(channel string) string {
	ns, _, found := strings.Cut(channel, ":")
	if !found {
		return ""
	}
	return ns
}

// Of returns the rules of channel.
func (n Namespaces) Of(channel string) Namespace {
	if ns, ok := n.Named[NamespaceOf(channel)]; ok {
		return ns
	}
	return n.Default
}

// Retention returns the retention of channel, for pubsub.Options.Retention.
func (n Namespaces) Retention(channel string) (size int, ttl time.Duration) {
	ns := n.Of(channel)
	return ns.HistorySize, ns.HistoryTTL
}

// describe names the namespace whose rules apply to channel, for error
// messages.
func (n Namespaces) describe(channel string) string {
	name := NamespaceOf(channel)
	if _, ok := n.Named[name]; ok {
		return fmt.Sprintf("namespace %q", name)
	}
	return "the default namespace"
}

// WithDefaults fills what the server's flat settings imply: the default
// namespace's message size is maxMessageSize unless set, anonymous turns on
// its anonymous reading, and a named namespace without a message size or
// retention takes the default namespace's.
func (n Namespaces) WithDefaults(maxMessageSize int, anonymous bool) Namespaces {
	out := Namespaces{Default: n.Default, Named: make(map[string]Namespace, len(n.Named))}
	if out.Default.MaxMessageSize <= 0 {
		out.Default.MaxMessageSize = maxMessageSize
	}
	out.Default.AnonymousRead = out.Default.AnonymousRead || anonymous
	for name, ns := range n.Named {
		if ns.MaxMessageSize <= 0 {
			ns.MaxMessageSize = out.Default.MaxMessageSize
		}
		if ns.HistorySize <= 0 {
			ns.HistorySize = out.Default.HistorySize
		}
		if ns.HistoryTTL <= 0 {
			ns.HistoryTTL = out.Default.HistoryTTL
		}
		out.Named[name] = ns
	}
	return out
}

// MaxMessageSize returns the largest message size of any namespace.
func (n Namespaces) MaxMessageSize() int {
	size := n.Default.MaxMessageSize
	for _, ns := range n.Named {
		size = max(size, ns.MaxMessageSize)
	}
	return size
}
