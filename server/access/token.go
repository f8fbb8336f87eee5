package access

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/graph"
)

// Claims are the claims of a subscriber token: the holder (sub) may read the
// channels matching one of Channels (glob patterns: * is any run of
// characters, ? is one), except user:<x> channels where x is not sub, and
// may send to the channels matching Publish where the namespace allows
// token holders to send.
type Claims struct {
	Channels []string `json:"channels"`
	Publish  []string `json:"publish,omitempty"`
	jwt.RegisteredClaims

	// invalid says which claim has the wrong shape, for Validate: the
	// JWT parser decodes the claims before it checks the signature, and
	// nothing is said about the claims of a token that is not ours.
	invalid string
}

// UnmarshalJSON decodes the claims, noting (in invalid) rather than failing
// on a channels or publish claim that is not an array of strings.
func (c *Claims) UnmarshalJSON(b []byte) error {
	type plain Claims // without this method
	var raw struct {
		plain
		Channels json.RawMessage `json:"channels"`
		Publish  json.RawMessage `json:"publish"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*c = Claims(raw.plain)
	for _, claim := range []struct {
		name string
		raw  json.RawMessage
		into *[]string
	}{{"channels", raw.Channels, &c.Channels}, {"publish", raw.Publish, &c.Publish}} {
		if len(claim.raw) == 0 || string(claim.raw) == "null" {
			continue
		}
		if json.Unmarshal(claim.raw, claim.into) != nil && c.invalid == "" {
			c.invalid = claim.name
		}
	}
	return nil
}

// maxExpAhead is how far ahead an exp may be: one further is taken for a
// time in milliseconds (NumericDate is in seconds), a common mistake that
// would otherwise make a token that never expires.
const maxExpAhead = 10 * 365 * 24 * time.Hour

// Validate refuses a subject that names another kind of credential
// (graph.ReservedSubject): a token with sub "key:admin" or "anonymous"
// would pass for an API key or for anonymous readers in presence; a
// channels or publish claim that is not an array of strings; and an exp
// more than 10 years ahead. The JWT parser calls it once the signature is
// verified.
func (c *Claims) Validate() error {
	if why := graph.ReservedSubject(c.Subject); why != "" {
		return &tokenError{"invalid token: its subject (sub) " + why}
	}
	if c.invalid != "" {
		return &tokenError{fmt.Sprintf(`invalid token: the %s claim must be an array of strings (channel patterns), e.g. ["room:*"]`, c.invalid)}
	}
	if c.ExpiresAt != nil && time.Until(c.ExpiresAt.Time) > maxExpAhead {
		return &tokenError{"invalid token: exp is more than 10 years ahead; it must be in seconds since 1970 (NumericDate), " +
			"not milliseconds"}
	}
	return nil
}

// TokenVerifier verifies a subscriber token and returns its claims. Its
// errors are meant for the client: they say what is wrong without echoing
// the token.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*Claims, error)
}

// TokenConfig configures the verification of subscriber tokens. Secret and
// JWKSURL may both be set: HS256 tokens are then checked with the secret,
// RS256 and ES256 tokens with the key their kid names in the JWKS. With
// neither, every token is refused (only API keys read).
//
// The algorithm is pinned by the key, never chosen by the token alone:
// HS256 only with the secret, RS256 only with an RSA key (2048 bits or
// more), ES256 only with a P-256 key; any other alg, "none" included, is
// refused.
type TokenConfig struct {
	// Secret verifies HS256 tokens (a secret shared with the app backend).
	// Empty: HS256 tokens are refused.
	Secret string
	// JWKSURL is where the public keys of RS256 and ES256 tokens are
	// published as a JSON Web Key Set (http or https; use https outside a
	// trusted network). Empty: RS256 and ES256 tokens are refused.
	JWKSURL string
	// Issuer, when set, must equal the token's iss.
	Issuer string
	// Audience, when set, must be one of the token's aud.
	Audience string
	// Leeway is the clock skew allowed when checking exp, nbf and iat
	// (default 30 s; negative: none). A token is accepted until exp plus
	// Leeway, and a stream opened with it lasts as long.
	Leeway time.Duration
	// HTTPClient fetches the JWKS (default: a client with a 10 s timeout).
	HTTPClient *http.Client
	// MinRefreshInterval is the least time between two fetches of the JWKS
	// (default 1 min). The JWKS is fetched on first use, again when a token
	// names a kid the cached set lacks (key rotation) and when the cached
	// set is older than an hour; fetches that would come sooner are not
	// made, so a flood of tokens with made-up kids costs the JWKS endpoint
	// at most one request per interval.
	MinRefreshInterval time.Duration
}

// Defaults of TokenConfig.
const (
	DefaultTokenLeeway            = 30 * time.Second
	DefaultJWKSMinRefreshInterval = time.Minute
)

const (
	// maxTokenSize bounds the credential parsed as a token.
	maxTokenSize = 8 << 10
	// maxJWKSSize bounds a JWKS response.
	maxJWKSSize = 1 << 20
	// jwksMaxAge is how long cached keys are used without a refetch, so
	// that a key withdrawn from the JWKS stops being accepted.
	jwksMaxAge = time.Hour
	// jwksFetchTimeout bounds one fetch, whatever the HTTP client.
	jwksFetchTimeout = 10 * time.Second
)

// Validate reports a configuration NewTokenVerifier refuses.
func (c TokenConfig) Validate() error {
	if c.JWKSURL != "" {
		u, err := url.Parse(c.JWKSURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("the JWKS URL must be an absolute http or https URL")
		}
	}
	if c.MinRefreshInterval < 0 {
		return errors.New("the JWKS minimum refresh interval must not be negative")
	}
	return nil
}

// NewTokenVerifier returns the verifier cfg describes. It does no I/O: the
// JWKS is fetched when the first token needs it.
func NewTokenVerifier(cfg TokenConfig) (TokenVerifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("token verification: %w", err)
	}
	leeway := cfg.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultTokenLeeway
	case leeway < 0:
		leeway = 0
	}
	opts := []jwt.ParserOption{jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(leeway)}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v := &verifier{
		parser:   jwt.NewParser(opts...),
		leeway:   leeway,
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
	}
	if cfg.Secret != "" {
		v.secret = []byte(cfg.Secret)
	}
	if cfg.JWKSURL != "" {
		v.jwks = &jwks{url: cfg.JWKSURL, client: cfg.HTTPClient, minInterval: cfg.MinRefreshInterval}
		if v.jwks.client == nil {
			v.jwks.client = &http.Client{Timeout: jwksFetchTimeout}
		}
		if v.jwks.minInterval == 0 {
			v.jwks.minInterval = DefaultJWKSMinRefreshInterval
		}
	}
	return v, nil
}

// NewHS256Verifier returns a verifier of HS256 tokens with secret (an empty
// secret refuses every token), with the default leeway.
func NewHS256Verifier(secret string) TokenVerifier {
	v, err := NewTokenVerifier(TokenConfig{Secret: secret})
	if err != nil {
		panic(err) // a secret alone is always valid
	}
	return v
}

// SetTokenVerifier makes a verify subscriber tokens with v, in place of the
// HS256 verifier NewAuth made from its secret.
func (a *Auth) SetTokenVerifier(v TokenVerifier) { a.tokens = v }

// tokenError is an error a client is shown as is.
type tokenError struct{ msg string }

func (e *tokenError) Error() string { return e.msg }

// Why a token is refused: one distinct message each.
var (
	errTokensDisabled  = &tokenError{"invalid credentials: neither an API key nor a token (tokens are not enabled)"}
	errTokenMalformed  = &tokenError{"invalid credentials: neither an API key nor a valid token"}
	errTokenTooLong    = &tokenError{"invalid credentials: neither an API key nor a valid token (longer than 8 KiB)"}
	errTokenExpired    = &tokenError{"the token has expired"}
	errTokenNotYet     = &tokenError{"the token is not valid yet (nbf is in the future)"}
	errTokenIssuedLate = &tokenError{"the token is not valid yet (iat is in the future)"}
	errTokenSignature  = &tokenError{"invalid token: bad signature"}
	errTokenIssuer     = &tokenError{"invalid token: wrong issuer (iss)"}
	errTokenAudience   = &tokenError{"invalid token: wrong audience (aud)"}
	errTokenExpMissing = &tokenError{"invalid token: exp is required"}
	errTokenClaims     = &tokenError{"invalid token: invalid claims"}
	errTokenUnknownKey = &tokenError{"invalid token: unknown signing key (its kid is not in the JWKS)"}
	errJWKSUnavailable = &tokenError{"cannot verify the token now: the JWKS could not be fetched; retry later"}
)

// algNotAllowed says why a token's alg is refused. alg is echoed only when
// it is a name the JWT library knows, so no arbitrary header text is.
func algNotAllowed(alg, why string) *tokenError {
	if jwt.GetSigningMethod(alg) == nil {
		alg = "in the token"
	}
	return &tokenError{fmt.Sprintf("invalid token: the algorithm %s is not allowed: %s", alg, why)}
}

// verifier implements TokenVerifier for TokenConfig.
type verifier struct {
	secret   []byte // nil: HS256 refused
	jwks     *jwks  // nil: RS256 and ES256 refused
	parser   *jwt.Parser
	leeway   time.Duration
	issuer   string
	audience string
}

func (v *verifier) Verify(ctx context.Context, raw string) (*Claims, error) {
	if v.secret == nil && v.jwks == nil {
		return nil, errTokensDisabled
	}
	if len(raw) > maxTokenSize {
		return nil, errTokenTooLong
	}
	var c Claims
	// The parser checks the signature before any claim, so nothing is said
	// about the claims of a token that is not ours.
	if _, err := v.parser.ParseWithClaims(raw, &c, v.keyFunc(ctx)); err != nil {
		return nil, v.explain(err, &c)
	}
	return &c, nil
}

// validUntil returns the last instant the verifier accepts c.
func (v *verifier) validUntil(c *Claims) time.Time {
	return c.ExpiresAt.Add(v.leeway)
}

// keyFunc returns the key that verifies t: the one its alg is pinned to.
func (v *verifier) keyFunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		switch alg {
		case jwt.SigningMethodHS256.Alg():
			if v.secret == nil {
				return nil, algNotAllowed(alg, "no shared secret is configured (use RS256 or ES256 with a JWKS key)")
			}
			return v.secret, nil
		case jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg():
			if v.jwks == nil {
				return nil, algNotAllowed(alg, "no JWKS is configured (use HS256 with the shared secret)")
			}
			kid, ok := t.Header["kid"].(string)
			if !ok && t.Header["kid"] != nil {
				return nil, errTokenMalformed
			}
			k, err := v.jwks.key(ctx, kid)
			if err != nil {
				return nil, err
			}
			if k.alg != alg {
				return nil, algNotAllowed(alg, "its key is for "+k.alg+" only")
			}
			return k.pub, nil
		case jwt.SigningMethodNone.Alg():
			return nil, algNotAllowed(alg, "tokens must be signed")
		default:
			return nil, algNotAllowed(alg, "use HS256, RS256 or ES256")
		}
	}
}

// explain turns a parse error into the error the client sees; c holds the
// claims as parsed (checked only once the signature is).
func (v *verifier) explain(err error, c *Claims) error {
	if te, ok := errors.AsType[*tokenError](err); ok {
		return te
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return errTokenMalformed
	case errors.Is(err, jwt.ErrTokenUnverifiable): // alg missing or unknown
		return algNotAllowed("", "use HS256, RS256 or ES256")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return errTokenSignature
	case !errors.Is(err, jwt.ErrTokenInvalidClaims):
		return errTokenMalformed
	// Claims, in order of importance: a token from elsewhere is that
	// before it is expired.
	case c.ExpiresAt == nil:
		return errTokenExpMissing
	case v.issuer != "" && c.Issuer != v.issuer:
		return errTokenIssuer
	case v.audience != "" && !slices.Contains(c.Audience, v.audience):
		return errTokenAudience
	case errors.Is(err, jwt.ErrTokenExpired):
		return errTokenExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return errTokenNotYet
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return errTokenIssuedLate
	default:
		return errTokenClaims
	}
}

// jwks is a cached JSON Web Key Set. Keys are fetched on first use and
// again when a token names an unknown kid or the cache is older than
// jwksMaxAge, but never sooner than minInterval after the previous fetch;
// callers arriving while a fetch runs wait for it instead of starting
// another. A failed fetch keeps the keys already known.
//
// It is written here rather than taken from keyfunc/jwkset: those block
// callers on a rate limiter (up to a minute by default) instead of sharing
// the running fetch, and refresh from a goroutine whose lifetime server.New
// has no context for.
type jwks struct {
	url         string
	client      *http.Client
	minInterval time.Duration

	mu       sync.Mutex
	keys     map[string]jwkKey // nil until a fetch succeeds
	fetched  time.Time         // when keys were fetched
	attempt  time.Time         // when the last fetch started
	inflight chan struct{}     // closed when the running fetch ends
}

// jwkKey is a verification key and the one algorithm it is used with.
type jwkKey struct {
	alg string
	pub crypto.PublicKey
}

// key returns the key kid names.
func (s *jwks) key(ctx context.Context, kid string) (jwkKey, error) {
	s.mu.Lock()
	k, ok := s.keys[kid]
	fresh := time.Since(s.fetched) < jwksMaxAge
	s.mu.Unlock()
	if ok && fresh {
		return k, nil
	}
	s.refresh(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keys[kid]; ok {
		return k, nil
	}
	if s.keys == nil {
		return jwkKey{}, errJWKSUnavailable
	}
	return jwkKey{}, errTokenUnknownKey
}

// refresh fetches the key set, unless a fetch started less than
// minInterval ago; when one is running, it waits for it (or for ctx).
func (s *jwks) refresh(ctx context.Context) {
	s.mu.Lock()
	if done := s.inflight; done != nil {
		s.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
		}
		return
	}
	if !s.attempt.IsZero() && time.Since(s.attempt) < s.minInterval {
		s.mu.Unlock()
		return
	}
	s.attempt = time.Now()
	done := make(chan struct{})
	s.inflight = done
	s.mu.Unlock()

	// Others may be waiting on this fetch: it does not end with the
	// request that started it.
	keys, err := s.fetch(context.WithoutCancel(ctx))
	if err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Msg("jwks")
	}

	s.mu.Lock()
	if err == nil {
		s.keys, s.fetched = keys, time.Now()
	}
	s.inflight = nil
	close(done)
	s.mu.Unlock()
}

// fetch downloads and parses the key set. Keys that cannot verify a token
// here (other types, curves or algorithms, encryption keys, RSA keys under
// 2048 bits) are skipped; a set without one usable key is an error.
func (s *jwks) fetch(ctx context.Context) (map[string]jwkKey, error) {
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", s.url, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	res, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err) // the error names the URL
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: %s", s.url, res.Status)
	}
	var set struct {
		Keys []jwkJSON `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, maxJWKSSize)).Decode(&set); err != nil {
		return nil, fmt.Errorf("fetch %s: decode the key set: %w", s.url, err)
	}
	keys := make(map[string]jwkKey, len(set.Keys))
	var skipped []string
	for i, j := range set.Keys {
		k, err := j.key()
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d: %v", i, err))
			continue
		}
		if _, dup := keys[j.Kid]; !dup {
			keys[j.Kid] = k
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("fetch %s: no usable key (%s)", s.url, strings.Join(skipped, "; "))
	}
	return keys, nil
}

// jwkJSON is one JSON Web Key (RFC 7517, 7518), the fields used here.
type jwkJSON struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// key returns the verification key of j and its algorithm.
func (j jwkJSON) key() (jwkKey, error) {
	if j.Use != "" && j.Use != "sig" {
		return jwkKey{}, fmt.Errorf("use %q is not sig", j.Use)
	}
	switch j.Kty {
	case "RSA":
		if j.Alg != "" && j.Alg != "RS256" {
			return jwkKey{}, fmt.Errorf("RSA key for %q: only RS256 is supported", j.Alg)
		}
		n, err := b64url(j.N)
		if err != nil {
			return jwkKey{}, fmt.Errorf("RSA n: %w", err)
		}
		e, err := b64url(j.E)
		if err != nil {
			return jwkKey{}, fmt.Errorf("RSA e: %w", err)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n)}
		if eb := new(big.Int).SetBytes(e); eb.IsInt64() && eb.Int64() > 1 && eb.Int64() < 1<<31 && eb.Bit(0) == 1 {
			pub.E = int(eb.Int64())
		} else {
			return jwkKey{}, errors.New("RSA e is out of range")
		}
		if pub.N.BitLen() < 2048 {
			return jwkKey{}, fmt.Errorf("RSA key of %d bits: at least 2048 are needed", pub.N.BitLen())
		}
		return jwkKey{alg: "RS256", pub: pub}, nil
	case "EC":
		if j.Crv != "P-256" {
			return jwkKey{}, fmt.Errorf("EC curve %q: only P-256 is supported", j.Crv)
		}
		if j.Alg != "" && j.Alg != "ES256" {
			return jwkKey{}, fmt.Errorf("EC key for %q: only ES256 is supported", j.Alg)
		}
		x, err := b64url(j.X)
		if err != nil {
			return jwkKey{}, fmt.Errorf("EC x: %w", err)
		}
		y, err := b64url(j.Y)
		if err != nil {
			return jwkKey{}, fmt.Errorf("EC y: %w", err)
		}
		if len(x) != 32 || len(y) != 32 {
			return jwkKey{}, errors.New("EC P-256 coordinates must be 32 bytes")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), slices.Concat([]byte{4}, x, y))
		if err != nil {
			return jwkKey{}, fmt.Errorf("EC key: %w", err)
		}
		return jwkKey{alg: "ES256", pub: pub}, nil
	default:
		return jwkKey{}, fmt.Errorf("key type %q is not supported", j.Kty)
	}
}

// b64url decodes base64url, with or without padding.
func b64url(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
