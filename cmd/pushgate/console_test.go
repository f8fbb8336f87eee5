package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestConsoleOption: --console, PUSHGATE_CONSOLE and the file's console:
// turn the console on, in that order of precedence; it is off by default.
func TestConsoleOption(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	file := writeFile(t, "console: true\n")
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want bool
	}{
		{"default", nil, nil, false},
		{"flag", []string{"--console"}, nil, true},
		{"variable", nil, map[string]string{"PUSHGATE_CONSOLE": "true"}, true},
		{"file", []string{"--config", file}, nil, true},
		{"flag over variable", []string{"--console=false"}, map[string]string{"PUSHGATE_CONSOLE": "true"}, false},
		{"variable over file", []string{"--config", file}, map[string]string{"PUSHGATE_CONSOLE": "false"}, false},
	} {
		c, err := parseConfig(tc.args, env(tc.env), io.Discard)
		if err != nil || c.Console != tc.want {
			t.Errorf("%s: console %v, %v; want %v", tc.name, c.Console, err, tc.want)
		}
	}
	if _, err := parseConfig(nil, env(map[string]string{"PUSHGATE_CONSOLE": "perhaps"}), io.Discard); err == nil ||
		!strings.Contains(err.Error(), "--console") || !strings.Contains(err.Error(), "PUSHGATE_CONSOLE") {
		t.Errorf("PUSHGATE_CONSOLE=perhaps: %v", err)
	}
	bad := writeFile(t, "console: [1]\n")
	if _, err := parseConfig([]string{"--config", bad}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "console") {
		t.Errorf("console: [1] in the file: %v", err)
	}
}

// TestRunConsole: the binary serves /console with --console, and not without.
func TestRunConsole(t *testing.T) {
	on := start(t, "--console")
	if code, body := on.get(t, "/console", ""); code != http.StatusOK || !strings.Contains(body, "<title>pushgate console</title>") {
		t.Fatalf("--console: GET /console %d\n%.200s", code, body)
	}
	off := start(t)
	if code, _ := off.get(t, "/console", ""); code != http.StatusNotFound {
		t.Fatalf("without --console: GET /console %d", code)
	}
}
