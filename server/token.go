package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
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
}

// TokenVerifier verifies a subscriber token and returns its claims. Its
// errors are meant for the client: they say what is wrong without echoing
// the token.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*Claims, error)
}

// hs256 verifies tokens signed with a shared secret.
type hs256 struct {
	secret []byte
	parser *jwt.Parser
}

// NewHS256Verifier returns a verifier of HS256 tokens with secret (an empty
// secret refuses every token). exp is required.
func NewHS256Verifier(secret string) TokenVerifier {
	return &hs256{
		secret: []byte(secret),
		parser: jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired()),
	}
}

func (v *hs256) Verify(_ context.Context, raw string) (*Claims, error) {
	if len(v.secret) == 0 {
		return nil, errors.New("invalid credentials: neither an API key nor a token (tokens are not enabled)")
	}
	var c Claims
	_, err := v.parser.ParseWithClaims(raw, &c, func(*jwt.Token) (any, error) { return v.secret, nil })
	switch {
	case err == nil:
		return &c, nil
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, errors.New("the token has expired")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return nil, errors.New("invalid token: exp is required")
	default:
		return nil, fmt.Errorf("invalid credentials: neither an API key nor a valid token (%v)", err)
	}
}
