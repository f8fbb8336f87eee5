package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"

	"github.com/pushgate/pushgate/graph"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server/access"
	"github.com/pushgate/pushgate/wechat"
)

// The config file (--config, PUSHGATE_CONFIG) is YAML, decoded strictly: an
// unknown or repeated field is an error. It holds the namespaces' rules, the
// API keys with their channel patterns, the jwt: section, the allowed
// origins, and the values of the flags; a flag or its variable wins over
// the file. The default namespace's history_size, history_ttl,
// anonymous_read and max_message_size are the values of --history-size,
// --history-ttl, --allow-anonymous and --max-message-size. A flag added to
// config.go gets its file key in fileConfig.flagValues.
type fileConfig struct {
	Addr              scalar                   `yaml:"addr"`
	RedisURL          scalar                   `yaml:"redis_url"`
	IdempotencyWindow scalar                   `yaml:"idempotency_window"`
	WriteTimeout      scalar                   `yaml:"write_timeout"`
	ShutdownTimeout   scalar                   `yaml:"shutdown_timeout"`
	LogLevel          scalar                   `yaml:"log_level"`
	MaxResponseBytes  scalar                   `yaml:"max_response_bytes"`
	ReadTimeout       scalar                   `yaml:"read_timeout"`
	RedisTimeout      scalar                   `yaml:"redis_timeout"`
	MaxRequestsPerIP  scalar                   `yaml:"max_requests_in_flight_per_ip"`
	Console           scalar                   `yaml:"console"`
	AllowedOrigins    []scalar                 `yaml:"allowed_origins"`
	APIKeys           []apiKeyFile             `yaml:"api_keys"`
	JWT               jwtFile                  `yaml:"jwt"`
	Namespaces        map[string]namespaceFile `yaml:"namespaces"`
	WeChat            wechatFile               `yaml:"wechat"`
}

// wechatFile is the wechat: section: the apps, as wechat.AppConfig reads
// them (checked by wechat.Config.Validate once the flags are read).
type wechatFile struct {
	Apps []wechat.AppConfig `yaml:"apps"`
}

// apiKeyFile is one of api_keys: channels is required ("*" for every
// channel), so that a key's reach is always written down.
type apiKeyFile struct {
	Name     scalar   `yaml:"name"`
	Secret   scalar   `yaml:"secret"`
	Channels []scalar `yaml:"channels"`
}

// jwtFile is the jwt: section. secret is --jwt-secret's value; the others
// configure the token verifier and map to config.JWT (access.TokenConfig).
type jwtFile struct {
	Secret   scalar `yaml:"secret"`
	JWKSURL  scalar `yaml:"jwks_url"`
	Issuer   scalar `yaml:"issuer"`
	Audience scalar `yaml:"audience"`
	Leeway   scalar `yaml:"leeway"`
}

// namespaceFile is one of namespaces; a field it does not set is the
// default namespace's.
type namespaceFile struct {
	HistorySize    scalar `yaml:"history_size"`
	HistoryTTL     scalar `yaml:"history_ttl"`
	AnonymousRead  scalar `yaml:"anonymous_read"`
	TokenPublish   scalar `yaml:"token_publish"`
	Presence       scalar `yaml:"presence"`
	MaxMessageSize scalar `yaml:"max_message_size"`
}

// defaultNamespace is the key of the default namespace in namespaces:.
const defaultNamespace = "default"

// Bounds of the settings.
const (
	maxHistorySize    = 100_000
	maxMessageSizeCap = 16 << 20
)

// scalar is a YAML scalar kept as its text, so that every value is checked
// by pushgate's own parsers and its errors name the field.
type scalar struct {
	text string
	set  bool
	// kind is the YAML kind of a value that is not a scalar (an error).
	kind string
}

func (s *scalar) UnmarshalYAML(n ast.Node) error {
	switch n := n.(type) {
	case *ast.NullNode:
		*s = scalar{}
	case *ast.TagNode:
		return s.UnmarshalYAML(n.Value)
	case *ast.AnchorNode:
		return s.UnmarshalYAML(n.Value)
	case *ast.StringNode:
		*s = scalar{text: n.Value, set: true}
	case *ast.LiteralNode:
		*s = scalar{text: n.Value.Value, set: true}
	case ast.ScalarNode:
		// Numbers and booleans as written: a secret 0x10 stays "0x10".
		*s = scalar{text: n.GetToken().Value, set: true}
	default:
		*s = scalar{set: true, kind: strings.ToLower(n.Type().String())}
	}
	return nil
}

// fieldError is "config: <field>: <problem>, got <value>".
func fieldError(field, problem, value string) error {
	if _, err := strconv.ParseFloat(value, 64); err != nil {
		value = strconv.Quote(value)
	}
	return fmt.Errorf("config: %s: %s, got %s", field, problem, value)
}

// loadFile reads and checks the config file at path.
func loadFile(path string) (*fileConfig, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var f fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(src), yaml.DisallowUnknownField())
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		var yerr yaml.Error
		if errors.As(err, &yerr) && yerr.GetToken() != nil {
			pos := yerr.GetToken().Position
			return nil, fmt.Errorf("config: %s:%d:%d: %s", path, pos.Line, pos.Column, yerr.GetMessage())
		}
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	return &f, nil
}

// check validates every field of the file.
func (f *fileConfig) check() error {
	// Scalars that are flags' values are checked by the flags' parsers,
	// except the default namespace's, checked below like every namespace.
	for _, fv := range f.flagValues() {
		if fv.kind != "" {
			return fmt.Errorf("config: %s: must be a single value, got a %s", fv.field, fv.kind)
		}
	}
	names := make([]string, 0, len(f.Namespaces))
	for name := range f.Namespaces {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := checkNamespace(name, f.Namespaces[name]); err != nil {
			return err
		}
	}
	if _, err := f.apiKeys(); err != nil {
		return err
	}
	for i, o := range f.AllowedOrigins {
		field := fmt.Sprintf("allowed_origins[%d]", i)
		if o.kind != "" {
			return fmt.Errorf("config: %s: must be a single value, got a %s", field, o.kind)
		}
		if o.text == "" || strings.ContainsAny(o.text, " \t\r\n,") {
			return fieldError(field, `must be an origin such as https://app.example.com, or "*"`, o.text)
		}
		if err := checkOrigin(o.text); err != nil {
			return fieldError(field, err.Error(), o.text)
		}
	}
	if _, err := f.jwtSettings(); err != nil {
		return err
	}
	return nil
}

func checkNamespace(name string, ns namespaceFile) error {
	path := "namespaces." + name
	if name != defaultNamespace && (!pubsub.ValidChannel(name) || strings.Contains(name, ":")) {
		return fmt.Errorf("config: %s: a namespace name must match [A-Za-z0-9_.@-]{1,128} "+
			"(the part of a channel name before its first ':')", path)
	}
	rules, err := ns.resolve(path, access.Namespace{})
	if err != nil {
		return err
	}
	if name == "user" && rules.AnonymousRead {
		return fieldError(path+".anonymous_read", "must be false: user:<sub> channels are readable only with a token for <sub>",
			ns.AnonymousRead.text)
	}
	return nil
}

// resolve returns the namespace's rules: each field it sets, else base's.
func (ns namespaceFile) resolve(path string, base access.Namespace) (access.Namespace, error) {
	out := base
	fields := []struct {
		name string
		v    scalar
		set  func(string) (string, bool) // problem, ok
	}{
		{"history_size", ns.HistorySize, func(s string) (string, bool) {
			n, err := strconv.Atoi(s)
			out.HistorySize = n
			return fmt.Sprintf("must be 1..%d", maxHistorySize), err == nil && n >= 1 && n <= maxHistorySize
		}},
		{"history_ttl", ns.HistoryTTL, func(s string) (string, bool) {
			d, err := time.ParseDuration(s)
			out.HistoryTTL = d
			return "must be a positive duration such as 30s, 5m or 24h", err == nil && d > 0
		}},
		{"anonymous_read", ns.AnonymousRead, boolField(&out.AnonymousRead)},
		{"token_publish", ns.TokenPublish, boolField(&out.TokenPublish)},
		{"presence", ns.Presence, boolField(&out.Presence)},
		{"max_message_size", ns.MaxMessageSize, func(s string) (string, bool) {
			n, err := strconv.Atoi(s)
			out.MaxMessageSize = n
			return fmt.Sprintf("must be 1..%d (bytes)", maxMessageSizeCap), err == nil && n >= 1 && n <= maxMessageSizeCap
		}},
	}
	for _, fd := range fields {
		if !fd.v.set {
			continue
		}
		field := path + "." + fd.name
		if fd.v.kind != "" {
			return access.Namespace{}, fmt.Errorf("config: %s: must be a single value, got a %s", field, fd.v.kind)
		}
		if problem, ok := fd.set(fd.v.text); !ok {
			return access.Namespace{}, fieldError(field, problem, fd.v.text)
		}
	}
	return out, nil
}

func boolField(dst *bool) func(string) (string, bool) {
	return func(s string) (string, bool) {
		b, err := strconv.ParseBool(s)
		*dst = b
		return "must be true or false", err == nil
	}
}

// flagValue is a flag's value in the file.
type flagValue struct {
	field string // its path in the file
	scalar
}

// flagValues returns the flags' values the file sets, by flag name.
func (f *fileConfig) flagValues() map[string]flagValue {
	def := f.Namespaces[defaultNamespace]
	all := map[string]flagValue{
		"addr":                          {"addr", f.Addr},
		"redis-url":                     {"redis_url", f.RedisURL},
		"jwt-secret":                    {"jwt.secret", f.JWT.Secret},
		"allow-anonymous":               {"namespaces.default.anonymous_read", def.AnonymousRead},
		"history-size":                  {"namespaces.default.history_size", def.HistorySize},
		"history-ttl":                   {"namespaces.default.history_ttl", def.HistoryTTL},
		"max-message-size":              {"namespaces.default.max_message_size", def.MaxMessageSize},
		"idempotency-window":            {"idempotency_window", f.IdempotencyWindow},
		"write-timeout":                 {"write_timeout", f.WriteTimeout},
		"shutdown-timeout":              {"shutdown_timeout", f.ShutdownTimeout},
		"log-level":                     {"log_level", f.LogLevel},
		"max-response-bytes":            {"max_response_bytes", f.MaxResponseBytes},
		"read-timeout":                  {"read_timeout", f.ReadTimeout},
		"redis-timeout":                 {"redis_timeout", f.RedisTimeout},
		"max-requests-in-flight-per-ip": {"max_requests_in_flight_per_ip", f.MaxRequestsPerIP},
		"console":                       {"console", f.Console},
	}
	for flag, v := range all {
		if !v.set {
			delete(all, flag)
		}
	}
	return all
}

// apiKeys returns the file's API keys, checked.
func (f *fileConfig) apiKeys() ([]access.APIKey, error) {
	var keys []access.APIKey
	for i, k := range f.APIKeys {
		path := fmt.Sprintf("api_keys[%d]", i)
		for _, fd := range []struct {
			name string
			v    scalar
		}{{"name", k.Name}, {"secret", k.Secret}} {
			if fd.v.kind != "" {
				return nil, fmt.Errorf("config: %s.%s: must be a single value, got a %s", path, fd.name, fd.v.kind)
			}
			if fd.v.text == "" {
				return nil, fmt.Errorf("config: %s.%s: is required", path, fd.name)
			}
		}
		if !validKeyName(k.Name.text) {
			return nil, fieldError(path+".name", "must be 1..64 characters without ':', '[', ']', ',' or spaces", k.Name.text)
		}
		if len(k.Channels) == 0 {
			return nil, fmt.Errorf(`config: %s.channels: must list the patterns the key may send to ("*" for every channel)`, path)
		}
		key := access.APIKey{Name: k.Name.text, Secret: k.Secret.text}
		for j, p := range k.Channels {
			field := fmt.Sprintf("%s.channels[%d]", path, j)
			if p.kind != "" {
				return nil, fmt.Errorf("config: %s: must be a single value, got a %s", field, p.kind)
			}
			if !graph.ValidPattern(p.text) {
				return nil, fieldError(field, "must be a channel name or a glob ([A-Za-z0-9_:.@*?-]{1,128})", p.text)
			}
			key.Channels = append(key.Channels, p.text)
		}
		if err := addAPIKey(&keys, key); err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	return keys, nil
}

// jwtSettings returns the verifier's settings of the jwt: section, checked:
// the JWKS of RS256/ES256 keys, the required iss and aud, and the clock
// leeway for exp and nbf (0s: none). The secret is config.JWTSecret.
func (f *fileConfig) jwtSettings() (access.TokenConfig, error) {
	var s access.TokenConfig
	for _, fd := range []struct {
		name string
		v    scalar
	}{{"secret", f.JWT.Secret}, {"jwks_url", f.JWT.JWKSURL}, {"issuer", f.JWT.Issuer}, {"audience", f.JWT.Audience}, {"leeway", f.JWT.Leeway}} {
		if fd.v.kind != "" {
			return s, fmt.Errorf("config: jwt.%s: must be a single value, got a %s", fd.name, fd.v.kind)
		}
	}
	if v := f.JWT.JWKSURL.text; v != "" {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return s, fieldError("jwt.jwks_url", "must be an http(s) URL", v)
		}
		s.JWKSURL = v
	}
	if v := f.JWT.Leeway.text; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return s, fieldError("jwt.leeway", "must be a duration such as 30s", v)
		}
		s.Leeway = d
		if d == 0 {
			s.Leeway = -1 // TokenConfig: zero is the default, negative none
		}
	}
	s.Issuer, s.Audience = f.JWT.Issuer.text, f.JWT.Audience.text
	return s, nil
}

// apply sets what only the file holds, once the flags are parsed: the API
// keys unless flags or variables gave some, the allowed origins, the jwt:
// settings, the default namespace's token_publish and presence, and the
// named namespaces, each inheriting from the default namespace what it does
// not set.
func (f *fileConfig) apply(c *config) error {
	if len(c.APIKeys) == 0 {
		keys, err := f.apiKeys()
		if err != nil {
			return err
		}
		c.APIKeys = keys
	}
	if len(c.AllowedOrigins) == 0 { // --allowed-origin wins over the file
		for _, o := range f.AllowedOrigins {
			c.AllowedOrigins = append(c.AllowedOrigins, o.text)
		}
	}
	jwt, err := f.jwtSettings()
	if err != nil {
		return err
	}
	c.JWT = jwt
	def, err := f.Namespaces[defaultNamespace].resolve("namespaces.default", access.Namespace{})
	if err != nil {
		return err
	}
	c.TokenPublish, c.Presence = def.TokenPublish, def.Presence
	base := c.namespaces().Default
	for name, ns := range f.Namespaces {
		if name == defaultNamespace {
			continue
		}
		resolved, err := ns.resolve("namespaces."+name, base)
		if err != nil {
			return err
		}
		if c.Namespaces == nil {
			c.Namespaces = make(map[string]access.Namespace)
		}
		c.Namespaces[name] = resolved
	}
	return nil
}

// namespaces returns the server's namespace rules: the default namespace
// from the flags (and the file's default namespace), and the named ones.
func (c config) namespaces() access.Namespaces {
	return access.Namespaces{
		Default: access.Namespace{
			HistorySize:    c.HistorySize,
			HistoryTTL:     c.HistoryTTL,
			AnonymousRead:  c.AllowAnonymous,
			TokenPublish:   c.TokenPublish,
			Presence:       c.Presence,
			MaxMessageSize: c.MaxMessageSize,
		},
		Named: c.Namespaces,
	}
}

// parseAPIKey reads an --api-key value: name:secret (the key may send to
// every channel) or name[pattern,pattern,...]:secret (only to the channels
// matching one of the patterns). The secret is everything after the colon
// and may contain colons.
func parseAPIKey(v string) (access.APIKey, error) {
	const syntax = "must be name:secret or name[pattern,...]:secret"
	i := strings.IndexAny(v, "[:")
	if i < 0 {
		return access.APIKey{}, errors.New(syntax)
	}
	k := access.APIKey{Name: v[:i]}
	rest := v[i+1:]
	if v[i] == '[' {
		list, secret, ok := strings.Cut(rest, "]:")
		if !ok {
			return access.APIKey{}, errors.New(syntax)
		}
		for p := range strings.SplitSeq(list, ",") {
			p = strings.TrimSpace(p)
			if !graph.ValidPattern(p) {
				return access.APIKey{}, fmt.Errorf("channel pattern %q must be a channel name or a glob ([A-Za-z0-9_:.@*?-]{1,128})", p)
			}
			k.Channels = append(k.Channels, p)
		}
		rest = secret
	}
	k.Secret = rest
	if k.Name == "" || k.Secret == "" {
		return access.APIKey{}, errors.New(syntax)
	}
	if !validKeyName(k.Name) {
		return access.APIKey{}, errors.New("the name must be 1..64 characters without ':', '[', ']', ',' or spaces")
	}
	return k, nil
}

func validKeyName(s string) bool {
	return len(s) >= 1 && len(s) <= 64 && !strings.ContainsAny(s, ":[], \t\r\n")
}

// addAPIKey appends k to keys unless its name or secret is taken: a secret
// must name one key, so that its patterns are unambiguous.
func addAPIKey(keys *[]access.APIKey, k access.APIKey) error {
	for _, o := range *keys {
		if o.Name == k.Name {
			return fmt.Errorf("key name %q is given twice", k.Name)
		}
		if o.Secret == k.Secret {
			return fmt.Errorf("key %q has the same secret as key %q", k.Name, o.Name)
		}
	}
	*keys = append(*keys, k)
	return nil
}
