package wechat

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/wechattest"
)

func popup(openid string, items ...wechattest.Item) wechattest.Event {
	return wechattest.Event{Name: wechattest.EventPopup, OpenID: openid, Items: items}
}

func (e *env) quota(s *Service, openid, tpl string) Quota {
	e.t.Helper()
	q, err := s.Subscription(context.Background(), "", openid, tpl)
	if err != nil {
		e.t.Fatal(err)
	}
	return q
}

// TestEventsLedger: the subscribe-message events keep the ledger, in every
// mode WeChat pushes: plaintext and safe mode, XML and JSON, List as an
// array or one object.
func TestEventsLedger(t *testing.T) {
	for _, mode := range []struct {
		name             string
		safe, json, list bool
	}{
		{"plaintext XML", false, false, false},
		{"plaintext JSON", false, true, false},
		{"safe XML", true, false, false},
		{"safe JSON", true, true, false},
		{"safe JSON List object", true, true, true},
	} {
		t.Run(mode.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.service(NewMemoryStore(), offline, func(c *Config) {
				if !mode.safe {
					c.Apps[0].AESKey = ""
				}
			})
			p := e.pusher(s, mode.safe, mode.json)
			p.ListObject = mode.list
			push := func(ev wechattest.Event) {
				t.Helper()
				res, err := p.Push(context.Background(), ev, wechattest.Tamper{})
				if err != nil || res.Status != 200 || res.Body != "success" {
					t.Fatalf("push %s: %+v %v", ev.Name, res, err)
				}
			}
			push(popup(openID1, wechattest.Item{TemplateID: tplOnce, Status: "accept"}))
			push(popup(openID1, wechattest.Item{TemplateID: tplOnce, Status: "accept"}, wechattest.Item{TemplateID: tplLong, Status: "accept"}))
			if q := e.quota(s, openID1, tplOnce); !q.Known || !q.Accepted || q.Count != 2 || !q.UpdatedAt.Equal(e.clock.Now()) {
				t.Fatalf("after two acceptances: %+v", q)
			}
			if q := e.quota(s, openID1, tplLong); !q.Allows(true) {
				t.Fatalf("long-term template after acceptance: %+v", q)
			}
			// The user cancels in the settings: nothing may be sent.
			push(wechattest.Event{Name: wechattest.EventChange, OpenID: openID1,
				Items: []wechattest.Item{{TemplateID: tplLong, Status: "reject"}}})
			if q := e.quota(s, openID1, tplLong); q.Allows(true) || q.Count != 0 {
				t.Fatalf("long-term template after a reject: %+v", q)
			}
			// A sent event changes nothing: success (the send used the
			// acceptance), and a failure, which WeChat documents as a
			// system failure of its push, not the user's choice.
			push(wechattest.Event{Name: wechattest.EventSent, OpenID: openID1,
				Items: []wechattest.Item{{TemplateID: tplOnce, MsgID: "1700827132819554304", ErrorCode: 0, ErrorStatus: "success"}}})
			if q := e.quota(s, openID1, tplOnce); q.Count != 2 {
				t.Fatalf("after a successful sent event: %+v", q)
			}
			push(wechattest.Event{Name: wechattest.EventSent, OpenID: openID1,
				Items: []wechattest.Item{{TemplateID: tplOnce, MsgID: "1700827132819554305", ErrorCode: 20004, ErrorStatus: "fail: system error"}}})
			if q := e.quota(s, openID1, tplOnce); q.Count != 2 || !q.Accepted {
				t.Fatalf("after a failed sent event: %+v", q)
			}
			// Other events are answered and ignored.
			push(wechattest.Event{Name: "user_enter_tempsession", OpenID: openID2})
			if q := e.quota(s, openID2, tplOnce); q.Known {
				t.Fatalf("an unrelated event changed the ledger: %+v", q)
			}
		})
	}
}

// TestEventsURLCheck: WeChat's URL check echoes echostr when signed.
func TestEventsURLCheck(t *testing.T) {
	e := newEnv(t)
	s := e.service(NewMemoryStore(), offline)
	p := e.pusher(s, true, false)
	res, err := p.CheckURL(context.Background(), "4375120948345356249", wechattest.Tamper{})
	if err != nil || res.Status != 200 || res.Body != "4375120948345356249" {
		t.Fatalf("URL check: %+v %v", res, err)
	}
	if res, _ := p.CheckURL(context.Background(), "1", wechattest.Tamper{BadSignature: true}); res.Status != 401 || res.Body == "1" {
		t.Fatalf("URL check, bad signature: %+v", res)
	}
	if res, _ := p.CheckURL(context.Background(), "1", wechattest.Tamper{Timestamp: e.clock.Now().Add(-6 * time.Minute)}); res.Status != 403 {
		t.Fatalf("URL check, stale: %+v", res)
	}
	// An unknown app, or one without a push token, has no endpoint.
	srv := httptest.NewServer(s.EventsHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/wechat/events/wxother")
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("unknown app: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestEventsRefused: safe-mode pushes with a bad signature, a tampered
// body, a stale or future timestamp, a replayed nonce or another app's id
// inside are refused and change no ledger; so is a plaintext push to a
// safe-mode app.
func TestEventsRefused(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() Store) {
		e := newEnv(t)
		s := e.service(newStore(), offline)
		for _, jsonBody := range []bool{false, true} {
			p := e.pusher(s, true, jsonBody)
			ev := popup(openID1, wechattest.Item{TemplateID: tplOnce, Status: "accept"})
			ok, err := p.Push(context.Background(), ev, wechattest.Tamper{})
			if err != nil || ok.Status != 200 || ok.Body != "success" {
				t.Fatalf("genuine push: %+v %v", ok, err)
			}
			before := e.quota(s, openID1, tplOnce)
			for _, c := range []struct {
				name   string
				tamper wechattest.Tamper
				status int
			}{
				{"bad signature", wechattest.Tamper{BadSignature: true}, 401},
				{"tampered ciphertext", wechattest.Tamper{Ciphertext: true}, 401},
				{"stale timestamp", wechattest.Tamper{Timestamp: e.clock.Now().Add(-5*time.Minute - time.Second)}, 403},
				{"future timestamp", wechattest.Tamper{Timestamp: e.clock.Now().Add(6 * time.Minute)}, 403},
				{"replayed nonce", wechattest.Tamper{Nonce: ok.Nonce}, 403},
				{"another app inside", wechattest.Tamper{AppID: "wxanother0000000"}, 400},
			} {
				res, err := p.Push(context.Background(), ev, c.tamper)
				if err != nil || res.Status != c.status || res.Body == "success" {
					t.Errorf("json=%v %s: %+v %v, want HTTP %d", jsonBody, c.name, res, err, c.status)
				}
			}
			plain := *p
			plain.AESKey = ""
			if res, _ := plain.Push(context.Background(), ev, wechattest.Tamper{}); res.Status != 403 {
				t.Errorf("plaintext push to a safe-mode app: %+v", res)
			}
			if q := e.quota(s, openID1, tplOnce); q != before {
				t.Fatalf("json=%v: refused pushes changed the ledger: %+v -> %+v", jsonBody, before, q)
			}
		}
		// Malformed pushes are answered 400 and change nothing either.
		srv := httptest.NewServer(s.EventsHandler())
		defer srv.Close()
		for _, body := range []string{"", "not xml", `{"Encrypt": ""}`, `{"Encrypt": "!!!"}`} {
			ts := e.clock.Now().Unix()
			q := "?timestamp=" + itoa(ts) + "&nonce=123&encrypt_type=aes&msg_signature=" +
				signature(testToken, itoa(ts), "123", "!!!")
			resp, err := http.Post(srv.URL+"/wechat/events/"+appID+q, "text/xml", strings.NewReader(body))
			if err != nil || resp.StatusCode/100 != 4 {
				t.Fatalf("body %q: %v %v", body, resp, err)
			}
			resp.Body.Close()
		}
	})
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestDecrypt: pushgate reads what the fake's independent Encrypt writes,
// and the signature matches the example of WeChat's documentation.
func TestDecrypt(t *testing.T) {
	key, err := aesKeyBytes(testAESKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"", "x", strings.Repeat("消息", 100), `<xml><Event>e</Event></xml>`} {
		enc, err := wechattest.Encrypt(testAESKey, appID, []byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		got, err := decrypt(key, enc, appID)
		if err != nil || string(got) != msg {
			t.Fatalf("decrypt(%q) = %q, %v", msg, got, err)
		}
		if _, err := decrypt(key, enc, "wxsomeoneelse00"); err != errAppID {
			t.Fatalf("another app's message: %v", err)
		}
	}
	if _, err := decrypt(key, "AAAA", appID); err == nil {
		t.Fatal("garbage decrypted")
	}
	if got := signature("AAAAA", "1714036504", "1514711492"); got != "f464b24fc39322e44b38aa78f5edd27bd1441696" {
		t.Fatalf("signature of the documentation's example = %s", got)
	}
}
