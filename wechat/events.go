package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pushgate/pushgate/internal/httperr"
)

// Message push limits.
const (
	// maxPushBody bounds a push's body; WeChat's events are a few KB.
	maxPushBody = 256 << 10
	// pushMaxAge: a push whose timestamp is further than this from now
	// (in the past or the future) is refused.
	pushMaxAge = 5 * time.Minute
	// nonceTTL remembers a push's nonce past the time its timestamp is
	// accepted, so a replay is refused by one check or the other.
	nonceTTL = 2*pushMaxAge + time.Minute
)

// Subscribe-message events.
const (
	eventPopup  = "subscribe_msg_popup_event"
	eventChange = "subscribe_msg_change_event"
	eventSent   = "subscribe_msg_sent_event"
)

// EventsHandler returns the handler of WeChat's message push (消息推送) for
// every app with a push token, served at /wechat/events/<appId> (the app
// id is the path's last segment, or the {appId} wildcard of a ServeMux
// pattern):
//
//   - GET is WeChat's URL check: signature = sha1(sort(token, timestamp,
//     nonce)) is verified and echostr echoed.
//   - POST is an event, in plaintext mode (signature verified) or, for an
//     app with an aes_key, safe mode only (encrypt_type=aes: msg_signature =
//     sha1(sort(token, timestamp, nonce, Encrypt)) verified, the body
//     decrypted and its appid checked); XML or JSON. A timestamp more than
//     5 minutes away and a nonce seen before are refused. Subscribe-message
//     events update the quota ledger; the answer is "success", as WeChat
//     expects.
//
// Refusals answer {"error":{"code","message"}}: 401 for a missing or wrong
// signature, 403 for a stale timestamp or a replayed nonce, 400 for a
// malformed push, 404 for an unknown app, 503 when the store failed (WeChat
// retries). A refused push changes nothing.
func (s *Service) EventsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("appId")
		if id == "" {
			id = r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		}
		ap := s.apps[id]
		if ap == nil || ap.cfg.PushToken.IsZero() {
			pushError(w, http.StatusNotFound, "NOT_FOUND", "no WeChat app with message push at this URL")
			return
		}
		switch r.Method {
		case http.MethodGet:
			s.checkURL(w, r, ap)
		case http.MethodPost:
			s.receive(w, r, ap)
		default:
			w.Header().Set("Allow", "GET, POST")
			pushError(w, http.StatusMethodNotAllowed, CodeBadUserInput, "GET (URL check) or POST (events)")
		}
	})
}

func pushError(w http.ResponseWriter, status int, code, message string) {
	httperr.Write(w, status, code, message)
}

func writeText(w http.ResponseWriter, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = io.WriteString(w, text)
}

// fresh checks the timestamp parameter.
func (s *Service) fresh(w http.ResponseWriter, ts string) bool {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		pushError(w, http.StatusBadRequest, CodeBadUserInput, "timestamp: must be a Unix time in seconds")
		return false
	}
	if d := s.clock.Now().Sub(time.Unix(sec, 0)); d > pushMaxAge || d < -pushMaxAge {
		pushError(w, http.StatusForbidden, CodeForbidden, "timestamp: more than 5 minutes from now (a stale or replayed push)")
		return false
	}
	return true
}

func (s *Service) checkURL(w http.ResponseWriter, r *http.Request, ap *app) {
	q := r.URL.Query()
	echo := q.Get("echostr")
	if echo == "" || len(echo) > 256 {
		pushError(w, http.StatusBadRequest, CodeBadUserInput, "echostr: required (1..256 bytes)")
		return
	}
	if !s.fresh(w, q.Get("timestamp")) {
		return
	}
	if !sameSignature(q.Get("signature"), signature(ap.cfg.PushToken.Reveal(), q.Get("timestamp"), q.Get("nonce"))) {
		pushError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "signature: does not match the push token")
		return
	}
	writeText(w, echo)
}

func (s *Service) receive(w http.ResponseWriter, r *http.Request, ap *app) {
	q := r.URL.Query()
	ts, nonce := q.Get("timestamp"), q.Get("nonce")
	if nonce == "" || len(nonce) > 64 {
		pushError(w, http.StatusBadRequest, CodeBadUserInput, "nonce: required (1..64 bytes)")
		return
	}
	if !s.fresh(w, ts) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPushBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			pushError(w, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", "the push is larger than 256 KiB")
			return
		}
		pushError(w, http.StatusBadRequest, CodeBadUserInput, "the push's body could not be read")
		return
	}
	token := ap.cfg.PushToken.Reveal()
	safe := q.Get("encrypt_type") == "aes"
	switch {
	case ap.aesKey != nil && !safe:
		pushError(w, http.StatusForbidden, CodeForbidden, "this app accepts safe mode (encrypt_type=aes) pushes only")
		return
	case ap.aesKey == nil && safe:
		pushError(w, http.StatusBadRequest, CodeBadUserInput, "encrypt_type=aes, but this app has no aes_key configured")
		return
	case !safe && q.Get("encrypt_type") != "" && q.Get("encrypt_type") != "raw":
		pushError(w, http.StatusBadRequest, CodeBadUserInput, "encrypt_type: must be aes or raw")
		return
	}
	// The plain signature is always checked when present (safe mode sends
	// it too); msg_signature, which covers the body, is required in safe
	// mode.
	sig := q.Get("signature")
	if sig == "" && !safe || sig != "" && !sameSignature(sig, signature(token, ts, nonce)) {
		pushError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "signature: missing or does not match the push token")
		return
	}
	plain := body
	if safe {
		enc, err := encryptedField(body)
		if err != nil {
			pushError(w, http.StatusBadRequest, CodeBadUserInput, "safe mode: "+err.Error())
			return
		}
		if !sameSignature(q.Get("msg_signature"), signature(token, ts, nonce, enc)) {
			pushError(w, http.StatusUnauthorized, "UNAUTHENTICATED", "msg_signature: missing or does not match the push token and body")
			return
		}
		plain, err = decrypt(ap.aesKey, enc, ap.cfg.AppID)
		if err != nil {
			pushError(w, http.StatusBadRequest, CodeBadUserInput, "safe mode: "+err.Error())
			return
		}
	}
	ev, err := parseEvent(plain)
	if err != nil {
		pushError(w, http.StatusBadRequest, CodeBadUserInput, err.Error())
		return
	}
	// The nonce is claimed only now, so that a push refused above cannot
	// burn the nonce of a genuine one.
	nk := "app:" + ap.cfg.AppID + ":nonce:" + ts + ":" + nonce
	first, err := s.store.SetNX(r.Context(), nk, "1", nonceTTL)
	if err != nil {
		s.log.Warn().Str("app", ap.cfg.AppID).Err(err).Msg("wechat: push nonce check failed")
		pushError(w, http.StatusServiceUnavailable, CodeUnavailable, "the store is unavailable; WeChat will retry")
		return
	}
	if !first {
		pushError(w, http.StatusForbidden, CodeForbidden, "nonce: this push was received before (a replay)")
		return
	}
	if err := s.apply(r.Context(), ap, ev); err != nil {
		// Forget the nonce, so that WeChat's retry of this push is taken.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.store.Delete(ctx, nk)
		cancel()
		s.log.Warn().Str("app", ap.cfg.AppID).Err(err).Msg("wechat: push could not be applied")
		pushError(w, http.StatusServiceUnavailable, CodeUnavailable, "the store is unavailable; WeChat will retry")
		return
	}
	writeText(w, "success")
}

// pushEvent is the part of a pushed event the ledger uses.
type pushEvent struct {
	OpenID string
	Event  string
	Items  []pushItem
}

type pushItem struct {
	Template    string
	Status      string
	ErrorCode   int
	ErrorStatus string // of a sent event: what ErrorCode means, in WeChat's words
}

// apply updates the ledger from a subscribe-message event; other events
// are accepted and ignored.
func (s *Service) apply(ctx context.Context, ap *app, ev *pushEvent) error {
	if ev.Event != eventPopup && ev.Event != eventChange && ev.Event != eventSent {
		return nil
	}
	now := s.clock.Now()
	for _, it := range ev.Items {
		op := QuotaOp(0)
		switch {
		case ev.Event == eventSent:
			// A successful send already used its acceptance. WeChat
			// documents ErrorCode as 0 for success and a failure as a
			// system failure of its asynchronous push, nothing the user
			// chose ("失败仅包含因异步推送导致的系统失败",
			// https://developers.weixin.qq.com/miniprogram/dev/framework/open-ability/subscribe-message.html):
			// the ledger keeps what the user granted; the failure is
			// logged.
			if it.ErrorCode != 0 {
				s.log.Warn().Str("app", ap.cfg.AppID).Str("template", it.Template).Int("error_code", it.ErrorCode).
					Str("error_status", it.ErrorStatus).Msg("wechat: a subscribe message failed in WeChat's push")
			}
		case strings.HasPrefix(it.Status, "accept"): // accept, acceptWithAudio, acceptWithAlert
			// A change to "accept" (settings) re-allows a long-term
			// template; a one-time message needs a new popup acceptance.
			if ev.Event == eventPopup || ap.cfg.longTerm(it.Template) {
				op = QuotaAccept
			}
		case it.Status == "reject" || it.Status == "ban":
			op = QuotaReject
		}
		if op == 0 {
			continue
		}
		k := QuotaKey{App: ap.cfg.AppID, OpenID: ev.OpenID, Template: it.Template}
		if _, err := s.store.UpdateQuota(ctx, k, op, now); err != nil {
			return err
		}
	}
	s.log.Debug().Str("app", ap.cfg.AppID).Str("event", ev.Event).Int("items", len(ev.Items)).Msg("wechat: push applied")
	return nil
}

// encryptedField returns the Encrypt field of a safe-mode body, XML
// (<xml><ToUserName/><Encrypt/></xml>) or JSON ({"ToUserName","Encrypt"}).
func encryptedField(body []byte) (string, error) {
	var enc string
	if isJSON(body) {
		var v struct{ Encrypt string }
		if err := json.Unmarshal(body, &v); err != nil {
			return "", errors.New("the body is not valid JSON")
		}
		enc = v.Encrypt
	} else {
		var v struct{ Encrypt string }
		if err := xml.Unmarshal(body, &v); err != nil {
			return "", errors.New("the body is neither JSON nor valid XML")
		}
		enc = v.Encrypt
	}
	if enc == "" {
		return "", errors.New("the body has no Encrypt field")
	}
	return enc, nil
}

func isJSON(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{'
}

// XML shapes: the items are <List> elements inside SubscribeMsgPopupEvent,
// SubscribeMsgChangeEvent or SubscribeMsgSentEvent.
type xmlEvent struct {
	FromUserName string
	MsgType      string
	Event        string
	Popup        xmlList `xml:"SubscribeMsgPopupEvent"`
	Change       xmlList `xml:"SubscribeMsgChangeEvent"`
	Sent         xmlList `xml:"SubscribeMsgSentEvent"`
}

type xmlList struct {
	List []xmlItem `xml:"List"`
}

type xmlItem struct {
	TemplateId            string
	SubscribeStatusString string
	ErrorCode             string
	ErrorStatus           string
}

// JSON shape: "List" at the top (or inside the event's object), one object
// or an array; numbers may come as strings.
type jsonEvent struct {
	FromUserName string
	MsgType      string
	Event        string
	List         json.RawMessage
	Popup        *struct{ List json.RawMessage } `json:"SubscribeMsgPopupEvent"`
	Change       *struct{ List json.RawMessage } `json:"SubscribeMsgChangeEvent"`
	Sent         *struct{ List json.RawMessage } `json:"SubscribeMsgSentEvent"`
}

type jsonItem struct {
	TemplateId            string
	SubscribeStatusString string
	ErrorCode             json.RawMessage
	ErrorStatus           string
}

// parseEvent reads a (decrypted) event, XML or JSON.
func parseEvent(b []byte) (*pushEvent, error) {
	ev := &pushEvent{}
	if isJSON(b) {
		var v jsonEvent
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, errors.New("the event is not valid JSON")
		}
		ev.OpenID, ev.Event = v.FromUserName, v.Event
		list := v.List
		for _, inner := range []*struct{ List json.RawMessage }{v.Popup, v.Change, v.Sent} {
			if len(list) == 0 && inner != nil {
				list = inner.List
			}
		}
		items, err := jsonItems(list)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			ev.Items = append(ev.Items, pushItem{Template: it.TemplateId, Status: it.SubscribeStatusString,
				ErrorCode: looseInt(it.ErrorCode), ErrorStatus: it.ErrorStatus})
		}
	} else {
		var v xmlEvent
		if err := xml.Unmarshal(b, &v); err != nil {
			return nil, errors.New("the event is neither JSON nor valid XML")
		}
		ev.OpenID, ev.Event = v.FromUserName, v.Event
		for _, l := range [][]xmlItem{v.Popup.List, v.Change.List, v.Sent.List} {
			for _, it := range l {
				code, _ := strconv.Atoi(strings.TrimSpace(it.ErrorCode))
				ev.Items = append(ev.Items, pushItem{Template: strings.TrimSpace(it.TemplateId),
					Status: strings.TrimSpace(it.SubscribeStatusString), ErrorCode: code, ErrorStatus: strings.TrimSpace(it.ErrorStatus)})
			}
		}
	}
	ev.Event = strings.TrimSpace(ev.Event)
	ev.OpenID = strings.TrimSpace(ev.OpenID)
	if ev.Event == eventPopup || ev.Event == eventChange || ev.Event == eventSent {
		if !validSubject(ev.OpenID) {
			return nil, errors.New("FromUserName: must be the user's openid")
		}
		for _, it := range ev.Items {
			if !validTemplateID(it.Template) {
				return nil, errors.New("List.TemplateId: must be a template id")
			}
		}
	}
	return ev, nil
}

func jsonItems(raw json.RawMessage) ([]jsonItem, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '[' {
		var items []jsonItem
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, errors.New("List: must be an object or an array of objects")
		}
		return items, nil
	}
	var it jsonItem
	if err := json.Unmarshal(raw, &it); err != nil {
		return nil, errors.New("List: must be an object or an array of objects")
	}
	return []jsonItem{it}, nil
}

// looseInt reads a JSON number or a string holding one (WeChat writes
// ErrorCode both ways); anything else is 0.
func looseInt(raw json.RawMessage) int {
	s := strings.Trim(strings.TrimSpace(string(raw)), `"`)
	n, _ := strconv.Atoi(s)
	return n
}
