package main

import (
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// This machine has no container engine: these tests check what a `docker
// build` and `docker compose up` would rely on, with the same inputs.

// dockerfile reads ../../Dockerfile as instructions (continuations joined).
func dockerfile(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(string(raw), "\\\n", " "), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// shellWords splits a command line as sh would for the forms the
// Dockerfile uses: words, "double-quoted" and 'single-quoted' strings,
// ${VAR} expanded from vars.
func shellWords(t *testing.T, s string, vars map[string]string) []string {
	t.Helper()
	s = regexp.MustCompile(`\$\{(\w+)\}`).ReplaceAllStringFunc(s, func(m string) string {
		v, ok := vars[m[2:len(m)-1]]
		if !ok {
			t.Fatalf("Dockerfile: %s is not an ARG", m)
		}
		return v
	})
	var words []string
	var w strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			w.WriteByte(c)
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == ' ' || c == '\t':
			if in {
				words, in = append(words, w.String()), false
				w.Reset()
			}
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if quote != 0 {
		t.Fatalf("unbalanced quote in %q", s)
	}
	if in {
		words = append(words, w.String())
	}
	return words
}

// TestDockerfileBuild builds pushgate with the Dockerfile's `go build`
// line (its environment, flags and package; the output in a temporary
// directory) and checks that the binary is static (no interpreter, no
// dynamic section: it runs on distroless/static), answers --version with
// the VERSION it was given, and that the final stage copies it where its
// ENTRYPOINT and HEALTHCHECK (the healthcheck subcommand, probed here
// against a running server) look for it.
func TestDockerfileBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pushgate (-short)")
	}
	lines := dockerfile(t)
	vars := map[string]string{}
	var build []string
	var out, copied, entry, health string
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(instr) {
		case "ARG":
			name, _, _ := strings.Cut(rest, "=")
			vars[name] = "v0.0.0-dockerfile-test" // what --build-arg VERSION=... would pass
		case "RUN":
			if strings.Contains(rest, "go build") {
				build = shellWords(t, rest, vars)
			}
		case "COPY":
			if f := strings.Fields(rest); len(f) == 3 && strings.HasPrefix(f[0], "--from=build") {
				if f[1] != out {
					t.Errorf("the final stage copies %s, the build writes %q", f[1], out)
				}
				copied = f[2]
			}
		case "ENTRYPOINT":
			var argv []string
			if err := json.Unmarshal([]byte(rest), &argv); err != nil || len(argv) == 0 {
				t.Fatalf("ENTRYPOINT %s: want the exec form (%v)", rest, err)
			}
			entry = argv[0]
		case "HEALTHCHECK":
			_, cmd, ok := strings.Cut(rest, "CMD ")
			var argv []string
			if !ok || json.Unmarshal([]byte(cmd), &argv) != nil || len(argv) < 2 {
				t.Fatalf("HEALTHCHECK %s: want CMD in the exec form", rest)
			}
			health = argv[0] + " " + strings.Join(argv[1:], " ")
		}
		if build != nil && out == "" {
			if i := slices.Index(build, "-o"); i >= 0 && i+1 < len(build) {
				out = build[i+1]
			}
		}
	}
	if build == nil || out == "" {
		t.Fatal("Dockerfile: no RUN ... go build ... -o <path> line")
	}
	if copied == "" || entry != copied || health != copied+" healthcheck" {
		t.Fatalf("Dockerfile: binary copied to %q, ENTRYPOINT %q, HEALTHCHECK %q", copied, entry, health)
	}

	// CGO_ENABLED=0 go build <flags> -o <out> <pkg>
	var env []string
	for len(build) > 0 && strings.Contains(build[0], "=") {
		env, build = append(env, build[0]), build[1:]
	}
	if !slices.Contains(env, "CGO_ENABLED=0") || len(build) < 3 || build[0] != "go" || build[1] != "build" {
		t.Fatalf("Dockerfile's build: env %v, command %v; want CGO_ENABLED=0 go build ...", env, build)
	}
	for _, f := range []string{"-trimpath", "-ldflags"} {
		if !slices.Contains(build, f) {
			t.Errorf("Dockerfile's go build has no %s", f)
		}
	}
	bin := filepath.Join(t.TempDir(), "pushgate")
	args := slices.Clone(build[1:])
	args[slices.Index(args, "-o")+1] = bin
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %v: %v\n%s", args, err, b)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary is dynamically linked (%v segment)", p.Type)
		}
	}
	if f.Section(".dynamic") != nil || f.Section(".interp") != nil {
		t.Error("the binary has a .dynamic or .interp section")
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary has a symbol table: -ldflags -s not applied")
	}

	v, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(v), "pushgate v0.0.0-dockerfile-test (commit ") {
		t.Fatalf("%s --version: %q, %v", bin, v, err)
	}

	p := start(t)
	hc := exec.Command(bin, "healthcheck")
	hc.Env = []string{"PUSHGATE_ADDR=" + strings.TrimPrefix(p.url, "http://")}
	if b, err := hc.CombinedOutput(); err != nil {
		t.Fatalf("the image's HEALTHCHECK command against a serving pushgate: %v\n%s", err, b)
	}
}

// pendingSettings are PUSHGATE_* variables compose.yaml sets whose flag
// arrives with another branch. Once it exists, TestComposeFile fails until
// its entry is deleted here.
var pendingSettings = map[string]string{}

// TestComposeFile: compose.yaml parses; pushgate is built from this
// directory (the Dockerfile exists) and health-checked with a command its
// image has; every PUSHGATE_* it sets is a real setting, and the
// configuration they make (placeholders in place of secrets) is one
// pushgate accepts; Redis persists to a named volume and pushgate uses it.
func TestComposeFile(t *testing.T) {
	raw, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type healthcheck struct {
		Test []string `yaml:"test"`
	}
	var c struct {
		Services map[string]struct {
			Image string `yaml:"image"`
			Build struct {
				Context string            `yaml:"context"`
				Args    map[string]string `yaml:"args"`
			} `yaml:"build"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			DependsOn   map[string]struct {
				Condition string `yaml:"condition"`
			} `yaml:"depends_on"`
			Healthcheck *healthcheck `yaml:"healthcheck"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	pg, ok := c.Services["pushgate"]
	if !ok {
		t.Fatal("compose.yaml: no pushgate service")
	}
	if _, err := os.Stat(filepath.Join("../..", pg.Build.Context, "Dockerfile")); err != nil {
		t.Errorf("pushgate's build context %q: %v", pg.Build.Context, err)
	}
	for arg := range pg.Build.Args {
		if !slices.ContainsFunc(dockerfile(t), func(l string) bool { return strings.HasPrefix(l, "ARG "+arg) }) {
			t.Errorf("build arg %s is not an ARG of the Dockerfile", arg)
		}
	}
	if pg.Healthcheck == nil || !slices.Equal(pg.Healthcheck.Test, []string{"CMD", "/pushgate", "healthcheck"}) {
		t.Errorf("pushgate's healthcheck %+v: want [CMD /pushgate healthcheck] (the image has no shell or curl)", pg.Healthcheck)
	}

	// ${NAME:-default} is what compose substitutes when NAME is unset.
	subst := regexp.MustCompile(`\$\{\w+:-([^}]*)\}`)
	known := map[string]bool{"PUSHGATE_CONFIG": true}
	for _, o := range options {
		known[o.env] = true
	}
	env := map[string]string{}
	for name, v := range pg.Environment {
		v = subst.ReplaceAllString(v, "$1")
		if strings.Contains(v, "${") {
			t.Errorf("%s=%s: a variable without a default", name, v)
		}
		if why, pending := pendingSettings[name]; pending {
			if known[name] {
				t.Errorf("%s is now a setting: delete it from pendingSettings", name)
			}
			t.Logf("%s: not checked, arrives with %s", name, why)
			continue
		}
		if !known[name] {
			t.Errorf("compose.yaml sets %s, which is not a pushgate setting", name)
		}
		env[name] = v
	}
	cfg, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("the configuration compose.yaml makes: %v", err)
	}
	if cfg.Redis == nil || len(cfg.Redis.Addrs) != 1 || cfg.Redis.Addrs[0] != "redis:6379" {
		t.Errorf("pushgate's Redis: %+v; want the redis service", cfg.Redis)
	}
	if len(cfg.APIKeys) == 0 || cfg.JWT.Secret == "" {
		t.Error("compose.yaml sets no API key or no JWT secret")
	}
	if dep, ok := pg.DependsOn["redis"]; !ok || dep.Condition != "service_healthy" {
		t.Error("pushgate does not wait for a healthy redis")
	}

	rd, ok := c.Services["redis"]
	if !ok || rd.Healthcheck == nil || len(rd.Healthcheck.Test) == 0 {
		t.Fatal("compose.yaml: no redis service with a healthcheck")
	}
	if !slices.Contains(rd.Command, "--appendonly") || rd.Command[slices.Index(rd.Command, "--appendonly")+1] != "yes" {
		t.Errorf("redis command %v: no --appendonly yes", rd.Command)
	}
	persisted := false
	for _, v := range rd.Volumes {
		name, dir, _ := strings.Cut(v, ":")
		if _, declared := c.Volumes[name]; declared && dir == "/data" {
			persisted = true
		}
	}
	if !persisted {
		t.Errorf("redis volumes %v: want a named volume on /data", rd.Volumes)
	}
}
