package wechat

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/wechattest"
)

// TestNodeKilledBeforeSend: a node that dies holding a notification it has
// not sent yet loses nothing: another node claims it after the claim idle
// time and sends it, once.
func TestNodeKilledBeforeSend(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() Store) {
		e := newEnv(t)
		e.wx.Accept(appID, openID1, tplOnce, 5)
		taken := make(chan struct{}, 1)
		// Node a takes the notification and hangs in its presence check
		// until it is killed.
		a := e.service(newStore(), func(ctx context.Context, _, _ string) (bool, error) {
			taken <- struct{}{}
			<-ctx.Done()
			return false, ctx.Err()
		})
		e.notify(a, openID1, "1", WhenOffline)
		e.clock.Add(DefaultOfflineGrace)
		select {
		case <-taken:
		case <-time.After(10 * time.Second):
			t.Fatal("node a did not take the notification")
		}
		a.kill()
		b := e.service(newStore(), offline)
		if o := e.outcome(b, "user:"+openID1, "1", StatusSent); o.Attempts != 1 {
			t.Fatalf("outcome %+v", o)
		}
		settle(t, b)
		if n := e.sentTo(openID1); n != 1 {
			t.Fatalf("%d messages, want 1", n)
		}
	})
}

// TestNodeKilledMidSend: a node that dies after its request reached WeChat
// and before the answer was recorded leaves the notification in flight;
// the node that claims it marks it UNKNOWN and does not send it again (the
// first request was delivered). An app that opts into at-least-once sends
// it again.
func TestNodeKilledMidSend(t *testing.T) {
	for _, alo := range []bool{false, true} {
		t.Run(fmt.Sprintf("at-least-once=%v", alo), func(t *testing.T) {
			stores(t, func(t *testing.T, newStore func() Store) {
				e := newEnv(t)
				e.wx.Accept(appID, openID1, tplOnce, 5)
				e.wx.SetLatency(wxSend, 300*time.Millisecond)
				edit := func(c *Config) { c.Apps[0].AtLeastOnce = alo }
				a := e.service(newStore(), offline, edit)
				e.notify(a, openID1, "1", WhenAlways)
				waitFor(t, 10*time.Second, "the send request", func() bool { return e.wx.Calls(wxSend) == 1 })
				a.kill()
				// WeChat delivers the message although node a never hears.
				waitFor(t, 10*time.Second, "the delivery", func() bool { return e.sentTo(openID1) == 1 })
				e.wx.SetLatency(wxSend, 0)
				b := e.service(newStore(), offline, edit)
				if !alo {
					o := e.outcome(b, "user:"+openID1, "1", StatusUnknown)
					if o.Reason != ReasonInterrupted || o.Attempts != 1 {
						t.Fatalf("outcome %+v", o)
					}
					settle(t, b)
					if n := e.sentTo(openID1); n != 1 {
						t.Fatalf("%d messages, want 1", n)
					}
					return
				}
				if o := e.outcome(b, "user:"+openID1, "1", StatusSent); o.Attempts != 2 {
					t.Fatalf("outcome %+v", o)
				}
				if n := e.sentTo(openID1); n != 2 {
					t.Fatalf("%d messages, want 2 (at least once)", n)
				}
			})
		})
	}
}

// TestNotifyOutage: WeChat down for a (simulated) minute, refusing
// connections and then answering 503, delays notifications and loses
// none: each is sent once when WeChat is back.
func TestNotifyOutage(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() Store) {
		e := newEnv(t)
		a, b := e.service(newStore(), offline), e.service(newStore(), offline)
		users := []string{openID1, openID2}
		for _, u := range users {
			e.wx.Accept(appID, u, tplOnce, 10)
		}
		// A token first, so that the outage hits the sends.
		if _, err := a.AccessToken(context.Background(), appID); err != nil {
			t.Fatal(err)
		}
		start := e.clock.Now()
		e.wx.Down()
		for i := range 6 {
			e.notify([]*Service{a, b}[i%2], users[i%2], fmt.Sprint(i), WhenAlways)
		}
		// Half a minute of refused connections, half a minute of 503s.
		e.advanceUntil(time.Second, "30 s of outage", func() bool { return e.clock.Now().Sub(start) >= 30*time.Second })
		e.wx.Up()
		e.wx.InjectHTTP(wxSend, 503, 1000)
		e.advanceUntil(time.Second, "60 s of outage", func() bool { return e.clock.Now().Sub(start) >= 60*time.Second })
		if len(e.wx.Sent()) != 0 {
			t.Fatalf("%d sent during the outage", len(e.wx.Sent()))
		}
		for i := range 6 {
			o, err := a.Notification(context.Background(), "user:"+users[i%2], fmt.Sprint(i))
			if err != nil || o.Status != StatusPending || o.Reason != ReasonRetrying {
				t.Fatalf("notification %d during the outage: %+v %v", i, o, err)
			}
		}
		e.wx.Clear(wxSend)
		e.advanceUntil(time.Second, "every notification to be sent", func() bool { return len(e.wx.Sent()) == 6 })
		for i := range 6 {
			e.outcome(a, "user:"+users[i%2], fmt.Sprint(i), StatusSent)
		}
		settle(t, a, b)
		if e.sentTo(openID1) != 3 || e.sentTo(openID2) != 3 {
			t.Fatalf("sent %d and %d, want 3 each", e.sentTo(openID1), e.sentTo(openID2))
		}
		for _, m := range e.wx.Sent() {
			if m.At.Sub(start) < time.Minute {
				t.Fatalf("a message went %v into the outage", m.At.Sub(start))
			}
		}
	})
}

// TestNotifyMaxAge: an outage longer than the max age fails the
// notification (EXPIRED) with WeChat's last answer.
func TestNotifyMaxAge(t *testing.T) {
	e := newEnv(t)
	s := e.service(NewMemoryStore(), offline, func(c *Config) { c.Apps[0].NotifyMaxAge = time.Minute })
	e.wx.Accept(appID, openID1, tplOnce, 1)
	e.wx.Inject(wxSend, -1, 1000)
	e.notify(s, openID1, "1", WhenAlways)
	e.advanceUntil(time.Second, "the notification to expire", func() bool {
		o, _ := s.Notification(context.Background(), "user:"+openID1, "1")
		return o.Status != StatusPending
	})
	o := e.outcome(s, "user:"+openID1, "1", StatusFailed)
	if o.Reason != ReasonExpired || o.Errcode != -1 || o.Attempts < 3 {
		t.Fatalf("outcome %+v", o)
	}
	if len(e.wx.Sent()) != 0 {
		t.Fatal("sent")
	}
}

// TestLedger: a user whose ledger says no quota is SKIPPED (NO_QUOTA)
// without an API call; with no ledger entry the send is tried, and
// WeChat's 43101 teaches the ledger; a long-term template takes any number
// while accepted.
func TestLedger(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() Store) {
		e := newEnv(t)
		s := e.service(newStore(), offline)
		p := e.pusher(s, true, true)
		push := func(ev wechattest.Event) {
			t.Helper()
			if res, err := p.Push(context.Background(), ev, wechattest.Tamper{}); err != nil || res.Body != "success" {
				t.Fatalf("push: %+v %v", res, err)
			}
		}
		send := func(openid, tpl, id string) Outcome {
			t.Helper()
			if err := s.Notify(context.Background(), Notify{Channel: "user:" + openid, MessageID: id, TemplateID: tpl,
				Data: goodData(), When: WhenAlways}); err != nil {
				t.Fatal(err)
			}
			var o *Outcome
			waitFor(t, 10*time.Second, "notification "+id, func() bool {
				o, _ = s.Notification(context.Background(), "user:"+openid, id)
				return o != nil && o.Status.Final()
			})
			return *o
		}
		// One acceptance, one message.
		e.wx.Accept(appID, openID1, tplOnce, 1)
		push(popup(openID1, wechattest.Item{TemplateID: tplOnce, Status: "accept"}))
		if o := send(openID1, tplOnce, "1"); o.Status != StatusSent {
			t.Fatalf("with quota: %+v", o)
		}
		if q := e.quota(s, openID1, tplOnce); q.Count != 0 {
			t.Fatalf("ledger after the send: %+v", q)
		}
		calls := e.wx.Calls(wxSend)
		if o := send(openID1, tplOnce, "2"); o.Status != StatusSkipped || o.Reason != ReasonNoQuota || o.Attempts != 0 {
			t.Fatalf("quota used: %+v", o)
		}
		if e.wx.Calls(wxSend) != calls {
			t.Fatal("a NO_QUOTA notification called WeChat")
		}
		// No entry: tried; WeChat refuses; the ledger learns.
		if o := send(openID2, tplOnce, "3"); o.Status != StatusRefused || o.Errcode != 43101 {
			t.Fatalf("no entry, no quota at WeChat: %+v", o)
		}
		calls = e.wx.Calls(wxSend)
		if o := send(openID2, tplOnce, "4"); o.Reason != ReasonNoQuota || e.wx.Calls(wxSend) != calls {
			t.Fatalf("after a 43101: %+v, %d calls", o, e.wx.Calls(wxSend)-calls)
		}
		// Long-term: any number while accepted, none after a reject.
		e.wx.Accept(appID, openID2, tplLong, 1)
		push(popup(openID2, wechattest.Item{TemplateID: tplLong, Status: "accept"}))
		for i := range 3 {
			if o := send(openID2, tplLong, fmt.Sprint("L", i)); o.Status != StatusSent {
				t.Fatalf("long-term %d: %+v", i, o)
			}
		}
		push(wechattest.Event{Name: wechattest.EventChange, OpenID: openID2,
			Items: []wechattest.Item{{TemplateID: tplLong, Status: "reject"}}})
		calls = e.wx.Calls(wxSend)
		if o := send(openID2, tplLong, "L9"); o.Reason != ReasonNoQuota || e.wx.Calls(wxSend) != calls {
			t.Fatalf("long-term after a reject: %+v", o)
		}
	})
}

// TestCloseWaits: Close stops the workers, waits for the sends in flight to
// finish (their outcome recorded), and leaves no goroutine behind.
func TestCloseWaits(t *testing.T) {
	e := newEnv(t)
	e.wx.Accept(appID, openID1, tplOnce, 5)
	before := runtime.NumGoroutine()
	s, err := New(e.config(), Options{Online: offline, Clock: e.clock, Backoff: testBackoff})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	e.wx.SetLatency(wxSend, 300*time.Millisecond)
	e.notify(s, openID1, "1", WhenAlways)
	waitFor(t, 10*time.Second, "the send request", func() bool { return e.wx.Calls(wxSend) == 1 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The send in flight finished before Close returned.
	if o, _ := s.Notification(context.Background(), "user:"+openID1, "1"); o.Status != StatusSent {
		t.Fatalf("after Close: %+v", o)
	}
	waitFor(t, 10*time.Second, "the goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	_ = s.Close() // twice is fine
}
