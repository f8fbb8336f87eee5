package server_test

import (
	"context"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/pushgate/pushgate/internal/wechattest"
	"github.com/pushgate/pushgate/pubsub"
	"github.com/pushgate/pushgate/server"
	"github.com/pushgate/pushgate/wechat"
)

// TestMetricNames: every metric pushgate serves is its own, prefixed
// pushgate_, or the Go runtime's (go_) or the process's (process_); labels
// are only the few fixed dimensions (never a channel, subject, token or
// address); and docs/metrics.md's table (the README's Metrics section moved there) lists exactly pushgate's
// metrics, with their labels.
func TestMetricNames(t *testing.T) {
	m := server.NewMetrics()
	m.BuildInfo("v0.0.0-test", "0123abc", "go1.0")
	// Series of label-less vectors appear once used: a failed Redis
	// command, and the scrape's own HTTP request (counted after it).
	ctx := context.Background()
	_ = m.RedisHook().ProcessHook(func(ctx context.Context, cmd redis.Cmder) error {
		err := errors.New("connection reset")
		cmd.SetErr(err)
		return err
	})(ctx, redis.NewCmd(ctx, "GET", "k"))
	cfg := testConfig()
	cfg.Metrics = m
	// The WeChat side's metrics are on the same registry; one login makes
	// a series of its API calls.
	wx := wechattest.New(t)
	wx.AddApp(wxApp, wxSecret)
	w, err := server.NewWeChat(server.WeChatOptions{Metrics: m, Config: wechat.Config{
		Apps: []wechat.AppConfig{{AppID: wxApp, AppSecret: wxSecret, APIURL: wx.URL}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	cfg.WeChat = w
	e := startEnv(t, cfg, memoryBroker(t, pubsub.Options{}))
	e.send(t, "names:1", 1)
	e.do(t, "", `mutation { wechatLogin(input: {code: "unknown"}) { token } }`, nil)
	series, _ := scrape(t, e.url, "")

	allowed := map[string]bool{"transport": true, "reason": true, "outcome": true, "code": true, "op": true, "route": true, "status": true,
		"api": true, "result": true,
		// pushgate_build_info: one series per process.
		"version": true, "commit": true, "goversion": true}
	key := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$`)
	label := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
	served := map[string][]string{} // pushgate metric -> label names
	for s := range series {
		g := key.FindStringSubmatch(s)
		if g == nil {
			t.Fatalf("series %q", s)
		}
		name := g[1]
		switch {
		case strings.HasPrefix(name, "go_"), strings.HasPrefix(name, "process_"):
			continue
		case !strings.HasPrefix(name, "pushgate_"):
			t.Errorf("metric %s is not prefixed pushgate_", name)
			continue
		}
		name = strings.TrimSuffix(strings.TrimSuffix(name, "_count"), "_sum")
		var labels []string
		for _, l := range label.FindAllStringSubmatch(g[2], -1) {
			if !allowed[l[1]] {
				t.Errorf("%s has label %q, not one of the fixed dimensions", s, l[1])
			}
			labels = append(labels, l[1])
		}
		slices.Sort(labels)
		served[name] = labels
	}

	readme, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "# Metrics\n")
	if !ok {
		t.Fatal("docs/metrics.md has no # Metrics heading")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `(pushgate_[a-z_]+)` \\| [a-z]+ \\|([^|]*)\\| (.+) \\|$")
	documented := map[string]bool{}
	for _, r := range row.FindAllStringSubmatch(section, -1) {
		name := r[1]
		documented[name] = true
		labels, ok := served[name]
		if !ok {
			t.Errorf("README documents %s, which is not served", name)
			continue
		}
		var want []string
		for _, l := range strings.Split(r[2], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				want = append(want, l)
			}
		}
		slices.Sort(want)
		if !slices.Equal(labels, want) {
			t.Errorf("%s: labels %v served, README says %v", name, labels, want)
		}
		if strings.TrimSpace(r[3]) == "" {
			t.Errorf("%s: no meaning in the README", name)
		}
	}
	for name := range served {
		if !documented[name] {
			t.Errorf("%s is served but not in the README's Metrics table", name)
		}
	}
	if len(documented) < 10 {
		t.Fatalf("only %d metrics found in the README table", len(documented))
	}
}
