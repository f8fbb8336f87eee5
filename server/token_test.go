package server_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/server/access"
)

// Test keys. "TESTING KEY" stands for "PRIVATE KEY" so that secret scanners
// leave them alone.
const (
	rsaAPEM = `-----BEGIN TESTING KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDR9PhfolEKXFa8
/Ug/pPbUm9fHpX+nNrmetKWgup0ifgZ66ub/oz4Qd6CKW/yiTl3lHyTkB5Bv7aMe
lCo89BTKCQlwHsOZdziOZfK1AylbNLzKK55+TqiknFcid0pOX9BfMgl8nQWlePx+
UwFMGSChoFQwrVhcQBO4Ov9N1l+lu+BgjgjnlB82PD3qPv8+h6Jousgyo7Ekby1M
B0X+kOnnMoceX0iPMRcNOciaZX+vGEe9IymIKjp5YwCKmLkEV6bR5OdSndxXuaP5
fBMPZXgTOD1VmmStWrTuTVAqbCaSpESM0/TglbVAbc3LBvjfHCt8VWtMtV1YA6U2
SMh2OzGZAgMBAAECggEAGhMNQXs8C0hacVAXR+gpy0+rZZz1FIQkW0ReCW8DksQJ
8/v2Qis4yvzAUE6KOnH3ETxj7XnPA0eE6YhHEpjReCHVLTp02jtHJ9Aba0WAPlZ3
V7hBD7ifEwpje+FKth8KFrh1Gye5CsrSuLGASL4aIlhx/DWa8qH2kPuqtzT3XfKU
gi3R1HL8k7lz/B25TtkVwSuixB/ArcitxkDdVrsk7k9BcE6A70OqZzJ7sqw3oYRv
mIlEjR/k/Y+1mCMy6NEy8ZdmadBH6kGZbz2n1I7lrv30ucdMhPnmJPUdvNbKf7Bb
d2AHHneHDZ3nkAITMx4WqEfpQ9sDOMkeifAM/Sb2AQKBgQD2oU1yzxn86O9OmwPr
ezO6OQ8qnGFJTaVn26/CbqOjWNKMby3Yrk4pGlcQiZons9WfBvry4rCgv2Rk4e6k
ObU4B9D//zvfiJbK7fSayRl+7sotTTIu0xd5xcQ2guEGIBf9fMvw5jpSMLKQvxaA
z+3Z/9uZz1RlVz0tPnzabk9O2QKBgQDZ7v0GH9/akMx85S3CT9mAoh4LnmvF7lXp
E+lQTkSp/3HCJQ0ZxB57PgAJdlw9iZXZl1ZCNXyNsmx4X3J4T1VZB7c90OxcKMMt
D/YW61eCUIHzOtOFM3unpV3EUpIpZYfehQXUZ5sohZ7Uj5VnklU7vYD4+KLkkjSb
yqx6hv7AwQKBgQCg9tPKa7qFYy3Uur2LMiSnlNf+MoQYSJH8v9ftaTJpyO3Z9DIS
6mhe0S8jvvsakHeKzA56+VLYBzIp2X9cNcG9qPRSMC3OjaIFHdr4Lunx+z1+5ZQs
FV+L/XQ7M55T1hxyN8IPHuPPgrL4X477UTnmfuO/dh6Z6Z8m6VKpaTdfuQKBgHQ7
/QOpOHGQTSBH85HxmKX80V2NDxowNe3sSsIkHIc20Oula0lUypUcylRBpozDtwKo
rr79XAMPKL9C2QDF/1VOwjLcHVRCAWclXjF3L+M3ITgjJfGjNc6CanJtP7uIhWDv
Pd69q4l/Suk/84WcDI2iUwl3Qxn5yMlW3Ys0OOeBAoGBAIzRFQIniFaRLCCOwZA/
uZwcQHYfRP39t9HgfckWTqtJmQC9yN8pEKBg1Bp8zRBb4UcJd9AItZkvaemudYMr
gAQMdiGWkFmqM393mezXPBX1ZP0nrxxJUd+mZR0lR9pi7uwPmdhn8BpJJY2ToutF
ysUoez214CX8Ri0f+0NMoTcP
-----END TESTING KEY-----
`
	rsaBPEM = `-----BEGIN TESTING KEY-----
MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQDPHaqi7m2C9NSb
k8XGGbU+EYefvG/lzd/YfFg50FvbZLz7jiS1SSrG5ubgHCKByuJJShdQ0r8eePse
14rgdM6qGI1kzHQN9vyOqsvVfQzLQzJMkAS/yT115t0pVXpVsseyb7zHzp3SsE9d
sP18Pk0NV7CRXxnl2X67nrOjpQt7IwvrZdzkelVR3ky+MMrEnFqaofL/fG71p/cM
zaeOIwiXbx/px0IRraKpya7mSrZUXThuwU8RBHWFpne4fGsyM48Hlg86oB47cyh5
DUhuFOt3diiz7aES3VYPVfZmq4Ai9ngF+vEbCz0pZII8xms/Kk149oOr0VAJUMDq
miMHbtabAgMBAAECggEAEd5cDnkZUjWGMpmIQN2OurkJC7M84iu/Vq5WCQx2Iewq
HV43jrsuKU5AqyNL2zyVbKZFDOOJupRmC4fXNiM0G0FJnZTBpHZjdqy6/JzjyC69
cOG+wlixAgvo/VWf25nnfng2ZlsBWCAYhAHh9K1shcZD3pINkKKrIbIait4Rd5q4
ABo/l45a9VCrQxHQIwSCU/+IBZD2dtL+APs04Y7eodNPG8XRduWDJ565KNFIHXH7
75ykyF6kCfYDhAuUhCZRMQGcZdbOUfd2zXzvRG81b7mxulxkG/OTYhzuZpdN6x3m
pX2u8hGo0kszxz+XK9M2o5v9t0DuUgPI/04tWhyKFQKBgQD/YQQ6YZJI60sMAHs+
Dk/hbU8IPeZebTEj2001jNgmVUm3LtQu07CEd15b8+lMwqvEqpbyDhjAdmc2oQdg
u9p+OzaxENYnQViQf5R49PJ31FSzh2h/v4B75/t9hiHOH0GWHvR/Ag96CyCz3LGa
OanAshMFBV7paxJluzDq/heklwKBgQDPnpq3MrpeMdgycNyjC7mdn+Ycergyi69x
Q+SKZt5v5MwDTUUD/NmWPPJ1VAXUUTNpShTylmZpaAYLH5pJkV9Glzn245Gfwb+b
S6OCMQTGJx2t4EzSF/y+8oYQavVG/0FGLEirp90L+bGToXw0kjESj1wWq3hyTVHp
JZGoWKcKnQKBgQDlvBTdoCDE0EZ2yYgUzzM1C+xo8aZnk7r9Eq9mWQmpklf6Hnpq
lazZvbh45/ccQpPbG8smfV/u45T+I+ZLMzLfE82jhA3iynoto1ehaFknSy/XQRzU
ryWaUZp/1UZb8upBbh9skiHyHEiTBRoQL4dx/b/2aFp1iQjH05myDFqgiQKBgQCe
FPlge/ODPRiMb3rPemH+Ln2bOaV+dvVCnJsq9mBvehoMeY0PGDrkNcu2oh8+JgWr
KYkBnJqlr1rKpWlokpOkwAiWf3el2HP33oPE4WXtKmNivOJBJZqAGVEStx3CzR/6
OkWqzcl1EM2wxsg3jwhmRVmsuSqgfVbc2oopUDb/0QKBgQC05AHzs7jaRN6KzTdw
KLB2+Efa0yRGCG4/ds78wbo5Bk1TfgO6+yKQOtNKdAuv0W7L5vjAnmISEm0nx4p9
FbkFOyt2++MPEgXoCv3hrHi0Gl6D7+avtyQObs+QD60/7iQzQySrY7aIkzoQilRd
VVWd5dx6yRJ2pT6DT3dlAXZ7VQ==
-----END TESTING KEY-----
`
	ecAPEM = `-----BEGIN TESTING KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgYw7PJGF5+hSTZi2H
okw2ZIq+Vk4lb94cXMzsCEbiz8KhRANCAARbnyLUtcou24ojVGqF2BGXKmMKYPII
BRGA9GkyrIMg5gSQmPLJ6nE6ZhC2xLzhxOpxO2H6uMWj70xYM05eUyOU
-----END TESTING KEY-----
`
)

var (
	rsaA = parseTestKey(rsaAPEM).(*rsa.PrivateKey)
	rsaB = parseTestKey(rsaBPEM).(*rsa.PrivateKey)
	ecA  = parseTestKey(ecAPEM).(*ecdsa.PrivateKey)
)

func parseTestKey(s string) crypto.Signer {
	block, _ := pem.Decode([]byte(strings.ReplaceAll(s, "TESTING KEY", "PRIVATE KEY")))
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		panic(err)
	}
	return k.(crypto.Signer)
}

func rsaJWK(kid string, k *rsa.PublicKey) map[string]any {
	return map[string]any{
		"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
	}
}

func ecJWK(kid string, k *ecdsa.PublicKey) map[string]any {
	point, err := k.Bytes() // 0x04 || x || y
	if err != nil {
		panic(err)
	}
	return map[string]any{
		"kty": "EC", "kid": kid, "crv": "P-256",
		"x": base64.RawURLEncoding.EncodeToString(point[1:33]),
		"y": base64.RawURLEncoding.EncodeToString(point[33:]),
	}
}

// jwksServer serves a JWK Set the test may change, and records when each
// request came.
type jwksServer struct {
	url   string
	mu    sync.Mutex
	keys  []map[string]any
	delay time.Duration
	hits  []time.Time
}

func startJWKS(t testing.TB, keys ...map[string]any) *jwksServer {
	t.Helper()
	s := &jwksServer{keys: keys}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits = append(s.hits, time.Now())
		body, _ := json.Marshal(map[string]any{"keys": s.keys})
		delay := s.delay
		s.mu.Unlock()
		time.Sleep(delay) // a slow identity provider
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(ts.Close)
	s.url = ts.URL + "/.well-known/jwks.json"
	return s
}

func (s *jwksServer) set(delay time.Duration, keys ...map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys, s.delay = keys, delay
}

// requests returns when the JWKS was fetched.
func (s *jwksServer) requests() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.hits...)
}

// mint signs claims, with kid in the header unless it is "".
func mint(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsigned crafts a token by hand: header and claims as given, signature sig.
func unsigned(header, claims, sig string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(claims)) + "." + sig
}

const (
	testIssuer   = "https://auth.test"
	testAudience = "pushgate"
)

// claims returns claims granting every channel for an hour, with the test
// issuer and audience, changed by edit.
func claims(edit func(c *access.Claims)) access.Claims {
	c := access.Claims{
		Channels: []string{"*"},
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   "u1",
			Issuer:    testIssuer,
			Audience:  jwt.ClaimStrings{testAudience},
			ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
		},
	}
	if edit != nil {
		edit(&c)
	}
	return c
}

// readWith reads a channel's history with cred and returns the error
// (code and message), or "" when the read was allowed.
func (e *env) readWith(t *testing.T, cred string) (code, msg string) {
	t.Helper()
	res := e.do(t, cred, `query { history(channel: "news:1") { nodes { id } } }`, nil)
	if len(res.Errors) == 0 {
		return "", ""
	}
	return res.code(t), res.Errors[0].Message
}

// TestHostileTokens: every token that must not pass is refused with
// UNAUTHENTICATED and a message saying why, distinct for each reason and
// never echoing the token; the good ones pass.
func TestHostileTokens(t *testing.T) {
	keys := startJWKS(t, rsaJWK("rsa-a", &rsaA.PublicKey), ecJWK("ec-a", &ecA.PublicKey))
	broker := memoryBroker(t, pubsub.Options{})

	// Secret and JWKS, issuer and audience required.
	full := testConfig()
	full.Tokens = access.TokenConfig{JWKSURL: keys.url, Issuer: testIssuer, Audience: testAudience}
	envs := map[string]*env{
		"secret+jwks": startEnv(t, full, broker),
		"secret":      startEnv(t, testConfig(), broker),
		"jwks": startEnv(t, server.Config{
			APIKeys: []access.APIKey{{Name: "test", Secret: testKey}},
			Tokens:  access.TokenConfig{JWKSURL: keys.url},
		}, broker),
	}
	envs["secret"].send(t, "news:1", "hello")

	secret := []byte(testJWTSecret)
	pubDER, err := x509.MarshalPKIXPublicKey(&rsaA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	exp := fmt.Sprintf(`{"channels":["*"],"iss":%q,"aud":%q,"exp":%d}`, testIssuer, testAudience, time.Now().Add(time.Hour).Unix())
	in := func(d time.Duration) *jwt.NumericDate { return jwt.NewNumericDate(time.Now().Add(d)) }

	// why names the reason a token is refused: tokens refused for the same
	// reason must get the same message, and different reasons different
	// ones. want is a part of that message.
	for _, c := range []struct {
		name, env, token, why, want string
	}{
		{"HS256", "secret+jwks", mint(t, jwt.SigningMethodHS256, secret, "", claims(nil)), "", ""},
		{"RS256", "secret+jwks", mint(t, jwt.SigningMethodRS256, rsaA, "rsa-a", claims(nil)), "", ""},
		{"ES256", "secret+jwks", mint(t, jwt.SigningMethodES256, ecA, "ec-a", claims(nil)), "", ""},
		{"HS256 without iss and aud where not required", "secret", token(t, "u1", []string{"*"}, time.Hour), "", ""},
		{"expired within the leeway", "secret+jwks",
			mint(t, jwt.SigningMethodHS256, secret, "", claims(func(c *access.Claims) { c.ExpiresAt = in(-10 * time.Second) })), "", ""},
		{"nbf within the leeway", "secret+jwks",
			mint(t, jwt.SigningMethodRS256, rsaA, "rsa-a", claims(func(c *access.Claims) { c.NotBefore = in(10 * time.Second) })), "", ""},
		{"iat within the leeway", "secret+jwks",
			mint(t, jwt.SigningMethodES256, ecA, "ec-a", claims(func(c *access.Claims) { c.IssuedAt = in(10 * time.Second) })), "", ""},

		{"expired", "secret+jwks",
			mint(t, jwt.SigningMethodHS256, secret, "", claims(func(c *access.Claims) { c.ExpiresAt = in(-time.Minute) })),
			"expired", "the token has expired"},
		{"expired RS256", "secret+jwks",
			mint(t, jwt.SigningMethodRS256, rsaA, "rsa-a", claims(func(c *access.Claims) { c.ExpiresAt = in(-time.Hour) })),
			"expired", "the token has expired"},
		{"nbf in the future", "secret+jwks",
			mint(t, jwt.SigningMethodHS256, secret, "", claims(func(c *access.Claims) { c.NotBefore = in(2 * time.Minute) })),
			"nbf", "not valid yet (nbf"},
		{"iat in the future", "secret+jwks",
			mint(t, jwt.SigningMethodHS256, secret, "", claims(func(c *access.Claims) { c.IssuedAt = in(2 * time.Minute) })),
			"iat", "not valid yet (iat"},
		{"HS256 with another secret", "secret+jwks", mint(t, jwt.SigningMethodHS256, []byte("other"), "", claims(nil)),
			"signature", "bad signature"},
		{"RS256 with another key under a known kid", "secret+jwks", mint(t, jwt.SigningMethodRS256, rsaB, "rsa-a", claims(nil)),
			"signature", "bad signature"},
		{"ES256 with its signature altered", "secret+jwks",
			mint(t, jwt.SigningMethodES256, ecA, "ec-a", claims(nil)) + "A", "signature", "bad signature"},
		{"claims altered after signing", "secret",
			func() string {
				parts := strings.Split(token(t, "u1", []string{"news:1"}, time.Hour), ".")
				parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"channels":["*"],"exp":4102444800}`))
				return strings.Join(parts, ".")
			}(), "signature", "bad signature"},
		{"HS256 keyed with the RSA public key PEM (JWKS only)", "jwks",
			mint(t, jwt.SigningMethodHS256, pubPEM, "rsa-a", claims(nil)), "no secret", "algorithm HS256 is not allowed"},
		{"HS256 keyed with the RSA public key DER (JWKS only)", "jwks",
			mint(t, jwt.SigningMethodHS256, pubDER, "rsa-a", claims(nil)), "no secret", "algorithm HS256 is not allowed"},
		{"HS256 keyed with the RSA public key PEM (secret and JWKS)", "secret+jwks",
			mint(t, jwt.SigningMethodHS256, pubPEM, "rsa-a", claims(nil)), "signature", "bad signature"},
		{"RS256 when only a secret is configured", "secret",
			mint(t, jwt.SigningMethodRS256, rsaA, "rsa-a", claims(nil)), "no jwks", "algorithm RS256 is not allowed"},
		{"RS256 under the kid of an EC key", "secret+jwks", mint(t, jwt.SigningMethodRS256, rsaA, "ec-a", claims(nil)),
			"key for ES256", "its key is for ES256 only"},
		{"ES256 under the kid of an RSA key", "secret+jwks", mint(t, jwt.SigningMethodES256, ecA, "rsa-a", claims(nil)),
			"key for RS256", "its key is for RS256 only"},
		{"alg none", "secret+jwks", unsigned(`{"alg":"none","typ":"JWT"}`, exp, ""), "none", "algorithm none is not allowed"},
		{"alg none with a signature", "secret+jwks", unsigned(`{"alg":"none"}`, exp, "c2ln"), "none", "algorithm none is not allowed"},
		{"alg NONE", "secret+jwks", unsigned(`{"alg":"NONE"}`, exp, ""), "unknown alg", "algorithm in the token is not allowed"},
		{"no alg", "secret+jwks", unsigned(`{"typ":"JWT"}`, exp, ""), "unknown alg", "algorithm in the token is not allowed"},
		{"HS512", "secret+jwks", mint(t, jwt.SigningMethodHS512, secret, "", claims(nil)), "HS512", "algorithm HS512 is not allowed"},
		{"RS384", "secret+jwks", mint(t, jwt.SigningMethodRS384, rsaA, "rsa-a", claims(nil)), "RS384", "algorithm RS384 is not allowed"},
		{"PS256", "secret+jwks", mint(t, jwt.SigningMethodPS256, rsaA, "rsa-a", claims(nil)), "PS256", "algorithm PS256 is not allowed"},
		{"wrong aud", "secret+jwks",
			mint(t, jwt.SigningMethodRS256, rsaA, "rsa-a", claims(func(c *access.Claims) { c.Audience = jwt.ClaimStrings{"other"} })),
			"aud", "wrong audience"},
		{"no aud", "secret+jwks",
			mint(t, jwt.SigningMethodHS256, secret, "", claims(func(c *access.Claims) { c.Audience = nil })), "aud", "wrong audience"},
		{"wrong iss", "secret+jwks",
			mint(t, jwt.SigningMethodES256, ecA, "ec-a", claims(func(c *access.Claims) { c.Issuer = "https://evil.test" })),
			"iss", "wrong issuer"},
		{"wrong iss, also expired", "secret+jwks",
			mint(t, jwt.SigningMethodHS256, secret, "", claims(func(c *access.Claims) {
				c.Issuer, c.ExpiresAt = "https://evil.test", in(-time.Hour)
			})), "iss", "wrong issuer"},
		{"unknown kid", "secret+jwks", mint(t, jwt.SigningMethodRS256, rsaB, "rsa-b", claims(nil)), "kid", "unknown signing key"},
		{"no kid", "secret+jwks", mint(t, jwt.SigningMethodRS256, rsaA, "", claims(nil)), "kid", "unknown signing key"},
		{"missing exp", "secret+jwks",
			mint(t, jwt.SigningMethodRS256, rsaA, "rsa-a", claims(func(c *access.Claims) { c.ExpiresAt = nil })), "exp", "exp is required"},
		{"missing exp HS256", "secret", mint(t, jwt.SigningMethodHS256, secret, "", access.Claims{Channels: []string{"*"}}),
			"exp", "exp is required"},
		// Shapes of claims that are easy to get wrong: each says what is
		// wrong, once the signature is ours.
		{"exp in milliseconds", "secret", mint(t, jwt.SigningMethodHS256, secret, "",
			jwt.MapClaims{"channels": []string{"*"}, "exp": time.Now().Add(time.Hour).UnixMilli()}),
			"ms exp", "exp is more than 10 years ahead; it must be in seconds since 1970"},
		{"channels a string", "secret", mint(t, jwt.SigningMethodHS256, secret, "",
			jwt.MapClaims{"channels": "news:*", "exp": time.Now().Add(time.Hour).Unix()}),
			"channels", "the channels claim must be an array of strings"},
		{"channels of numbers", "secret", mint(t, jwt.SigningMethodHS256, secret, "",
			jwt.MapClaims{"channels": []int{1, 2}, "exp": time.Now().Add(time.Hour).Unix()}),
			"channels", "the channels claim must be an array of strings"},
		{"publish an object", "secret", mint(t, jwt.SigningMethodHS256, secret, "",
			jwt.MapClaims{"channels": []string{"*"}, "publish": map[string]any{"news": true}, "exp": time.Now().Add(time.Hour).Unix()}),
			"publish", "the publish claim must be an array of strings"},
		{"channels a string, another secret", "secret", mint(t, jwt.SigningMethodHS256, []byte("other"), "",
			jwt.MapClaims{"channels": "news:*", "exp": time.Now().Add(time.Hour).Unix()}),
			"signature", "bad signature"},
		{"exp nine years ahead, in seconds", "secret", mint(t, jwt.SigningMethodHS256, secret, "",
			jwt.MapClaims{"channels": []string{"*"}, "exp": time.Now().Add(9 * 365 * 24 * time.Hour).Unix()}), "", ""},
		{"garbage", "secret+jwks", "not-a-key-nor-a-token", "garbage", "neither an API key nor a valid token"},
		{"three garbage segments", "secret+jwks", "a.b.c", "garbage", "neither an API key nor a valid token"},
		{"huge", "secret+jwks", strings.Repeat("a", 9000) + ".b.c", "huge", "longer than 8 KiB"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, msg := envs[c.env].readWith(t, c.token)
			switch {
			case c.want == "" && code != "":
				t.Fatalf("refused (%s: %s), want accepted", code, msg)
			case c.want == "":
				return
			case code != "UNAUTHENTICATED" || !strings.Contains(msg, c.want):
				t.Fatalf("got %s %q, want UNAUTHENTICATED with %q", code, msg, c.want)
			}
			for _, part := range strings.Split(c.token, ".") {
				if len(part) > 8 && strings.Contains(msg, part) {
					t.Fatalf("the message %q echoes the token", msg)
				}
			}
		})
	}

	// The same reasons, gathered: one message per reason.
	t.Run("distinct", func(t *testing.T) {
		byWhy := map[string]string{}
		whyOf := map[string]string{}
		for _, c := range []struct{ why, env, token string }{
			{"expired", "secret", token(t, "u1", []string{"*"}, -time.Hour)},
			{"nbf", "secret", mint(t, jwt.SigningMethodHS256, secret, "", claims(func(c *access.Claims) { c.NotBefore = in(time.Hour) }))},
			{"iat", "secret", mint(t, jwt.SigningMethodHS256, secret, "", claims(func(c *access.Claims) { c.IssuedAt = in(time.Hour) }))},
			{"signature", "secret", mint(t, jwt.SigningMethodHS256, []byte("x"), "", claims(nil))},
			{"none", "secret", unsigned(`{"alg":"none"}`, exp, "")},
			{"no secret", "jwks", mint(t, jwt.SigningMethodHS256, pubPEM, "rsa-a", claims(nil))},
			{"no jwks", "secret", mint(t, jwt.SigningMethodRS256, rsaA, "rsa-a", claims(nil))},
			{"aud", "secret+jwks", mint(t, jwt.SigningMethodHS256, secret, "", claims(func(c *access.Claims) { c.Audience = nil }))},
			{"iss", "secret+jwks", mint(t, jwt.SigningMethodHS256, secret, "", claims(func(c *access.Claims) { c.Issuer = "x" }))},
			{"kid", "jwks", mint(t, jwt.SigningMethodRS256, rsaA, "nope", claims(nil))},
			{"exp", "secret", mint(t, jwt.SigningMethodHS256, secret, "", access.Claims{})},
			{"garbage", "secret", "garbage"},
		} {
			_, msg := envs[c.env].readWith(t, c.token)
			if prev, ok := byWhy[c.why]; ok && prev != msg {
				t.Errorf("%s: two messages %q and %q", c.why, prev, msg)
			}
			if other, ok := whyOf[msg]; ok && other != c.why {
				t.Errorf("%s and %s share the message %q", c.why, other, msg)
			}
			byWhy[c.why], whyOf[msg] = msg, c.why
		}
	})
}

// TestTokensOverEveryTransport: a refused token is refused with the same
// clear message on SSE and long-poll (plain HTTP errors).
func TestTokensOverEveryTransport(t *testing.T) {
	e := startEnv(t, testConfig(), memoryBroker(t, pubsub.Options{}))
	expired := token(t, "u1", []string{"*"}, -time.Hour)
	for _, path := range []string{"/events", "/poll"} {
		res, err := http.Get(e.url + path + "?channel=news:1&token=" + expired)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error struct{ Code, Message string }
		}
		err = json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusUnauthorized || body.Error.Code != "UNAUTHENTICATED" ||
			body.Error.Message != "the token has expired" {
			t.Fatalf("%s: %s %+v (%v)", path, res.Status, body, err)
		}
	}
}

// TestJWKS: RS256 and ES256 tokens verify against the JWKS; a key rotation
// is picked up without a restart, callers arriving during a fetch share it,
// and a flood of unknown kids fetches the JWKS at most once per interval.
func TestJWKS(t *testing.T) {
	const interval = 500 * time.Millisecond
	keys := startJWKS(t, rsaJWK("rsa-a", &rsaA.PublicKey), ecJWK("ec-a", &ecA.PublicKey))
	e := startEnv(t, server.Config{
		APIKeys: []access.APIKey{{Name: "test", Secret: testKey}},
		Tokens:  access.TokenConfig{JWKSURL: keys.url, MinRefreshInterval: interval},
	}, memoryBroker(t, pubsub.Options{}))
	e.send(t, "news:1", "hello")

	accepted := func(tok string) bool {
		code, msg := e.readWith(t, tok)
		if code != "" && !strings.Contains(msg, "unknown signing key") {
			t.Fatalf("%s: %s", code, msg)
		}
		return code == ""
	}
	// concurrently reads with n tokens at once and returns how many passed.
	concurrently := func(n int, tok func(i int) string) int {
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		for i := range n {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodPost, e.url+"/graphql",
					strings.NewReader(`{"query":"{ history(channel: \"news:1\") { nodes { id } } }"}`))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+tok(i))
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				defer res.Body.Close()
				var out gqlResponse
				if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
					t.Error(err)
					return
				}
				if len(out.Errors) == 0 {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return ok
	}
	// idle waits until a fetch would be allowed again.
	idle := func() {
		eventually(t, "the refresh interval passes", func() bool {
			hits := keys.requests()
			return len(hits) > 0 && time.Since(hits[len(hits)-1]) > interval
		})
	}

	if !accepted(mint(t, jwt.SigningMethodRS256, rsaA, "rsa-a", claims(nil))) ||
		!accepted(mint(t, jwt.SigningMethodES256, ecA, "ec-a", claims(nil))) {
		t.Fatal("a token signed with a JWKS key was refused")
	}
	if n := len(keys.requests()); n != 1 {
		t.Fatalf("%d fetches of the JWKS, want 1", n)
	}

	t.Run("rotation", func(t *testing.T) {
		idle()
		before := len(keys.requests())
		// The identity provider adds a key and signs with it; the fetch is
		// slow, so that the first tokens all arrive while it runs.
		keys.set(200*time.Millisecond, rsaJWK("rsa-a", &rsaA.PublicKey), rsaJWK("rsa-b", &rsaB.PublicKey))
		fresh := mint(t, jwt.SigningMethodRS256, rsaB, "rsa-b", claims(nil))
		if n := concurrently(20, func(int) string { return fresh }); n != 20 {
			t.Fatalf("%d of 20 tokens with the new key passed", n)
		}
		if n := len(keys.requests()) - before; n != 1 {
			t.Fatalf("%d fetches for the new key, want 1", n)
		}
		if !accepted(mint(t, jwt.SigningMethodRS256, rsaA, "rsa-a", claims(nil))) {
			t.Fatal("the old key, still published, was dropped")
		}
	})

	t.Run("flood of unknown kids", func(t *testing.T) {
		idle()
		keys.set(0, rsaJWK("rsa-a", &rsaA.PublicKey), rsaJWK("rsa-b", &rsaB.PublicKey))
		before := len(keys.requests())
		start := time.Now()
		for range 3 {
			if n := concurrently(50, func(i int) string {
				return mint(t, jwt.SigningMethodRS256, rsaB, fmt.Sprintf("bogus-%d", i), claims(nil))
			}); n != 0 {
				t.Fatalf("%d tokens with unknown kids passed", n)
			}
		}
		hits := keys.requests()
		elapsed := time.Since(start)
		// A loaded machine only lengthens elapsed, which allows more: the
		// bound never fails for slowness. (The gaps between the fetches'
		// arrivals are no oracle: a fetch's request may arrive late.)
		if n, most := len(hits)-before, int(elapsed/interval)+1; n < 1 || n > most {
			t.Fatalf("%d fetches in %v, want 1 to %d", n, elapsed, most)
		}
	})

	// The interval itself, without the clock: with an hour's interval,
	// after the first fetch no flood of unknown kids fetches again.
	t.Run("flood within the interval", func(t *testing.T) {
		keys := startJWKS(t, rsaJWK("rsa-a", &rsaA.PublicKey))
		e := startEnv(t, server.Config{
			APIKeys: []access.APIKey{{Name: "test", Secret: testKey}},
			Tokens:  access.TokenConfig{JWKSURL: keys.url, MinRefreshInterval: time.Hour},
		}, memoryBroker(t, pubsub.Options{}))
		e.send(t, "news:1", "hello")
		if code, msg := e.readWith(t, mint(t, jwt.SigningMethodRS256, rsaA, "rsa-a", claims(nil))); code != "" {
			t.Fatalf("%s: %s", code, msg)
		}
		for i := range 150 {
			if code, msg := e.readWith(t, mint(t, jwt.SigningMethodRS256, rsaB, fmt.Sprintf("bogus-%d", i), claims(nil))); !strings.Contains(msg, "unknown signing key") {
				t.Fatalf("unknown kid: %s %s", code, msg)
			}
		}
		if n := len(keys.requests()); n != 1 {
			t.Fatalf("%d fetches of the JWKS within its interval, want 1", n)
		}
	})

	t.Run("withdrawn key", func(t *testing.T) {
		idle()
		keys.set(0, rsaJWK("rsa-b", &rsaB.PublicKey))
		// A token naming an unknown kid triggers the refetch that drops rsa-a.
		if accepted(mint(t, jwt.SigningMethodRS256, rsaB, "bogus", claims(nil))) {
			t.Fatal("unknown kid passed")
		}
		if accepted(mint(t, jwt.SigningMethodRS256, rsaA, "rsa-a", claims(nil))) {
			t.Fatal("a token signed with a withdrawn key passed")
		}
	})
}

// TestJWKSUnavailable: when the JWKS cannot be fetched, RS256 tokens are
// refused with a message that says so, and HS256 ones still pass.
func TestJWKSUnavailable(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	cfg := testConfig()
	cfg.Tokens.JWKSURL = down.URL
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	e.send(t, "news:1", "hello")
	code, msg := e.readWith(t, mint(t, jwt.SigningMethodRS256, rsaA, "rsa-a", claims(nil)))
	if code != "UNAUTHENTICATED" || !strings.Contains(msg, "JWKS could not be fetched") {
		t.Fatalf("got %s %q", code, msg)
	}
	if code, msg := e.readWith(t, token(t, "u1", []string{"*"}, time.Hour)); code != "" {
		t.Fatalf("HS256: %s %q", code, msg)
	}
}

func TestTokenConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg access.TokenConfig
		ok  bool
	}{
		{access.TokenConfig{}, true},
		{access.TokenConfig{Secret: "s", JWKSURL: "https://auth.example/.well-known/jwks.json"}, true},
		{access.TokenConfig{JWKSURL: "http://127.0.0.1:8081/jwks"}, true},
		{access.TokenConfig{JWKSURL: "auth.example/jwks"}, false},
		{access.TokenConfig{JWKSURL: "ftp://auth.example/jwks"}, false},
		{access.TokenConfig{JWKSURL: "https:///jwks"}, false},
		{access.TokenConfig{MinRefreshInterval: -time.Second}, false},
	} {
		err := c.cfg.Validate()
		if (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.cfg, err)
		}
		if _, nerr := access.NewTokenVerifier(c.cfg); (nerr == nil) != c.ok {
			t.Errorf("NewTokenVerifier(%+v): %v", c.cfg, nerr)
		}
	}
}

// FuzzVerifyToken: Verify never panics and never echoes the token in its
// error. Two verifiers are fuzzed, one with the default leeway and no
// issuer or audience, one with an issuer, an audience and no leeway; for
// each, an oracle written from RFC 7519 with the standard library alone
// (not the JWT library) holds: a token accepted is signed with a configured
// key (its alg pinned to that key), has exp, is not past exp + leeway, not
// before nbf - leeway nor iat - leeway, and has the issuer and the
// audience asked for; and a token signed with a configured key whose
// claims decode and are all right by a margin of two seconds is accepted.
// The committed corpus is in testdata/fuzz/FuzzVerifyToken.
func FuzzVerifyToken(f *testing.F) {
	keys := startJWKS(f, rsaJWK("rsa-a", &rsaA.PublicKey), ecJWK("ec-a", &ecA.PublicKey))
	secret := []byte(testJWTSecret)
	pub := map[string]crypto.PublicKey{"rsa-a": &rsaA.PublicKey, "ec-a": &ecA.PublicKey}
	type verifierCase struct {
		name     string
		v        access.TokenVerifier
		issuer   string
		audience string
		leeway   time.Duration
	}
	var verifiers []verifierCase
	for _, c := range []struct {
		cfg    access.TokenConfig
		leeway time.Duration
	}{
		{access.TokenConfig{Secret: testJWTSecret, JWKSURL: keys.url}, access.DefaultTokenLeeway},
		{access.TokenConfig{Secret: testJWTSecret, JWKSURL: keys.url, Issuer: testIssuer, Audience: testAudience, Leeway: -1}, 0},
	} {
		v, err := access.NewTokenVerifier(c.cfg)
		if err != nil {
			f.Fatal(err)
		}
		verifiers = append(verifiers, verifierCase{fmt.Sprintf("iss %q aud %q leeway %v", c.cfg.Issuer, c.cfg.Audience, c.leeway), v, c.cfg.Issuer, c.cfg.Audience, c.leeway})
	}
	at := func(year int) *jwt.NumericDate {
		return jwt.NewNumericDate(time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC))
	}
	forever := func(edit func(c *access.Claims)) access.Claims {
		c := access.Claims{Channels: []string{"*"}, RegisteredClaims: jwt.RegisteredClaims{
			Subject: "u1", Issuer: testIssuer, Audience: jwt.ClaimStrings{testAudience}, ExpiresAt: at(time.Now().Year() + 5),
		}}
		if edit != nil {
			edit(&c)
		}
		return c
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&rsaA.PublicKey)
	hs := func(edit func(c *access.Claims)) string {
		return mint(f, jwt.SigningMethodHS256, secret, "", forever(edit))
	}
	for _, seed := range []string{
		hs(nil),
		mint(f, jwt.SigningMethodRS256, rsaA, "rsa-a", forever(nil)),
		mint(f, jwt.SigningMethodES256, ecA, "ec-a", forever(nil)),
		mint(f, jwt.SigningMethodHS256, pubDER, "rsa-a", forever(nil)),
		mint(f, jwt.SigningMethodRS256, rsaA, "ec-a", forever(nil)),
		hs(func(c *access.Claims) { c.ExpiresAt = nil }),
		hs(func(c *access.Claims) { c.ExpiresAt = at(2000) }),
		hs(func(c *access.Claims) { c.NotBefore = at(2100) }),
		hs(func(c *access.Claims) { c.NotBefore = at(2000); c.IssuedAt = at(2000) }),
		hs(func(c *access.Claims) { c.IssuedAt = at(2099) }),
		hs(func(c *access.Claims) { c.Issuer = "https://elsewhere.test" }),
		hs(func(c *access.Claims) { c.Issuer = "" }),
		hs(func(c *access.Claims) { c.Audience = jwt.ClaimStrings{"other", testAudience} }),
		hs(func(c *access.Claims) { c.Audience = jwt.ClaimStrings{"other"} }),
		hs(func(c *access.Claims) { c.Audience = nil }),
		unsigned(`{"alg":"none"}`, `{"channels":["*"],"exp":4102444800}`, ""),
		"", "..", "a.b.c", "Bearer x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, vc := range verifiers {
			before := time.Now()
			c, err := vc.v.Verify(context.Background(), raw)
			after := time.Now()
			signed := signedWith(raw, secret, pub)
			claimsOK, sure := claimsValid(raw, vc.issuer, vc.audience, vc.leeway, before, after)
			if err != nil {
				if len(raw) > 8 && strings.Contains(err.Error(), raw) {
					t.Fatalf("%s: the error %q echoes the token", vc.name, err)
				}
				if signed && claimsOK && sure {
					t.Fatalf("%s: refused a token signed with a configured key, its claims right: %v\n%q", vc.name, err, raw)
				}
				continue
			}
			if c == nil {
				t.Fatalf("%s: no error and no claims", vc.name)
			}
			if !signed {
				t.Fatalf("%s: accepted a token not signed with a configured key: %q", vc.name, raw)
			}
			if !claimsOK {
				t.Fatalf("%s: accepted a token whose exp, nbf, iat, iss or aud is wrong: %q", vc.name, raw)
			}
		}
	})
}

// claimsValid checks a token's registered claims by RFC 7519 with the
// standard library alone: exp is a number and now is not past exp +
// leeway, nbf and iat (when present) are numbers not after now + leeway,
// iss is issuer and aud (a string or an array of strings) holds audience
// when they are asked for. now is any instant between before and after.
// ok says the claims are right at some instant of that span; sure says
// they are right by two seconds or more, at every instant of it, and
// decode as the verifier's Claims do (so only the signature decides).
func claimsValid(raw, issuer, audience string, leeway time.Duration, before, after time.Time) (ok, sure bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return false, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false, false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(payload, &m) != nil {
		return false, false
	}
	// A NumericDate is a JSON number; the verifier also takes a string
	// that holds one (a token's issuer signed it either way).
	seconds := func(name string) (float64, bool, bool) { // value, present, a number
		v, present := m[name]
		if !present || string(v) == "null" {
			return 0, false, true
		}
		if s, err := strconv.Unquote(string(v)); err == nil && json.Valid([]byte(s)) && !strings.ContainsAny(s, "\"\\ \t\r\n") {
			v = json.RawMessage(s)
		}
		f, err := strconv.ParseFloat(string(v), 64)
		return f, true, err == nil && json.Valid(v)
	}
	const margin = 2.0
	lw := leeway.Seconds()
	early := float64(before.UnixNano()) / 1e9
	late := float64(after.UnixNano()) / 1e9
	ok, sure = true, true
	check := func(right, rightBySome bool) {
		ok = ok && right
		sure = sure && rightBySome
	}
	exp, present, number := seconds("exp")
	check(present && number && late <= exp+lw+1, present && number && late+margin <= exp+lw && exp < 1e10)
	// An exp more than 10 years ahead is refused: taken for milliseconds.
	tenYears := (10 * 365 * 24 * time.Hour).Seconds()
	check(!present || !number || exp <= late+tenYears+1, !present || !number || exp+margin <= early+tenYears)
	for _, name := range []string{"nbf", "iat"} {
		t, present, number := seconds(name)
		if present {
			check(number && t-lw-1 <= late, number && t-lw+margin <= early && t > -1e10)
		}
	}
	if issuer != "" {
		var iss string
		check(json.Unmarshal(m["iss"], &iss) == nil && iss == issuer, true)
	}
	if audience != "" {
		var one string
		var many []string
		holds := json.Unmarshal(m["aud"], &one) == nil && one == audience ||
			json.Unmarshal(m["aud"], &many) == nil && slices.Contains(many, audience)
		check(holds, true)
	}
	// channels and publish, when given, are arrays of strings (keys
	// matched as encoding/json matches them, case aside).
	var lists struct {
		Channels json.RawMessage `json:"channels"`
		Publish  json.RawMessage `json:"publish"`
	}
	if json.Unmarshal(payload, &lists) != nil {
		sure = false
	}
	for _, v := range []json.RawMessage{lists.Channels, lists.Publish} {
		var ss []string
		check(len(v) == 0 || string(v) == "null" || json.Unmarshal(v, &ss) == nil, true)
	}
	var c access.Claims
	if json.Unmarshal(payload, &c) != nil {
		sure = false
	}
	return ok, ok && sure
}

// signedWith reports whether raw carries a valid signature by secret
// (HS256) or by the key its kid names (RS256 with RSA, ES256 with P-256),
// checked with the standard library alone.
func signedWith(raw string, secret []byte, keys map[string]crypto.PublicKey) bool {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return false
	}
	hdrJSON, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	var hdr map[string]any
	if json.Unmarshal(hdrJSON, &hdr) != nil {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	signed := []byte(parts[0] + "." + parts[1])
	digest := sha256.Sum256(signed)
	kid, _ := hdr["kid"].(string)
	switch hdr["alg"] {
	case "HS256":
		mac := hmac.New(sha256.New, secret)
		mac.Write(signed)
		return hmac.Equal(sig, mac.Sum(nil))
	case "RS256":
		k, ok := keys[kid].(*rsa.PublicKey)
		return ok && rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil
	case "ES256":
		k, ok := keys[kid].(*ecdsa.PublicKey)
		if !ok || len(sig) != 64 {
			return false
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(k, digest[:], r, s)
	}
	return false
}
