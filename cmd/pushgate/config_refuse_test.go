package main

import (
	"io"
	"strings"
	"testing"
)

// secret32 is an HS256 secret of the shortest accepted length.
const secret32 = "0123456789abcdef0123456789abcdef"

// TestSettingsThatCannotWorkStopStartup: an allowed origin a browser can
// never send (no scheme, a path) and an HS256 secret under 32 bytes are
// refused by parseConfig, from a flag, a variable or the file, with a
// message naming the setting and what to write instead; the secret is
// never repeated. --allow-weak-jwt-secret lets a short secret through.
func TestSettingsThatCannotWorkStopStartup(t *testing.T) {
	short := "devsecret"
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		file string
		want []string // substrings of the error; nil: accepted
	}{
		{name: "origin without a scheme", args: []string{"--allowed-origin", "example.com"},
			want: []string{"--allowed-origin", `"example.com"`, "https://example.com"}},
		{name: "origin pattern without a scheme", args: []string{"--allowed-origin", "*.example.com"},
			want: []string{"--allowed-origin", "https://*.example.com"}},
		{name: "origin with a path", args: []string{"--allowed-origin", "https://example.com/app"},
			want: []string{"--allowed-origin", "without a path", "https://example.com"}},
		{name: "origin without a host", args: []string{"--allowed-origin", "https://"},
			want: []string{"--allowed-origin", "names a host"}},
		{name: "origin from the variable", env: map[string]string{"PUSHGATE_ALLOWED_ORIGINS": "https://a.example,b.example"},
			want: []string{"--allowed-origin (from PUSHGATE_ALLOWED_ORIGINS)", "https://b.example"}},
		{name: "origin from the file", file: "allowed_origins: [https://a.example, localhost:3000]\n",
			want: []string{"config: allowed_origins[1]", "https://localhost:3000"}},
		{name: "origins that work", args: []string{"--allowed-origin", "https://a.example/", "--allowed-origin", "http://localhost:*",
			"--allowed-origin", "https://*.b.example", "--allowed-origin", "*"}},

		{name: "short secret", args: []string{"--jwt-secret", short},
			want: []string{"--jwt-secret", "9 bytes", "at least 32", "RFC 7518", "--allow-weak-jwt-secret"}},
		{name: "short secret from the variable", env: map[string]string{"PUSHGATE_JWT_SECRET": short},
			want: []string{"--jwt-secret (PUSHGATE_JWT_SECRET", "at least 32"}},
		{name: "short secret from the file", file: "jwt: {secret: " + short + "}\n",
			want: []string{"jwt.secret", "at least 32"}},
		{name: "31 bytes", args: []string{"--jwt-secret", secret32[1:]}, want: []string{"31 bytes"}},
		{name: "32 bytes", args: []string{"--jwt-secret", secret32}},
		{name: "short secret allowed", args: []string{"--jwt-secret", short, "--allow-weak-jwt-secret"}},
		{name: "short secret allowed by the variable", args: []string{"--jwt-secret", short},
			env: map[string]string{"PUSHGATE_ALLOW_WEAK_JWT_SECRET": "true"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append(args, "--config", writeFile(t, tt.file))
			}
			_, err := parseConfig(args, func(k string) string { return tt.env[k] }, io.Discard)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(tt.name, "secret") && strings.Contains(err.Error(), short) {
				t.Errorf("error %q repeats the secret", err)
			}
		})
	}
}
