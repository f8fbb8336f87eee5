package wechattest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newServer(t *testing.T) (*Server, *clock) {
	s := New(t)
	c := &clock{t: time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)}
	s.SetClock(c.Now)
	s.AddApp("wxapp", "secret")
	return s, c
}

// answer is a decoded WeChat answer.
type answer map[string]any

func (a answer) errcode() int {
	f, _ := a["errcode"].(float64)
	return int(f)
}

func call(t *testing.T, method, u string, body any) (int, answer) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, u, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a answer
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &a)
	return resp.StatusCode, a
}

func token(t *testing.T, s *Server, force bool) answer {
	t.Helper()
	_, a := call(t, "POST", s.URL+"/cgi-bin/stable_token",
		map[string]any{"grant_type": "client_credential", "appid": "wxapp", "secret": "secret", "force_refresh": force})
	return a
}

func TestStableToken(t *testing.T) {
	s, c := newServer(t)
	first := token(t, s, false)
	tok, _ := first["access_token"].(string)
	if tok == "" || first["expires_in"].(float64) != 7200 {
		t.Fatalf("first token: %v", first)
	}
	// Normal mode: the same token while it is valid, with what is left.
	c.Add(time.Hour)
	if a := token(t, s, false); a["access_token"] != tok || a["expires_in"].(float64) != 3600 {
		t.Fatalf("normal mode within validity: %v", a)
	}
	// In the last 5 minutes: a new one, the old one still valid.
	c.Add(56 * time.Minute)
	renewed := token(t, s, false)["access_token"].(string)
	if renewed == tok {
		t.Fatal("no new token in the renew window")
	}
	if code := send(t, s, tok, "o1"); code != 40003 { // valid token, unknown user
		t.Fatalf("old token in the renew window: errcode %d", code)
	}
	c.Add(5 * time.Minute)
	if code := send(t, s, tok, "o1"); code != 42001 {
		t.Fatalf("expired token: errcode %d, want 42001", code)
	}
	// Forced refresh: a new token, the previous one invalid at once.
	forced := token(t, s, true)["access_token"].(string)
	if forced == renewed {
		t.Fatal("force_refresh answered the current token")
	}
	if code := send(t, s, renewed, "o1"); code != 40001 {
		t.Fatalf("token replaced by a forced refresh: errcode %d, want 40001", code)
	}
	// Within 30 s of the last forced refresh: not refreshed.
	c.Add(10 * time.Second)
	if a := token(t, s, true); a["access_token"] != forced {
		t.Fatalf("forced refresh 10 s after another: %v", a)
	}
	// 20 a day, then 45009.
	for i := 2; i <= 20; i++ {
		c.Add(ForceGap)
		if a := token(t, s, true); a.errcode() != 0 {
			t.Fatalf("forced refresh %d: %v", i, a)
		}
	}
	c.Add(ForceGap)
	if a := token(t, s, true); a.errcode() != 45009 || !strings.HasPrefix(a["errmsg"].(string), "reach max api daily quota limit rid: ") {
		t.Fatalf("21st forced refresh: %v", a)
	}
	// Errors: WeChat answers HTTP 200 with the errcode.
	for _, c := range []struct {
		body map[string]any
		want int
	}{
		{map[string]any{"grant_type": "x", "appid": "wxapp", "secret": "secret"}, 40002},
		{map[string]any{"grant_type": "client_credential", "appid": "wxnope", "secret": "secret"}, 40013},
		{map[string]any{"grant_type": "client_credential", "appid": "wxapp", "secret": "wrong"}, 40125},
		{map[string]any{"grant_type": "client_credential", "secret": "secret"}, 41002},
	} {
		status, a := call(t, "POST", s.URL+"/cgi-bin/stable_token", c.body)
		if status != 200 || a.errcode() != c.want {
			t.Errorf("%v: HTTP %d %v, want 200 and %d", c.body, status, a, c.want)
		}
	}
	if _, a := call(t, "GET", s.URL+"/cgi-bin/stable_token", nil); a.errcode() != 43002 {
		t.Errorf("GET stable_token: %v", a)
	}
}

func send(t *testing.T, s *Server, tok, touser string) int {
	t.Helper()
	_, a := call(t, "POST", s.URL+"/cgi-bin/message/subscribe/send?access_token="+url.QueryEscape(tok), map[string]any{
		"touser": touser, "template_id": "T1", "data": map[string]any{"thing1": map[string]string{"value": "hi"}},
	})
	return a.errcode()
}

func TestCode2Session(t *testing.T) {
	s, c := newServer(t)
	s.AddCode("wxapp", "code1", User{OpenID: "o1", UnionID: "u1", SessionKey: "sk"})
	login := func(code string) (int, answer, string) {
		resp, err := http.Get(s.URL + "/sns/jscode2session?" + url.Values{"appid": {"wxapp"}, "secret": {"secret"},
			"js_code": {code}, "grant_type": {"authorization_code"}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var a answer
		_ = json.NewDecoder(resp.Body).Decode(&a)
		return resp.StatusCode, a, resp.Header.Get("Content-Type")
	}
	status, a, ct := login("code1")
	if status != 200 || a["openid"] != "o1" || a["unionid"] != "u1" || a["session_key"] != "sk" || ct != "text/plain" {
		t.Fatalf("login: %d %v %s", status, a, ct)
	}
	if _, ok := a["errcode"]; ok {
		t.Fatalf("a successful answer has no errcode: %v", a)
	}
	if _, a, _ := login("code1"); a.errcode() != 40163 {
		t.Fatalf("reused code: %v", a)
	}
	if _, a, _ := login("nope"); a.errcode() != 40029 {
		t.Fatalf("unknown code: %v", a)
	}
	s.AddCode("wxapp", "code2", User{OpenID: "o2"})
	c.Add(CodeLifetime + time.Second)
	if _, a, _ := login("code2"); a.errcode() != 40029 {
		t.Fatalf("expired code: %v", a)
	}
	s.AddCode("wxapp", "code3", User{OpenID: "o3"})
	s.Inject(APICode2Session, 45011, 1)
	if _, a, _ := login("code3"); a.errcode() != 45011 {
		t.Fatalf("injected 45011: %v", a)
	}
	// The injected answer did not use the code.
	if _, a, _ := login("code3"); a["openid"] != "o3" {
		t.Fatalf("code after an injected error: %v", a)
	}
	if s.Calls(APICode2Session) != 6 {
		t.Fatalf("calls = %d, want 6", s.Calls(APICode2Session))
	}
}

func TestSubscribeSend(t *testing.T) {
	s, _ := newServer(t)
	s.AddUser("wxapp", User{OpenID: "o1"})
	s.AddTemplate("wxapp", "T1", false, "thing1")
	s.AddTemplate("wxapp", "L1", true)
	tok := token(t, s, false)["access_token"].(string)
	post := func(body map[string]any) answer {
		_, a := call(t, "POST", s.URL+"/cgi-bin/message/subscribe/send?access_token="+url.QueryEscape(tok), body)
		return a
	}
	msg := func(tpl string, data map[string]any) map[string]any {
		return map[string]any{"touser": "o1", "template_id": tpl, "page": "pages/a?x=1", "data": data,
			"miniprogram_state": "formal", "lang": "zh_CN"}
	}
	good := map[string]any{"thing1": map[string]string{"value": "hi"}}
	if a := post(msg("T1", good)); a.errcode() != 43101 {
		t.Fatalf("no quota: %v", a)
	}
	s.Accept("wxapp", "o1", "T1", 1)
	if a := post(msg("T1", good)); a.errcode() != 0 || a["errmsg"] != "ok" {
		t.Fatalf("with quota: %v", a)
	}
	if a := post(msg("T1", good)); a.errcode() != 43101 {
		t.Fatalf("quota used: %v", a)
	}
	s.Accept("wxapp", "o1", "L1", 1)
	for range 3 {
		if a := post(msg("L1", good)); a.errcode() != 0 {
			t.Fatalf("long-term: %v", a)
		}
	}
	s.Accept("wxapp", "o1", "T1", 5)
	bad := map[string]any{"thing1": map[string]string{"value": strings.Repeat("长", 21)}}
	if a := post(msg("T1", bad)); a.errcode() != 47003 || !strings.Contains(a["errmsg"].(string), "data.thing1.value") {
		t.Fatalf("bad data: %v", a)
	}
	if a := post(msg("T1", map[string]any{})); a.errcode() != 47003 || !strings.Contains(a["errmsg"].(string), "data.thing1") {
		t.Fatalf("missing key: %v", a)
	}
	if a := post(msg("T9", good)); a.errcode() != 40037 {
		t.Fatalf("unknown template: %v", a)
	}
	m := msg("T1", good)
	m["touser"] = "ox"
	if a := post(m); a.errcode() != 40003 {
		t.Fatalf("unknown openid: %v", a)
	}
	s.SetPages("wxapp", "pages/index")
	if a := post(msg("T1", good)); a.errcode() != 41030 {
		t.Fatalf("unknown page: %v", a)
	}
	if got := len(s.Sent()); got != 4 || s.Quota("wxapp", "o1", "T1") != 5 {
		t.Fatalf("sent %d, quota %d", got, s.Quota("wxapp", "o1", "T1"))
	}
	if m := s.Sent()[0]; m.Data["thing1"] != "hi" || m.Page != "pages/a?x=1" || m.MiniprogramState != "formal" || m.Lang != "zh_CN" {
		t.Fatalf("recorded message: %+v", m)
	}
}

func TestFaults(t *testing.T) {
	s, _ := newServer(t)
	s.InjectHTTP(APIStableToken, 502, 1)
	resp, err := http.Post(s.URL+"/cgi-bin/stable_token", "application/json", strings.NewReader("{}"))
	if err != nil || resp.StatusCode != 502 {
		t.Fatalf("injected 502: %v %v", resp, err)
	}
	resp.Body.Close()
	s.InjectReset(APIStableToken, 1)
	_, err = http.Post(s.URL+"/cgi-bin/stable_token", "application/json", strings.NewReader("{}"))
	if err == nil || !errors.Is(err, syscall.ECONNRESET) && !strings.Contains(err.Error(), "EOF") {
		t.Fatalf("injected reset: %v", err)
	}
	// Down: an open connection gets 503, a new one is refused.
	open := &http.Client{Transport: &http.Transport{}}
	if resp, err := open.Get(s.URL + "/"); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	s.Down()
	if resp, err := open.Post(s.URL+"/cgi-bin/stable_token", "application/json", strings.NewReader("{}")); err != nil || resp.StatusCode != 503 {
		t.Fatalf("down, open connection: %v %v", resp, err)
	}
	fresh := &http.Client{Transport: &http.Transport{}}
	_, err = fresh.Post(s.URL+"/cgi-bin/stable_token", "application/json", strings.NewReader("{}"))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("down, new connection: %v, want connection refused", err)
	}
	s.Up()
	if a := token(t, s, false); a["access_token"] == nil {
		t.Fatalf("up again: %v", a)
	}
	s.SetLatency(APIStableToken, 300*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", s.URL+"/cgi-bin/stable_token", strings.NewReader("{}"))
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("latency: %v", err)
	}
}

// TestSign: the example of WeChat's message push documentation (token
// AAAAA, timestamp 1714036504, nonce 1514711492).
func TestSign(t *testing.T) {
	if got := Sign("AAAAA", "1714036504", "1514711492"); got != "f464b24fc39322e44b38aa78f5edd27bd1441696" {
		t.Fatalf("Sign = %s", got)
	}
}
