package access

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/graph"
)

// tokenSigner mints HS256 subscriber tokens with the secret, issuer and
// audience the server's verifier checks them with, so a minted token is
// accepted wherever the server reads.
type tokenSigner struct {
	secret   []byte
	issuer   string
	audience string
	now      func() time.Time
}

// newTokenSigner returns the signer of cfg's secret (jwtSecret when cfg has
// none), or nil when there is no secret.
func newTokenSigner(cfg TokenConfig, jwtSecret string) *tokenSigner {
	secret := cfg.Secret
	if secret == "" {
		secret = jwtSecret
	}
	if secret == "" {
		return nil
	}
	return &tokenSigner{secret: []byte(secret), issuer: cfg.Issuer, audience: cfg.Audience, now: time.Now}
}

// sign mints the token of req: sub, iat, exp (iat + TTL, whole seconds),
// channels and publish, and iss and aud when the verifier requires them.
func (s *tokenSigner) sign(req graph.TokenRequest) (graph.IssuedToken, error) {
	now := s.now().UTC().Truncate(time.Second)
	exp := now.Add(req.TTL)
	claims := Claims{
		Channels: req.Channels,
		Publish:  req.Publish,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.issuer,
			Subject:   req.Subject,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
	}
	if s.audience != "" {
		claims.Audience = jwt.ClaimStrings{s.audience}
	}
	raw, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.secret)
	if err != nil {
		return graph.IssuedToken{}, fmt.Errorf("sign token: %w", err)
	}
	return graph.IssuedToken{Token: raw, ExpiresAt: exp}, nil
}

// SetSigner makes a mint tokens with cfg's secret (jwtSecret when cfg has
// none), issuer and audience, the ones its verifier checks: a minted token
// is accepted wherever the server reads. Without a secret, a mints none.
func (a *Auth) SetSigner(cfg TokenConfig, jwtSecret string) {
	a.signer = newTokenSigner(cfg, jwtSecret)
}

// CanMint reports whether a has a secret to mint tokens with (Mint).
func (a *Auth) CanMint() bool { return a.signer != nil }

// Mint mints the token of req, whoever asks (the caller has checked that
// it may: wechatLogin after WeChat's code2Session). a must CanMint.
func (a *Auth) Mint(req graph.TokenRequest) (graph.IssuedToken, error) { return a.signer.sign(req) }

// IssueToken mints a subscriber token for an API key whose patterns cover
// every pattern of req.Channels and req.Publish (see Key.Covers).
func (a *Auth) IssueToken(ctx context.Context, req graph.TokenRequest) (graph.IssuedToken, error) {
	cred := a.Credential(ctx)
	if cred == "" {
		return graph.IssuedToken{}, graph.Errorf(graph.CodeUnauthenticated,
			"issueToken requires an API key: Authorization: Bearer <key>")
	}
	k, ok := a.Key(cred)
	if !ok {
		if _, err := a.tokens.Verify(ctx, cred); err == nil {
			return graph.IssuedToken{}, graph.Errorf(graph.CodeForbidden, "a subscriber token cannot issue tokens: use an API key")
		}
		return graph.IssuedToken{}, graph.Errorf(graph.CodeUnauthenticated, "invalid API key")
	}
	if a.signer == nil {
		return graph.IssuedToken{}, graph.Errorf(graph.CodeUnavailable, "issueToken is not available: the server has no "+
			"JWT secret to sign with (set --jwt-secret, PUSHGATE_JWT_SECRET or jwt.secret in the config file)")
	}
	for _, claim := range []struct {
		name     string
		patterns []string
	}{{"channels", req.Channels}, {"publish", req.Publish}} {
		for _, p := range claim.patterns {
			if !k.Covers(p) {
				return graph.IssuedToken{}, graph.Errorf(graph.CodeForbidden,
					"%s: %q is not covered by API key %q, which may send only to %s",
					claim.name, p, k.name, strings.Join(k.channels, ", "))
			}
		}
	}
	return a.signer.sign(req)
}

// Covers reports whether every channel matching pattern p matches one of
// the key's patterns. The check is conservative (it may refuse a pattern
// that is in fact covered, never the reverse): a key pattern K covers p
// when K is *, K equals p, or K ends with * and p starts with the part of K
// before that *. A key without patterns covers everything.
func (k *Key) Covers(p string) bool {
	if len(k.channels) == 0 {
		return true
	}
	for _, kp := range k.channels {
		if kp == p {
			return true
		}
		// Every channel matching prefix+rest matches prefix+*.
		if prefix, ok := strings.CutSuffix(kp, "*"); ok && strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}
