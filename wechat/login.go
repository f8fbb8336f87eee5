package wechat

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// unionTTL keeps a unionid→openid mapping a year after the user's last
// login.
const unionTTL = 365 * 24 * time.Hour

// Session is a WeChat login: who the user is and what a pushgate token for
// them grants. session_key is not part of it: it never leaves the package.
type Session struct {
	AppID string
	// Subject is the token's sub: the openid, or the unionid for an app
	// with subject unionid.
	Subject string
	OpenID  string
	// UnionID is WeChat's unionid, when the app is bound to an open
	// platform account ("" otherwise).
	UnionID string
	// Channels are the token's patterns: user:<sub>, then the app's
	// login_channels with {sub} replaced.
	Channels []string
	// TokenLifetime is the token's lifetime (the app's token_lifetime).
	TokenLifetime time.Duration
}

// maxCodeLength bounds a wx.login code (they are 32 characters today).
const maxCodeLength = 128

// Login exchanges a wx.login code for the user's identity through
// code2Session (GET /sns/jscode2session). appID "" names the only app.
//
// Errors are *Error: WeChat's 40029 (invalid code) and 40163 (code already
// used) are BAD_USER_INPUT, 45011 (too frequent) RATE_LIMITED, 40226
// (blocked user) FORBIDDEN, -1, a network error or a 5xx UNAVAILABLE, any
// other errcode UNAVAILABLE too; each message names the errcode.
func (s *Service) Login(ctx context.Context, appID, code string) (*Session, error) {
	ap, err := s.app(appID)
	if err != nil {
		return nil, err
	}
	if !printable(code, maxCodeLength) {
		return nil, badInput("code: must be the code of wx.login (1..%d printable ASCII characters)", maxCodeLength)
	}
	ans, err := s.api.code2Session(ctx, ap, code)
	if err != nil {
		return nil, s.loginError(ap, err)
	}
	sess := &Session{AppID: ap.cfg.AppID, OpenID: ans.OpenID, UnionID: ans.UnionID, TokenLifetime: ap.cfg.TokenLifetime}
	if !validSubject(ans.OpenID) || ans.UnionID != "" && !validSubject(ans.UnionID) {
		return nil, &Error{Code: CodeUnavailable, API: APICode2Session,
			Message: "wechatLogin: WeChat answered an openid or unionid pushgate cannot use as a subject"}
	}
	sess.Subject = ans.OpenID
	if ap.cfg.Subject == SubjectUnionID {
		if ans.UnionID == "" {
			s.log.Error().Str("app", ap.cfg.AppID).Msg("wechat: the app is configured with subject unionid, but code2Session answered no unionid")
			return nil, &Error{Code: CodeInternal, API: APICode2Session, Message: fmt.Sprintf("wechatLogin: app %s is configured "+
				"with subject unionid, but WeChat answered no unionid (is the mini-program bound to an open platform account?)", ap.cfg.AppID)}
		}
		sess.Subject = ans.UnionID
		// Notifications go to openids: remember this user's.
		if err := s.store.Set(ctx, unionKey(ap.cfg.AppID, ans.UnionID), ans.OpenID, unionTTL); err != nil {
			return nil, s.storeErr(err)
		}
	}
	sess.Channels = append(sess.Channels, "user:"+sess.Subject)
	for _, p := range ap.cfg.LoginChannels {
		sess.Channels = append(sess.Channels, strings.ReplaceAll(p, "{sub}", sess.Subject))
	}
	return sess, nil
}

func unionKey(app, unionid string) string { return "app:" + app + ":unionid:" + unionid }

// openID returns the openid to send to for subject (itself, or the openid
// remembered for a unionid), or ErrNotFound.
func (s *Service) openID(ctx context.Context, ap *app, subject string) (string, error) {
	if ap.cfg.Subject != SubjectUnionID {
		return subject, nil
	}
	return s.store.Get(ctx, unionKey(ap.cfg.AppID, subject))
}

// loginError maps a failed code2Session to the *Error a client sees.
func (s *Service) loginError(ap *app, err error) error {
	if errors.Is(err, context.Canceled) {
		return &Error{Code: CodeUnavailable, API: APICode2Session, Message: "wechatLogin: the request was cancelled", Err: err}
	}
	e := &Error{API: APICode2Session, Err: err}
	var ae *APIError
	var te *TransportError
	switch {
	case errors.As(err, &ae) && ae.Status != http.StatusOK:
		e.Code = CodeUnavailable
		e.Message = fmt.Sprintf("wechatLogin: WeChat is unavailable (code2Session answered HTTP %d); retry later", ae.Status)
	case errors.As(err, &ae):
		e.Errcode, e.Errmsg = ae.Errcode, ae.Errmsg
		switch ae.Errcode {
		case ErrcodeInvalidCode:
			e.Code, e.Message = CodeBadUserInput, "wechatLogin: WeChat refused the code (errcode 40029: invalid code); get a new one with wx.login"
		case ErrcodeCodeUsed:
			e.Code, e.Message = CodeBadUserInput, "wechatLogin: WeChat refused the code (errcode 40163: the code was already used); get a new one with wx.login"
		case ErrcodeMinuteQuota:
			e.Code, e.Message = CodeRateLimited, "wechatLogin: too many logins (WeChat errcode 45011: at most 100 a minute per user); retry in a minute"
		case ErrcodeBlockedUser:
			e.Code, e.Message = CodeForbidden, "wechatLogin: WeChat blocked this user's login (errcode 40226: high-risk user)"
		case ErrcodeSystemBusy:
			e.Code, e.Message = CodeUnavailable, "wechatLogin: WeChat is busy (errcode -1); retry later"
		default:
			e.Code = CodeUnavailable
			e.Message = fmt.Sprintf("wechatLogin: WeChat refused the login (errcode %d: %s)", ae.Errcode, ae.Errmsg)
		}
	case errors.As(err, &te):
		e.Code = CodeUnavailable
		e.Message = "wechatLogin: WeChat could not be reached (network error); retry later"
		if isTimeout(err) {
			e.Message = "wechatLogin: WeChat did not answer in time; retry later"
		}
	default:
		e.Code, e.Message = CodeUnavailable, "wechatLogin: WeChat is unavailable; retry later"
	}
	if e.Code == CodeUnavailable {
		s.log.Warn().Str("app", ap.cfg.AppID).Err(err).Msg("wechat: code2Session failed")
	}
	return e
}

// validSubject: an openid or unionid that can stand in user:<sub> (the
// channel alphabet; WeChat's ids are letters, digits, '-' and '_').
func validSubject(s string) bool { return token(s, 120) }
