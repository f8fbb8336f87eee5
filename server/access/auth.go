package access

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"slices"
	"strings"

	"github.com/pushgate/pushgate/graph"
)

// APIKey is a named secret that allows sending to the channels matching
// Channels (glob patterns; none: every channel), minting tokens for those
// channels (issueToken), and reading every channel.
type APIKey struct {
	Name     string
	Secret   string
	Channels []string
}

// Auth decides who may send and read, from the request's credentials: an
// API key or a subscriber JWT (HS256), and the rules of each channel's
// namespace. It implements graph.Access.
type Auth struct {
	keys   []Key
	tokens TokenVerifier
	// ns are the namespaces' rules; NewAuth sets only the default
	// namespace's anonymous reading, New sets them all.
	ns Namespaces
	// signer mints issueToken's tokens (nil without a JWT secret).
	signer *tokenSigner
	// source reads a request's credential (SetCredentialSource).
	source func(context.Context) string
}

// Key is an API key, as Auth.Key finds it by its secret (which it keeps
// only hashed).
type Key struct {
	name     string
	sum      [sha256.Size]byte
	channels []string // none: every channel
}

// NewAuth returns the access rules. Without a JWT secret only API keys
// read; with anonymous, requests without credentials may read every channel
// but user:* ones.
func NewAuth(keys []APIKey, jwtSecret string, anonymous bool) *Auth {
	a := &Auth{
		tokens: NewHS256Verifier(jwtSecret),
		ns:     Namespaces{Default: Namespace{AnonymousRead: anonymous}},
		signer: newTokenSigner(TokenConfig{}, jwtSecret),
	}
	for _, k := range keys {
		a.keys = append(a.keys, Key{name: k.Name, sum: sha256.Sum256([]byte(k.Secret)), channels: k.Channels})
	}
	return a
}

var _ graph.Access = (*Auth)(nil)

// SetNamespaces makes a apply ns, in place of NewAuth's default namespace
// (whose only rule is its anonymous reading).
func (a *Auth) SetNamespaces(ns Namespaces) { a.ns = ns }

// PresenceSuffix names a channel's companion feed of join and leave
// events (<channel>:presence), which only the server publishes to.
const PresenceSuffix = ":presence"

// Verify verifies a subscriber token with a's verifier (SetTokenVerifier).
func (a *Auth) Verify(ctx context.Context, raw string) (*Claims, error) {
	return a.tokens.Verify(ctx, raw)
}

// Who names the sender of ctx's credential, for the limits: its API key's
// name (token false) or its token's subject (token true). ok is false
// without a credential, and for one that is neither a key nor a valid
// token.
func (a *Auth) Who(ctx context.Context) (name string, token, ok bool) {
	cred := a.Credential(ctx)
	if cred == "" {
		return "", false, false
	}
	if k, ok := a.Key(cred); ok {
		return k.name, false, true
	}
	claims, err := a.tokens.Verify(ctx, cred)
	if err != nil {
		return "", false, false
	}
	return claims.Subject, true, true
}

// Subject names the request's credential for presence: the token's sub,
// key:<name> for an API key, anonymous without credentials (or for a token
// without a subject). Tokens cannot wear the last two (Claims.Validate), so
// each name tells one kind of credential.
func (a *Auth) Subject(ctx context.Context) string {
	cred := a.Credential(ctx)
	if cred == "" {
		return graph.AnonymousSubject
	}
	if k, ok := a.Key(cred); ok {
		return graph.KeySubjectPrefix + k.name
	}
	if c, err := a.tokens.Verify(ctx, cred); err == nil && c.Subject != "" {
		return c.Subject
	}
	return graph.AnonymousSubject
}

// MaySend allows an API key the channels matching its patterns, and a
// subscriber token the channels matching its publish claim in namespaces
// with token publishing on.
func (a *Auth) MaySend(ctx context.Context, channels []string) error {
	cred := a.Credential(ctx)
	if cred == "" {
		return graph.Errorf(graph.CodeUnauthenticated, "sending requires an API key: Authorization: Bearer <key>")
	}
	// Joins and leaves are the server's to tell: nobody forges them.
	for _, ch := range channels {
		if strings.HasSuffix(ch, PresenceSuffix) && a.ns.Of(strings.TrimSuffix(ch, PresenceSuffix)).Presence {
			return graph.Errorf(graph.CodeForbidden, "channel %q: presence events are published by the server only", ch)
		}
	}
	if k, ok := a.Key(cred); ok {
		for _, ch := range channels {
			if !k.maySend(ch) {
				return graph.Errorf(graph.CodeForbidden, "channel %q: API key %q may send only to %s",
					ch, k.name, strings.Join(k.channels, ", "))
			}
		}
		return nil
	}
	claims, err := a.tokens.Verify(ctx, cred)
	if err != nil {
		return graph.Errorf(graph.CodeUnauthenticated, "%v", err)
	}
	for _, ch := range channels {
		if !a.ns.Of(ch).TokenPublish {
			return graph.Errorf(graph.CodeForbidden, "channel %q: %s does not let subscriber tokens send "+
				"(token_publish is off): use an API key", ch, a.ns.describe(ch))
		}
		if !claims.maySend(ch) {
			return graph.Errorf(graph.CodeForbidden, "channel %q: the token's publish claim does not grant it", ch)
		}
	}
	return nil
}

// MayRead allows API keys every channel, subscriber tokens the channels
// their claims grant, and (with anonymous reading) requests without
// credentials every channel outside the user namespace.
func (a *Auth) MayRead(ctx context.Context, channels []string) error {
	cred := a.Credential(ctx)
	if cred == "" {
		for _, ch := range channels {
			if !a.ns.Of(ch).AnonymousRead {
				return graph.Errorf(graph.CodeUnauthenticated, "channel %q: reading requires a token (%s does not allow "+
					"anonymous reading): Authorization: Bearer <token>, a token query parameter or connection_init {token}",
					ch, a.ns.describe(ch))
			}
			if _, ok := userOf(ch); ok {
				return graph.Errorf(graph.CodeForbidden, "channel %q: user channels need a token for that user", ch)
			}
		}
		return nil
	}
	if _, ok := a.Key(cred); ok {
		return nil
	}
	claims, err := a.tokens.Verify(ctx, cred)
	if err != nil {
		return graph.Errorf(graph.CodeUnauthenticated, "%v", err)
	}
	for _, ch := range channels {
		if !claims.mayRead(ch) {
			return graph.Errorf(graph.CodeForbidden, "channel %q: the token does not grant it", ch)
		}
	}
	return nil
}

// Key returns the API key with secret, comparing in constant time against
// every key (hashes, so lengths leak nothing either).
func (a *Auth) Key(secret string) (*Key, bool) {
	sum := sha256.Sum256([]byte(secret))
	var found *Key
	for i := range a.keys {
		if subtle.ConstantTimeCompare(sum[:], a.keys[i].sum[:]) == 1 {
			found = &a.keys[i]
		}
	}
	return found, found != nil
}

// Name is the key's name, for errors, logs and limits.
func (k *Key) Name() string { return k.name }

// EveryChannel reports whether the key may send to every channel: no
// pattern, or the pattern "*".
func (k *Key) EveryChannel() bool {
	return len(k.channels) == 0 || slices.Contains(k.channels, "*")
}

// maySend reports whether the key may send to channel.
func (k *Key) maySend(channel string) bool {
	if len(k.channels) == 0 {
		return true
	}
	for _, p := range k.channels {
		if globMatch(p, channel) {
			return true
		}
	}
	return false
}

// maySend reports whether the claims' publish patterns grant channel (the
// namespace's token_publish is checked by the caller).
func (c *Claims) maySend(channel string) bool {
	for _, p := range c.Publish {
		if globMatch(p, channel) {
			return true
		}
	}
	return false
}

func (c *Claims) mayRead(channel string) bool {
	// A user channel is its user's alone: a token without a subject owns
	// none (and "user:" is not a channel).
	if user, ok := userOf(channel); ok && (c.Subject == "" || user != c.Subject) {
		return false
	}
	for _, p := range c.Channels {
		if globMatch(p, channel) {
			return true
		}
	}
	return false
}

// userOf returns x for a channel user:x.
func userOf(channel string) (string, bool) {
	return strings.CutPrefix(channel, "user:")
}

// globMatch reports whether s matches pattern, where * matches any run of
// characters (':' included) and ? exactly one. Linear backtracking on the
// last star, so no pattern is expensive.
func globMatch(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
