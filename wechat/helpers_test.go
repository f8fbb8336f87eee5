package wechat

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushgate/pushgate/internal/logbuf"
	"github.com/pushgate/pushgate/internal/redistest"
	"github.com/pushgate/pushgate/internal/wechattest"
)

const (
	appID    = "wx0123456789abcdef"
	tplOnce  = "TPL-once_0001"
	tplLong  = "TPL-long_0001"
	openID1  = "oUser1-AAAA_bbbb"
	openID2  = "oUser2-CCCC_dddd"
	unionID1 = "uUnion1-EEEE_ffff"
)

// fakeClock is a Clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a fake WeChat, a clock, captured logs and metrics shared by the
// Services (nodes) of a test.
type env struct {
	t     *testing.T
	wx    *wechattest.Server
	clock *fakeClock
	logs  *logbuf.Buffer
	reg   *prometheus.Registry
	obs   *Metrics
	// errs collects the error strings the test saw, for the secrets check.
	errs []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, wx: wechattest.New(t), clock: &fakeClock{t: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)},
		logs: &logbuf.Buffer{}, reg: prometheus.NewRegistry()}
	e.wx.SetClock(e.clock.Now)
	e.wx.AddApp(appID, testSecret)
	e.wx.AddUser(appID, wechattest.User{OpenID: openID1, UnionID: unionID1})
	e.wx.AddUser(appID, wechattest.User{OpenID: openID2})
	e.wx.AddTemplate(appID, tplOnce, false, "thing1", "amount2")
	e.wx.AddTemplate(appID, tplLong, true)
	var err error
	if e.obs, err = NewMetrics(e.reg); err != nil {
		t.Fatal(err)
	}
	return e
}

// config is a test app's configuration: short timeouts, a fast poll.
func (e *env) config(edit ...func(*Config)) Config {
	cfg := Config{
		Apps: []AppConfig{{
			AppID: appID, AppSecret: testSecret, PushToken: testToken, AESKey: testAESKey,
			APIURL: e.wx.URL, LongTermTemplates: []string{tplLong},
		}},
		HTTPTimeout:  time.Second,
		ClaimIdle:    1500 * time.Millisecond,
		PollInterval: 10 * time.Millisecond,
	}
	for _, f := range edit {
		f(&cfg)
	}
	return cfg
}

// testBackoff waits 2^(n-1) seconds of the fake clock.
func testBackoff(n int) time.Duration { return time.Second << min(n-1, 20) }

// service starts a node on store.
func (e *env) service(store Store, online Online, edit ...func(*Config)) *Service {
	e.t.Helper()
	s, err := New(e.config(edit...), Options{
		Store: store, Online: online, Logger: zerolog.New(e.logs).Level(zerolog.DebugLevel),
		Observer: e.obs, Clock: e.clock, Backoff: testBackoff,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	s.Start()
	e.t.Cleanup(func() { _ = s.Close() })
	return s
}

// kill stops s as a crash would: its work in progress is abandoned, nothing
// more is recorded.
func (s *Service) kill() {
	s.closeOnce.Do(func() {
		s.cancelStop()
		s.cancelAbort()
		s.wg.Wait()
	})
}

// offline and online are Online funcs.
func offline(context.Context, string, string) (bool, error) { return false, nil }

// presence is a settable Online.
type presence struct {
	mu sync.Mutex
	on map[string]bool
}

func (p *presence) set(subject string, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.on == nil {
		p.on = map[string]bool{}
	}
	p.on[subject] = on
}

func (p *presence) online(_ context.Context, _, subject string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.on[subject], nil
}

// settle waits until each of the nodes has looked at its queue three more
// times (with nothing in flight, nothing can change after that but by the
// test's hand): the ground for checking that nothing more was sent.
func settle(t *testing.T, nodes ...*Service) {
	t.Helper()
	for _, s := range nodes {
		from := s.polls.Load()
		waitFor(t, 10*time.Second, "the workers to poll", func() bool { return s.polls.Load() >= from+3 })
	}
}

// advanceUntil moves the clock step by step until cond holds: a retry's
// due time passes whenever its backoff was computed.
func (e *env) advanceUntil(step time.Duration, what string, cond func() bool) {
	e.t.Helper()
	waitFor(e.t, 10*time.Second, what, func() bool {
		if cond() {
			return true
		}
		e.clock.Add(step)
		return false
	})
}

// outcome waits until the notification of (channel, id) has a status
// other than PENDING, or for want when want is PENDING.
func (e *env) outcome(s *Service, channel, id string, want Status) Outcome {
	e.t.Helper()
	var o *Outcome
	waitFor(e.t, 10*time.Second, fmt.Sprintf("notification %s/%s to be %s", channel, id, want), func() bool {
		var err error
		o, err = s.Notification(context.Background(), channel, id)
		if err != nil {
			e.t.Fatal(err)
		}
		return o != nil && o.Status == want
	})
	return *o
}

// sentTo counts the messages the fake accepted for openid.
func (e *env) sentTo(openid string) int {
	n := 0
	for _, m := range e.wx.Sent() {
		if m.ToUser == openid {
			n++
		}
	}
	return n
}

func data(v ...string) json.RawMessage {
	m := map[string]map[string]string{}
	for i := 0; i+1 < len(v); i += 2 {
		m[v[i]] = map[string]string{"value": v[i+1]}
	}
	b, _ := json.Marshal(m)
	return b
}

func goodData() json.RawMessage { return data("thing1", "您的订单已发货", "amount2", "¥9.90") }

// notify queues a notification for openid's message id.
func (e *env) notify(s *Service, openid, id string, when When) {
	e.t.Helper()
	err := s.Notify(context.Background(), Notify{Channel: "user:" + openid, MessageID: id, TemplateID: tplOnce,
		Data: goodData(), Page: "pages/order/detail?id=42", When: when})
	if err != nil {
		e.t.Fatal(err)
	}
}

// stores runs f with the memory store and with Redis.
func stores(t *testing.T, f func(t *testing.T, newStore func() Store)) {
	t.Run("memory", func(t *testing.T) {
		shared := NewMemoryStore()
		f(t, func() Store { return shared })
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		f(t, func() Store {
			c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			t.Cleanup(func() { _ = c.Close() })
			return NewRedisStore(c, "pushgate:")
		})
	})
}

// pusher posts events to s's message push handler.
func (e *env) pusher(s *Service, safe, jsonBody bool) *wechattest.Pusher {
	srv := httptest.NewServer(s.EventsHandler())
	e.t.Cleanup(srv.Close)
	p := &wechattest.Pusher{URL: srv.URL + "/wechat/events/" + appID, AppID: appID, Token: testToken,
		JSON: jsonBody, Now: e.clock.Now}
	if safe {
		p.AESKey = testAESKey
	}
	return p
}

// counter reads a counter of the metrics.
func (e *env) counter(name string, labels map[string]string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// tokensWaiting reports whether a caller waited for another node's token.
func (s *Service) tokensWaiting() bool { return s.apps[appID].waiting.Load() }
