package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"time"
)

// WeChat APIs, as named in metrics (api label) and errors.
const (
	APICode2Session  = "jscode2session"
	APIStableToken   = "stable_token"
	APISubscribeSend = "subscribe_send"
)

// maxAnswer bounds a WeChat answer read into memory; its answers are a few
// hundred bytes.
const maxAnswer = 64 << 10

// api calls WeChat's HTTP APIs. Every call has a timeout, reads at most
// maxAnswer bytes, and reports to the observer. Its errors are *APIError
// (WeChat answered, not with success) or *TransportError (no complete
// answer); neither ever holds the request's URL, whose query carries the
// app secret or the access token.
type api struct {
	client  *http.Client
	timeout time.Duration
	obs     Observer
}

func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 16
	// An idle connection is closed by this side well before a server would
	// close it (servers commonly keep them 60 s or more): a send written
	// to a connection the server closed at that instant fails after it was
	// written, and its outcome is UNKNOWN.
	t.IdleConnTimeout = 15 * time.Second
	t.ResponseHeaderTimeout = 0 // the context's deadline bounds each call
	return &http.Client{
		Transport: t,
		// WeChat's APIs do not redirect; a redirect would carry the secret
		// in its query elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// wxAnswer is the part of every WeChat answer that says how it went.
type wxAnswer struct {
	Errcode int    `json:"errcode"`
	Errmsg  string `json:"errmsg"`
}

// call sends one request and decodes a successful answer into out. A nil
// body is a GET.
func (a *api) call(ctx context.Context, ap *app, name, path string, query url.Values, body any, out any) (err error) {
	defer func() { a.obs.APIRequest(ap.cfg.AppID, name, apiResult(err)) }()
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	u := ap.cfg.APIURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	method := http.MethodGet
	var rd io.Reader
	if body != nil {
		method = http.MethodPost
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("wechat %s: encode request: %w", name, err)
		}
		rd = bytes.NewReader(b)
	}
	// written records whether the request went out in full, which decides
	// whether a failed send may be retried without risking a duplicate.
	var written bool
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			written = true
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, u, rd)
	if err != nil {
		return fmt.Errorf("wechat %s: build request for %s: %w", name, ap.cfg.APIURL+path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return &TransportError{API: name, Sent: written, Err: ap.redact.wrap(unwrapURL(err))}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return &TransportError{API: name, Sent: true, Err: ap.redact.wrap(unwrapURL(err))}
	}
	if resp.StatusCode != http.StatusOK {
		return &APIError{API: name, Status: resp.StatusCode}
	}
	if len(raw) > maxAnswer {
		return &TransportError{API: name, Sent: true, Err: errors.New("answer too large")}
	}
	// jscode2session answers JSON as text/plain: the body is read as JSON
	// whatever its Content-Type.
	var st wxAnswer
	if err := json.Unmarshal(raw, &st); err != nil {
		return &TransportError{API: name, Sent: true, Err: fmt.Errorf("undecodable answer (HTTP 200, %d bytes)", len(raw))}
	}
	if st.Errcode != 0 {
		return &APIError{API: name, Status: resp.StatusCode, Errcode: st.Errcode, Errmsg: ap.redact.clean(st.Errmsg)}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return &TransportError{API: name, Sent: true, Err: fmt.Errorf("undecodable answer: %v", err)}
		}
	}
	return nil
}

// unwrapURL drops *url.Error's wrapping, whose message repeats the full
// URL, query and all.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Errorf("%s: timeout: %w", ue.Op, ue.Err)
		}
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// wrap returns err with every known secret removed from its message.
func (r *redactor) wrap(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if c := r.clean(msg); c != msg {
		return errors.New(c)
	}
	return err
}

// knownErrcodes are the errcodes that get their own api_requests result
// label; any other is "errcode_other", so the label has a bounded set of
// values.
var knownErrcodes = map[int]bool{
	ErrcodeSystemBusy: true, ErrcodeInvalidCredential: true, ErrcodeInvalidOpenID: true,
	ErrcodeInvalidAppID: true, ErrcodeInvalidToken: true, ErrcodeInvalidCode: true,
	ErrcodeInvalidTemplate: true, ErrcodeInvalidSecret: true, ErrcodeCodeUsed: true,
	ErrcodeBlockedUser: true, ErrcodeInvalidPage: true, ErrcodeTokenExpired: true,
	ErrcodeRefused: true, ErrcodeDailyQuota: true, ErrcodeMinuteQuota: true,
	ErrcodeInvalidArgument: true,
}

// apiResult is the result label of a call: "ok", "errcode_<n>" for a known
// errcode, "errcode_other", "http_<status class>", "network" (no answer)
// or "error".
func apiResult(err error) string {
	if err == nil {
		return "ok"
	}
	var ae *APIError
	if errors.As(err, &ae) {
		if ae.Status != http.StatusOK {
			return "http_" + strconv.Itoa(ae.Status/100) + "xx"
		}
		if knownErrcodes[ae.Errcode] {
			return "errcode_" + strconv.Itoa(ae.Errcode)
		}
		return "errcode_other"
	}
	var te *TransportError
	if errors.As(err, &te) {
		return "network"
	}
	return "error"
}

// isTimeout reports whether err is a deadline or a network timeout.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ---- the three APIs ----

type sessionAnswer struct {
	OpenID     string `json:"openid"`
	SessionKey string `json:"session_key"`
	UnionID    string `json:"unionid"`
}

// code2Session exchanges a wx.login code: GET /sns/jscode2session.
func (a *api) code2Session(ctx context.Context, ap *app, code string) (sessionAnswer, error) {
	var out sessionAnswer
	q := url.Values{
		"appid":      {ap.cfg.AppID},
		"secret":     {ap.cfg.AppSecret.Reveal()},
		"js_code":    {code},
		"grant_type": {"authorization_code"},
	}
	if err := a.call(ctx, ap, APICode2Session, "/sns/jscode2session", q, nil, &out); err != nil {
		return out, err
	}
	if out.OpenID == "" {
		return out, &TransportError{API: APICode2Session, Sent: true, Err: errors.New("answer without openid")}
	}
	return out, nil
}

type stableTokenRequest struct {
	GrantType    string `json:"grant_type"`
	AppID        string `json:"appid"`
	Secret       string `json:"secret"`
	ForceRefresh bool   `json:"force_refresh"`
}

type tokenAnswer struct {
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

// stableToken fetches the access token: POST /cgi-bin/stable_token. In
// normal mode WeChat answers the current token while it is valid (a new
// one in its last minutes); force_refresh invalidates the current one.
func (a *api) stableToken(ctx context.Context, ap *app, force bool) (tokenAnswer, error) {
	var out tokenAnswer
	body := stableTokenRequest{GrantType: "client_credential", AppID: ap.cfg.AppID,
		Secret: ap.cfg.AppSecret.Reveal(), ForceRefresh: force}
	if err := a.call(ctx, ap, APIStableToken, "/cgi-bin/stable_token", nil, body, &out); err != nil {
		return out, err
	}
	if out.AccessToken == "" || out.ExpiresIn <= 0 {
		return out, &TransportError{API: APIStableToken, Sent: true, Err: errors.New("answer without access_token or expires_in")}
	}
	return out, nil
}

// sendRequest is subscribeMessage.send's body.
type sendRequest struct {
	ToUser           string          `json:"touser"`
	TemplateID       string          `json:"template_id"`
	Page             string          `json:"page,omitempty"`
	Data             json.RawMessage `json:"data"`
	MiniprogramState string          `json:"miniprogram_state,omitempty"`
	Lang             string          `json:"lang,omitempty"`
}

// subscribeSend sends one subscribe message:
// POST /cgi-bin/message/subscribe/send?access_token=.
func (a *api) subscribeSend(ctx context.Context, ap *app, token string, msg *sendRequest) error {
	return a.call(ctx, ap, APISubscribeSend, "/cgi-bin/message/subscribe/send",
		url.Values{"access_token": {token}}, msg, nil)
}
