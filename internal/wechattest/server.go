// Package wechattest is a stand-in for WeChat's server API
// (api.weixin.qq.com) and for its message push, built from WeChat's public
// documentation for the tests of package wechat: code2Session
// (/sns/jscode2session), getStableAccessToken (/cgi-bin/stable_token) and
// subscribeMessage.send (/cgi-bin/message/subscribe/send), with WeChat's
// status codes (HTTP 200 with an errcode in the body), errcodes and body
// shapes; and a Pusher that signs and encrypts events as WeChat's message
// push does.
//
// The Server keeps each app's users, single-use login codes, templates and
// per-user quotas; access tokens that expire on its clock and that a
// forced refresh invalidates; counts of calls per API; and a record of the
// messages it accepted. Tests make it fail on demand: the next N answers
// of an API with an errcode, an HTTP status or a connection reset, a
// latency, or the whole server down (connections refused).
//
// It does not import package wechat: it is an independent reading of the
// same documentation, so that the two check each other.
package wechattest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// The APIs, as Calls, Inject and SetLatency name them.
const (
	APICode2Session  = "jscode2session"
	APIStableToken   = "stable_token"
	APISubscribeSend = "subscribe_send"
)

// Documented limits.
const (
	// DefaultTokenLifetime: expires_in of a new access token (7200 s).
	DefaultTokenLifetime = 7200 * time.Second
	// DefaultRenewWindow: in its last 5 minutes, a normal-mode call gets a
	// new token (the old one stays valid until it expires).
	DefaultRenewWindow = 5 * time.Minute
	// ForceGap: a forced refresh within 30 s of the previous one does not
	// refresh (the current token is answered).
	ForceGap = 30 * time.Second
	// ForceDaily: 20 forced refreshes a day, then 45009.
	ForceDaily = 20
	// CodeLifetime: a wx.login code is valid 5 minutes.
	CodeLifetime = 5 * time.Minute
)

// errmsgs are WeChat's errmsg texts; every answer adds " rid: ...".
var errmsgs = map[int]string{
	-1:    "system error",
	40001: "invalid credential, access_token is invalid or not latest",
	40002: "invalid grant_type",
	40003: "invalid openid",
	40013: "invalid appid",
	40014: "invalid access_token",
	40029: "invalid code",
	40037: "invalid template_id",
	40125: "invalid appsecret",
	40163: "code been used",
	40226: "code blocked",
	41001: "access_token missing",
	41002: "appid missing",
	41004: "appsecret missing",
	41008: "missing code",
	41030: "invalid page",
	42001: "access_token expired",
	43001: "require GET method",
	43002: "require POST method",
	43101: "user refuse to accept the msg",
	44002: "empty post data",
	45009: "reach max api daily quota limit",
	45011: "api minute-quota reach limit mustslower retry next minute",
	47001: "data format error",
	47003: "argument invalid!",
}

// User is a user of an app.
type User struct {
	OpenID     string
	UnionID    string
	SessionKey string
}

// Message is a subscribe message the Server accepted.
type Message struct {
	AppID            string
	ToUser           string
	TemplateID       string
	Page             string
	Data             map[string]string
	MiniprogramState string
	Lang             string
	MsgID            int64
	At               time.Time
}

type code struct {
	user   *User
	issued time.Time
	used   bool
}

type tokenState struct {
	app     string
	expires time.Time
	revoked bool // invalidated by a forced refresh
}

type template struct {
	keys     []string
	longTerm bool
}

type userTemplate struct{ openid, template string }

type fakeApp struct {
	id, secret string
	codes      map[string]*code
	users      map[string]*User
	templates  map[string]*template
	pages      map[string]bool // nil: any page
	quota      map[userTemplate]int
	accepted   map[userTemplate]bool // long-term templates
	current    string
	forcedAt   time.Time
	forcedDay  string
	forced     int
}

type fault struct {
	errcode int // an errcode answer
	status  int // an HTTP status answer
	reset   bool
}

// Server is the fake API. Its methods are safe for concurrent use.
type Server struct {
	// URL is the API root to configure as api_url.
	URL string

	srv *httptest.Server
	ln  *switchListener

	mu            sync.Mutex
	now           func() time.Time
	tokenLifetime time.Duration
	renewWindow   time.Duration
	apps          map[string]*fakeApp
	tokens        map[string]*tokenState
	faults        map[string][]fault
	latency       map[string]time.Duration
	calls         map[string]int
	sent          []Message
	msgSeq        int64
	down          bool
	closed        chan struct{}
}

// New starts a Server on a loopback port; the test's cleanup closes it.
func New(t testing.TB) *Server {
	t.Helper()
	ln, err := newSwitchListener()
	if err != nil {
		t.Fatalf("wechattest: %v", err)
	}
	s := &Server{
		ln: ln, now: time.Now, tokenLifetime: DefaultTokenLifetime, renewWindow: DefaultRenewWindow,
		apps: map[string]*fakeApp{}, tokens: map[string]*tokenState{}, faults: map[string][]fault{},
		latency: map[string]time.Duration{}, calls: map[string]int{}, closed: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/sns/jscode2session", s.serve(APICode2Session, s.code2Session))
	mux.HandleFunc("/cgi-bin/stable_token", s.serve(APIStableToken, s.stableToken))
	mux.HandleFunc("/cgi-bin/message/subscribe/send", s.serve(APISubscribeSend, s.subscribeSend))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// WeChat answers an unknown path with 200 and errcode 40066.
		writeJSON(w, "application/json", map[string]any{"errcode": 40066, "errmsg": "invalid url" + rid()})
	})
	s.srv = httptest.NewUnstartedServer(mux)
	s.srv.Listener = ln
	s.srv.Start()
	s.URL = s.srv.URL
	t.Cleanup(s.Close)
	return s
}

// Close stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.closed:
		s.mu.Unlock()
		return
	default:
		close(s.closed)
	}
	s.mu.Unlock()
	s.srv.Close()
}

// SetClock makes the Server read the time from now (token and code expiry,
// the forced-refresh limits).
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// SetTokenLifetime sets the lifetime of new access tokens (expires_in) and
// the renew window of normal-mode calls.
func (s *Server) SetTokenLifetime(lifetime, renewWindow time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenLifetime, s.renewWindow = lifetime, renewWindow
}

// AddApp registers an app and its AppSecret.
func (s *Server) AddApp(appID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apps[appID] = &fakeApp{id: appID, secret: secret, codes: map[string]*code{}, users: map[string]*User{},
		templates: map[string]*template{}, quota: map[userTemplate]int{}, accepted: map[userTemplate]bool{}}
}

func (s *Server) app(appID string) *fakeApp {
	a := s.apps[appID]
	if a == nil {
		panic("wechattest: unknown app " + appID)
	}
	return a
}

// AddUser registers a user (its openid becomes a valid touser).
func (s *Server) AddUser(appID string, u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	uc := u
	s.app(appID).users[u.OpenID] = &uc
}

// AddCode registers a wx.login code of u, valid for CodeLifetime from now
// and for one code2Session; the user is registered too.
func (s *Server) AddCode(appID, jsCode string, u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.app(appID)
	uc := u
	if uc.SessionKey == "" {
		uc.SessionKey = randomString(16)
	}
	a.users[u.OpenID] = &uc
	a.codes[jsCode] = &code{user: &uc, issued: s.now()}
}

// AddTemplate registers a template; with keys, a send's data must have
// exactly those keys. A long-term template takes any number of messages
// once accepted.
func (s *Server) AddTemplate(appID, templateID string, longTerm bool, keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.app(appID).templates[templateID] = &template{keys: keys, longTerm: longTerm}
}

// SetPages restricts a send's page to these paths (41030 otherwise); by
// default any page is accepted.
func (s *Server) SetPages(appID string, pages ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.app(appID)
	a.pages = map[string]bool{}
	for _, p := range pages {
		a.pages[strings.TrimPrefix(p, "/")] = true
	}
}

// Accept records that openid accepted template n times (wx.request-
// SubscribeMessage): one message each for a one-time template; a
// long-term template is then accepted for good.
func (s *Server) Accept(appID, openid, templateID string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.app(appID)
	k := userTemplate{openid, templateID}
	a.quota[k] += n
	a.accepted[k] = true
}

// Reject records that openid rejected (or cancelled) template.
func (s *Server) Reject(appID, openid, templateID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.app(appID)
	k := userTemplate{openid, templateID}
	a.quota[k] = 0
	a.accepted[k] = false
}

// Quota returns openid's unused one-time acceptances of template.
func (s *Server) Quota(appID, openid, templateID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app(appID).quota[userTemplate{openid, templateID}]
}

// Inject makes the next n answers of api the errcode (HTTP 200, WeChat's
// errmsg); nothing else happens (no code is used, no message sent).
func (s *Server) Inject(api string, errcode, n int) { s.addFault(api, fault{errcode: errcode}, n) }

// InjectHTTP makes the next n answers of api the HTTP status (with an HTML
// body, as a gateway answers).
func (s *Server) InjectHTTP(api string, status, n int) { s.addFault(api, fault{status: status}, n) }

// InjectReset makes the next n requests of api end with a connection reset
// after the request was read, before anything is done or answered.
func (s *Server) InjectReset(api string, n int) { s.addFault(api, fault{reset: true}, n) }

func (s *Server) addFault(api string, f fault, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[api] = append(s.faults[api], f)
	}
}

// Clear drops the faults still injected for api and its latency.
func (s *Server) Clear(api string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.faults, api)
	delete(s.latency, api)
}

// SetLatency delays every answer of api by d (real time). The request is
// then processed even if the client has given up, as a real server does.
func (s *Server) SetLatency(api string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency[api] = d
}

// Down takes the server down until Up, as a gateway whose backends are
// gone: new connections are refused (the listening socket is closed) and
// requests on connections already open are answered 503. (Closing those
// connections instead would race with a client reusing one, whose request
// then fails after it was written: a genuinely ambiguous outcome, which
// InjectReset produces on purpose.)
func (s *Server) Down() {
	s.mu.Lock()
	s.down = true
	s.mu.Unlock()
	s.ln.down()
}

// Up listens again on the same address.
func (s *Server) Up() {
	s.ln.up()
	s.mu.Lock()
	s.down = false
	s.mu.Unlock()
}

// Calls returns the number of requests api received (failed ones too).
func (s *Server) Calls(api string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[api]
}

// Sent returns the messages accepted so far, in order.
func (s *Server) Sent() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.sent...)
}

// AccessToken returns app's current access token ("" before the first
// stable_token call).
func (s *Server) AccessToken(appID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.app(appID).current
}

// Tokens returns every access token issued so far, valid or not.
func (s *Server) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.tokens))
	for t := range s.tokens {
		out = append(out, t)
	}
	return out
}

// ---- serving ----

type handler func(w http.ResponseWriter, r *http.Request, body []byte)

// serve counts the call, applies latency and injected faults, then runs h
// under the lock.
func (s *Server) serve(api string, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		s.mu.Lock()
		s.calls[api]++
		delay := s.latency[api]
		var f *fault
		if s.down {
			f = &fault{status: http.StatusServiceUnavailable}
		} else if q := s.faults[api]; len(q) > 0 {
			f = &q[0]
			s.faults[api] = q[1:]
		}
		s.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-s.closed:
				return
			}
		}
		if f != nil {
			switch {
			case f.reset:
				resetConn(w)
			case f.status != 0:
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(f.status)
				fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>", f.status, http.StatusText(f.status))
			default:
				wxError(w, f.errcode, "")
			}
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		h(w, r, body)
	}
}

// resetConn ends the connection with a TCP reset (SO_LINGER 0).
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic("wechattest: cannot hijack: " + err.Error())
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func rid() string { return " rid: " + randomString(4) + "-" + randomString(4) + "-" + randomString(4) }

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// wxError answers WeChat's error shape: HTTP 200, {"errcode","errmsg"}.
func wxError(w http.ResponseWriter, errcode int, detail string) {
	msg := errmsgs[errcode]
	if msg == "" {
		msg = "error"
	}
	if detail != "" {
		msg += " " + detail
	}
	writeJSON(w, "application/json; encoding=utf-8", map[string]any{"errcode": errcode, "errmsg": msg + rid()})
}

func writeJSON(w http.ResponseWriter, contentType string, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// code2Session: GET /sns/jscode2session?appid&secret&js_code&grant_type.
func (s *Server) code2Session(w http.ResponseWriter, r *http.Request, _ []byte) {
	if r.Method != http.MethodGet {
		wxError(w, 43001, "")
		return
	}
	q := r.URL.Query()
	a, ok := s.checkApp(w, q.Get("appid"), q.Get("secret"))
	if !ok {
		return
	}
	jsCode := q.Get("js_code")
	switch {
	case jsCode == "":
		wxError(w, 41008, "")
		return
	case q.Get("grant_type") != "authorization_code":
		wxError(w, 40002, "")
		return
	}
	c := a.codes[jsCode]
	switch {
	case c == nil || s.now().Sub(c.issued) > CodeLifetime:
		wxError(w, 40029, "")
		return
	case c.used:
		wxError(w, 40163, "")
		return
	}
	c.used = true
	out := map[string]any{"openid": c.user.OpenID, "session_key": c.user.SessionKey}
	if c.user.UnionID != "" {
		out["unionid"] = c.user.UnionID
	}
	// jscode2session answers JSON with a text/plain Content-Type.
	writeJSON(w, "text/plain", out)
}

// checkApp answers the errcode of a missing or wrong appid or secret.
func (s *Server) checkApp(w http.ResponseWriter, appID, secret string) (*fakeApp, bool) {
	a := s.apps[appID]
	switch {
	case appID == "":
		wxError(w, 41002, "")
	case a == nil:
		wxError(w, 40013, "")
	case secret == "":
		wxError(w, 41004, "")
	case secret != a.secret:
		wxError(w, 40125, "")
	default:
		return a, true
	}
	return nil, false
}

// stableToken: POST /cgi-bin/stable_token {grant_type, appid, secret,
// force_refresh}.
func (s *Server) stableToken(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodPost {
		wxError(w, 43002, "")
		return
	}
	var req struct {
		GrantType    string `json:"grant_type"`
		AppID        string `json:"appid"`
		Secret       string `json:"secret"`
		ForceRefresh bool   `json:"force_refresh"`
	}
	if len(body) == 0 {
		wxError(w, 44002, "")
		return
	}
	if err := json.Unmarshal(body, &req); err != nil {
		wxError(w, 47001, "")
		return
	}
	if req.GrantType != "client_credential" {
		wxError(w, 40002, "")
		return
	}
	a, ok := s.checkApp(w, req.AppID, req.Secret)
	if !ok {
		return
	}
	now := s.now()
	cur := s.tokens[a.current]
	valid := cur != nil && !cur.revoked && now.Before(cur.expires)
	if req.ForceRefresh {
		day := now.Format("2006-01-02")
		if a.forcedDay != day {
			a.forcedDay, a.forced = day, 0
		}
		switch {
		case a.forced >= ForceDaily:
			wxError(w, 45009, "")
			return
		case valid && now.Sub(a.forcedAt) < ForceGap:
			// Too soon after the last forced refresh: not refreshed.
			s.answerToken(w, a.current, cur, now)
			return
		}
		a.forced++
		a.forcedAt = now
		if cur != nil {
			cur.revoked = true
		}
		s.issueToken(w, a, now)
		return
	}
	if valid && cur.expires.Sub(now) > s.renewWindow {
		s.answerToken(w, a.current, cur, now)
		return
	}
	// In the renew window (or without a valid token): a new token; the old
	// one stays valid until it expires.
	s.issueToken(w, a, now)
}

func (s *Server) issueToken(w http.ResponseWriter, a *fakeApp, now time.Time) {
	tok := "88_" + randomString(48)
	st := &tokenState{app: a.id, expires: now.Add(s.tokenLifetime)}
	s.tokens[tok] = st
	a.current = tok
	s.answerToken(w, tok, st, now)
}

func (s *Server) answerToken(w http.ResponseWriter, tok string, st *tokenState, now time.Time) {
	writeJSON(w, "application/json; encoding=utf-8", map[string]any{
		"access_token": tok, "expires_in": int64(st.expires.Sub(now) / time.Second),
	})
}

// subscribeSend: POST /cgi-bin/message/subscribe/send?access_token=
// {touser, template_id, page, data, miniprogram_state, lang}.
func (s *Server) subscribeSend(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodPost {
		wxError(w, 43002, "")
		return
	}
	tok := r.URL.Query().Get("access_token")
	st := s.tokens[tok]
	now := s.now()
	switch {
	case tok == "":
		wxError(w, 41001, "")
		return
	case st == nil || st.revoked:
		wxError(w, 40001, "")
		return
	case !now.Before(st.expires):
		wxError(w, 42001, "")
		return
	}
	a := s.apps[st.app]
	if len(body) == 0 {
		wxError(w, 44002, "")
		return
	}
	var req struct {
		ToUser           string                     `json:"touser"`
		TemplateID       string                     `json:"template_id"`
		Page             string                     `json:"page"`
		Data             map[string]json.RawMessage `json:"data"`
		MiniprogramState string                     `json:"miniprogram_state"`
		Lang             string                     `json:"lang"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		wxError(w, 47001, "")
		return
	}
	if a.users[req.ToUser] == nil {
		wxError(w, 40003, "")
		return
	}
	tpl := a.templates[req.TemplateID]
	if tpl == nil {
		wxError(w, 40037, "")
		return
	}
	if a.pages != nil && req.Page != "" {
		path, _, _ := strings.Cut(strings.TrimPrefix(req.Page, "/"), "?")
		if !a.pages[path] {
			wxError(w, 41030, "")
			return
		}
	}
	switch req.MiniprogramState {
	case "", "formal", "trial", "developer":
	default:
		wxError(w, 47003, "miniprogram_state invalid")
		return
	}
	data, field := checkData(req.Data, tpl.keys)
	if field != "" {
		wxError(w, 47003, field)
		return
	}
	k := userTemplate{req.ToUser, req.TemplateID}
	switch {
	case tpl.longTerm && a.accepted[k]:
	case !tpl.longTerm && a.quota[k] > 0:
		a.quota[k]--
	default:
		wxError(w, 43101, "")
		return
	}
	s.msgSeq++
	s.sent = append(s.sent, Message{AppID: a.id, ToUser: req.ToUser, TemplateID: req.TemplateID, Page: req.Page,
		Data: data, MiniprogramState: req.MiniprogramState, Lang: req.Lang, MsgID: s.msgSeq, At: now})
	writeJSON(w, "application/json; encoding=utf-8", map[string]any{"errcode": 0, "errmsg": "ok"})
}

// ---- a listener that can go down ----

// switchListener is a net.Listener whose socket can be closed (Down:
// connections refused) and opened again on the same address (Up) while
// the http.Server keeps accepting from it.
type switchListener struct {
	addr string
	mu   sync.Mutex
	cur  net.Listener
	// upCh is closed when the listener is up.
	upCh   chan struct{}
	closed bool
}

func newSwitchListener() (*switchListener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	up := make(chan struct{})
	close(up)
	return &switchListener{addr: ln.Addr().String(), cur: ln, upCh: up}, nil
}

func (l *switchListener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		cur, up, closed := l.cur, l.upCh, l.closed
		l.mu.Unlock()
		if closed {
			return nil, net.ErrClosed
		}
		if cur == nil {
			<-up
			continue
		}
		c, err := cur.Accept()
		if err == nil {
			return c, nil
		}
		l.mu.Lock()
		same := l.cur == cur || l.closed
		l.mu.Unlock()
		if same {
			return nil, err
		}
		// The socket was closed by down: wait for up.
	}
}

func (l *switchListener) down() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil || l.closed {
		return
	}
	cur := l.cur
	l.cur = nil
	l.upCh = make(chan struct{})
	_ = cur.Close()
}

// up listens again; the address is the same (on loopback another process
// could take the port meanwhile: up then panics, failing the test).
func (l *switchListener) up() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur != nil || l.closed {
		return
	}
	var err error
	for range 50 {
		if l.cur, err = net.Listen("tcp", l.addr); err == nil {
			close(l.upCh)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	panic("wechattest: cannot listen on " + l.addr + " again: " + err.Error())
}

func (l *switchListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.cur == nil {
		close(l.upCh)
		return nil
	}
	return l.cur.Close()
}

func (l *switchListener) Addr() net.Addr {
	a, _ := net.ResolveTCPAddr("tcp", l.addr)
	return a
}
