package wechat

import (
	"fmt"
	"strings"
)

// redacted is what a Secret prints as, whatever the verb or encoder.
const redacted = "[redacted]"

// Secret holds a value that must never be logged, echoed in an error or
// exported in a metric: an app secret, a push token, an EncodingAESKey, an
// access token. Its String, GoString, Format, MarshalJSON and MarshalText
// all print "[redacted]" (or "" when the secret is empty), so a Secret that
// reaches a log line, a %v or a JSON dump by mistake shows nothing. Reveal
// is the one way to the value; it is called only where the value goes to
// WeChat or into a signature.
type Secret string

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s == "" }

func (s Secret) shown() string {
	if s == "" {
		return ""
	}
	return redacted
}

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string { return s.shown() }

// GoString is String, so that %#v does not print the value either.
func (s Secret) GoString() string { return `wechat.Secret("` + s.shown() + `")` }

// Format prints the redaction for every verb (%s, %q, %x, %v, %+v ...).
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", s.shown())
		return
	}
	_, _ = f.Write([]byte(s.shown()))
}

// MarshalJSON encodes the redaction, never the value.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.shown() + `"`), nil }

// MarshalText encodes the redaction, never the value (YAML, map keys).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.shown()), nil }

// UnmarshalText reads the value itself, so a Secret decodes from a config
// file or environment like a string.
func (s *Secret) UnmarshalText(b []byte) error {
	*s = Secret(b)
	return nil
}

// redactor removes known secret values from text that comes from outside
// (WeChat's errmsg, an error from net/http) before it is logged, stored or
// returned. WeChat does not echo secrets in its errmsg, but an error from
// net/http names the request URL, whose query holds the app secret or the
// access token: nothing from outside is trusted to be clean.
type redactor struct {
	values []string
}

func (r *redactor) add(values ...string) {
	for _, v := range values {
		// Short values are not secrets worth matching, and would redact
		// unrelated text.
		if len(v) >= 6 {
			r.values = append(r.values, v)
		}
	}
}

func (r *redactor) clean(s string) string {
	if r == nil {
		return s
	}
	for _, v := range r.values {
		if strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, redacted)
		}
	}
	return s
}
