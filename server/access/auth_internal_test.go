package access

import (
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql/handler/transport"
)

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "anything:at.all", true},
		{"", "", true},
		{"", "a", false},
		{"news:*", "news:", true},
		{"news:*", "news:42", true},
		{"news:*", "news:42:comments", true},
		{"news:*", "new:42", false},
		{"news:*", "xnews:42", false},
		{"news:?", "news:4", true},
		{"news:?", "news:42", false},
		{"news:??", "news:42", true},
		{"*:42", "orders:42", true},
		{"*:42", "orders:421", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "a-b-b-c", true},
		{"a*b*c", "a-b-b-c-d", false},
		{"a*b*c", "acb", false},
		{"**", "x", true},
		{"*?", "", false},
		{"*?", "x", true},
		{"orders:1", "orders:1", true},
		{"orders:1", "orders:10", false},
		{"ORDERS:1", "orders:1", false},
		{strings.Repeat("*a", 50) + "b", strings.Repeat("a", 200), false}, // no exponential backtracking
	}
	for _, tt := range tests {
		if got := globMatch(tt.pattern, tt.s); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestClaimsMayRead(t *testing.T) {
	alice := &Claims{Channels: []string{"user:*", "news:*"}}
	alice.Subject = "alice"
	tests := []struct {
		channel string
		want    bool
	}{
		{"user:alice", true},
		{"user:bob", false},
		{"user:alice:inbox", false}, // user:<x> is readable only when x is the subject
		{"user:", false},
		{"news:1", true},
		{"orders:1", false},
	}
	for _, tt := range tests {
		if got := alice.mayRead(tt.channel); got != tt.want {
			t.Errorf("alice may read %q: %v, want %v", tt.channel, got, tt.want)
		}
	}
	// A pattern is needed even for one's own user channel.
	none := &Claims{}
	none.Subject = "alice"
	if none.mayRead("user:alice") {
		t.Error("a token without patterns reads user:alice")
	}
}

func TestCredentialForms(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer abc":    "abc",
		"bearer abc":    "abc",
		"BEARER  abc ":  "abc",
		"abc":           "abc",
		"":              "",
		"Bearer":        "Bearer",
		"Basic dXNlcjo": "Basic dXNlcjo",
	} {
		if got := Bearer(in); got != want {
			t.Errorf("Bearer(%q) = %q, want %q", in, got, want)
		}
	}
	for _, tt := range []struct {
		payload transport.InitPayload
		want    string
	}{
		{transport.InitPayload{"token": "t1"}, "t1"},
		{transport.InitPayload{"token": "Bearer t1"}, "t1"},
		{transport.InitPayload{"Authorization": "Bearer t2"}, "t2"},
		{transport.InitPayload{"authorization": "t3"}, "t3"},
		{transport.InitPayload{"token": "t1", "Authorization": "Bearer t2"}, "t1"},
		{transport.InitPayload{"token": 42}, ""},
		{nil, ""},
	} {
		if got := InitCredential(tt.payload); got != tt.want {
			t.Errorf("InitCredential(%v) = %q, want %q", tt.payload, got, tt.want)
		}
	}
}

func TestKeyLookup(t *testing.T) {
	a := NewAuth([]APIKey{{Name: "backend", Secret: "s3cret"}, {Name: "billing", Secret: "other-secret"}}, "", false)
	for secret, want := range map[string]string{"s3cret": "backend", "other-secret": "billing", "s3cre": "", "s3cret ": "", "": ""} {
		k, ok := a.Key(secret)
		if ok != (want != "") || ok && k.name != want {
			t.Errorf("key(%q) = %v %v, want %q", secret, k, ok, want)
		}
	}
}
