package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"slices"
	"strings"

	"github.com/99designs/gqlgen/graphql/handler/transport"

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
	keys   []keyHash
	tokens TokenVerifier
	// ns are the namespaces' rules; NewAuth sets only the default
	// namespace's anonymous reading, New sets them all.
	ns Namespaces
	// signer mints issueToken's tokens (nil without a JWT secret).
	signer *tokenSigner
}

type keyHash struct {
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
		a.keys = append(a.keys, keyHash{name: k.Name, sum: sha256.Sum256([]byte(k.Secret)), channels: k.Channels})
	}
	return a
}

var _ graph.Access = (*Auth)(nil)

// MaySend allows an API key the channels matching its patterns, and a
// subscriber token the channels matching its publish claim in namespaces
// with token publishing on.
func (a *Auth) MaySend(ctx context.Context, channels []string) error {
	cred := credential(ctx)
	if cred == "" {
		return graph.Errorf(graph.CodeUnauthenticated, "sending requires an API key: Authorization: Bearer <key>")
	}
	// Joins and leaves are the server's to tell: nobody forges them.
	for _, ch := range channels {
		if strings.HasSuffix(ch, presenceSuffix) && a.ns.Of(strings.TrimSuffix(ch, presenceSuffix)).Presence {
			return graph.Errorf(graph.CodeForbidden, "channel %q: presence events are published by the server only", ch)
		}
	}
	if k, ok := a.key(cred); ok {
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
	cred := credential(ctx)
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
	if _, ok := a.key(cred); ok {
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

// key returns the key with secret, comparing in constant time against
// every key (hashes, so lengths leak nothing either).
func (a *Auth) key(secret string) (*keyHash, bool) {
	sum := sha256.Sum256([]byte(secret))
	var found *keyHash
	for i := range a.keys {
		if subtle.ConstantTimeCompare(sum[:], a.keys[i].sum[:]) == 1 {
			found = &a.keys[i]
		}
	}
	return found, found != nil
}

// everyChannel reports whether the key may send to every channel: no
// pattern, or the pattern "*".
func (k *keyHash) everyChannel() bool {
	return len(k.channels) == 0 || slices.Contains(k.channels, "*")
}

// maySend reports whether the key may send to channel.
func (k *keyHash) maySend(channel string) bool {
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

type credentialKey struct{}

func withCredential(ctx context.Context, cred string) context.Context {
	return context.WithValue(ctx, credentialKey{}, cred)
}

// credential returns the request's API key or token ("" when none).
func credential(ctx context.Context) string {
	if s, ok := ctx.Value(credentialKey{}).(string); ok {
		return s // replaced (a WebSocket's connection_init)
	}
	if st := requestOf(ctx); st != nil {
		return st.cred
	}
	return ""
}

// bearer returns the credential of an Authorization value, with or without
// the "Bearer " prefix.
func bearer(v string) string {
	v = strings.TrimSpace(v)
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		v = strings.TrimSpace(v[7:])
	}
	return v
}

// initCredential returns the credential of a WebSocket connection_init
// payload: token, Authorization or authorization.
func initCredential(p transport.InitPayload) string {
	if t := p.GetString("token"); t != "" {
		return bearer(t)
	}
	return bearer(p.Authorization())
}
