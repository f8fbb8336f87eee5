package graph

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pushgate/pushgate/graph/model"
)

// Limits of issueToken.
const (
	// MaxTokenPatterns bounds the patterns of each of a token's channels
	// and publish claims.
	MaxTokenPatterns = 32
	// MaxSubjectLength bounds a token's subject, in characters.
	MaxSubjectLength = 128
	// DefaultTokenTTL and MaxTokenTTL are a minted token's default and
	// longest lifetime.
	DefaultTokenTTL = time.Hour
	MaxTokenTTL     = 24 * time.Hour
	// maxPatternLength is a channel name's longest length.
	maxPatternLength = 128
)

// TokenRequest is what a subscriber token minted by issueToken holds.
type TokenRequest struct {
	// Subject is the holder (sub): user:<Subject> channels are readable by
	// this holder only.
	Subject string
	// Channels are the patterns the holder may read (claim channels).
	Channels []string
	// Publish are the patterns the holder may send to where the channel's
	// namespace allows token holders to send (claim publish).
	Publish []string
	// TTL is the token's lifetime: it expires TTL after it is minted.
	TTL time.Duration
}

// IssuedToken is a minted token and its expiry (its exp claim).
type IssuedToken struct {
	Token     string
	ExpiresAt time.Time
}

// ValidPattern reports whether p is a channel pattern: a channel name in
// which * stands for any run of characters and ? for one, so
// [A-Za-z0-9_:.@*?-]{1,128}.
func ValidPattern(p string) bool {
	if len(p) == 0 || len(p) > maxPatternLength {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == ':', c == '.', c == '@', c == '-', c == '*', c == '?':
		default:
			return false
		}
	}
	return true
}

// The subjects that name other credentials than a token, as presence lists
// them (Channel.presence, join and leave events): an API key is
// "key:<name>", a reader without credentials "anonymous". A token cannot
// wear them, or it would pass for a key or for anonymous readers.
const (
	AnonymousSubject = "anonymous"
	KeySubjectPrefix = "key:"
)

// ReservedSubject says why sub cannot be a token's subject ("" when it
// can): it is "anonymous" or starts with "key:", in any case.
func ReservedSubject(sub string) string {
	switch {
	case strings.EqualFold(sub, AnonymousSubject):
		return fmt.Sprintf("%q is reserved: presence names readers without credentials so", AnonymousSubject)
	case len(sub) >= len(KeySubjectPrefix) && strings.EqualFold(sub[:len(KeySubjectPrefix)], KeySubjectPrefix):
		return fmt.Sprintf("%q... is reserved: presence names API keys %s<name>", KeySubjectPrefix, KeySubjectPrefix)
	}
	return ""
}

// tokenRequest validates an issueToken input: a subject of 1..128
// characters without control characters and not reserved (ReservedSubject),
// 1..32 channel patterns, at most 32 publish patterns, ttlSeconds 1..86400
// (default 3600).
func tokenRequest(in model.IssueTokenInput) (TokenRequest, error) {
	n := utf8.RuneCountInString(in.Subject)
	if n == 0 || n > MaxSubjectLength || !utf8.ValidString(in.Subject) {
		return TokenRequest{}, badInput("subject: must be 1 to %d characters, got %d", MaxSubjectLength, n)
	}
	for _, r := range in.Subject {
		if r < 0x20 || r == 0x7f {
			return TokenRequest{}, badInput("subject: must not contain control characters")
		}
	}
	if why := ReservedSubject(in.Subject); why != "" {
		return TokenRequest{}, badInput("subject: %s; choose another subject", why)
	}
	req := TokenRequest{Subject: in.Subject, Channels: in.Channels, Publish: in.Publish, TTL: DefaultTokenTTL}
	if len(req.Channels) == 0 {
		return TokenRequest{}, badInput("channels: at least one pattern is required")
	}
	for _, list := range []struct {
		name     string
		patterns []string
	}{{"channels", req.Channels}, {"publish", req.Publish}} {
		if len(list.patterns) > MaxTokenPatterns {
			return TokenRequest{}, badInput("%s: %d patterns, at most %d", list.name, len(list.patterns), MaxTokenPatterns)
		}
		for _, p := range list.patterns {
			if !ValidPattern(p) {
				return TokenRequest{}, badInput("%s: %q must be a channel name or a glob: [A-Za-z0-9_:.@*?-]{1,128}", list.name, p)
			}
		}
	}
	if in.TTLSeconds != nil {
		ttl := *in.TTLSeconds
		if ttl < 1 || ttl > int(MaxTokenTTL/time.Second) {
			return TokenRequest{}, badInput("ttlSeconds: must be 1 to %d, got %d", int(MaxTokenTTL/time.Second), ttl)
		}
		req.TTL = time.Duration(ttl) * time.Second
	}
	return req, nil
}
