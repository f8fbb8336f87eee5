package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"
)

// maxPageLength bounds a notification's page (a mini-program path with its
// query).
const maxPageLength = 512

// maxMessageID bounds the message id the server gives a notification.
const maxMessageID = 128

// Notify is a subscribe message to send for a message on user:<sub>.
type Notify struct {
	// AppID names the app ("" for the only one).
	AppID string
	// Channel is the message's channel: user:<sub>, where sub is an openid
	// (or a unionid for an app with subject unionid).
	Channel string
	// MessageID identifies the message in its channel (opaque, at most 128
	// bytes). (Channel, MessageID) is sent at most once.
	MessageID  string
	TemplateID string
	// Data is WeChat's data object, {"thing1": {"value": "..."}, ...}.
	Data json.RawMessage
	// Page is the mini-program page the message opens ("" for none).
	Page string
	// When is OFFLINE (default), UNSEEN or ALWAYS.
	When When
}

// CheckNotify checks n before its message is appended (a send whose
// notification is bad appends nothing): the app, the channel, the
// template, the page, When and the data's value rules. It fills in the
// defaults (AppID, When) and compacts Data. Errors are BAD_USER_INPUT
// *Error naming the field.
func (s *Service) CheckNotify(n *Notify) error {
	ap, err := s.app(n.AppID)
	if err != nil {
		return err
	}
	n.AppID = ap.cfg.AppID
	sub, ok := strings.CutPrefix(n.Channel, "user:")
	if !ok || !validSubject(sub) {
		return badInput("notify is valid only on user:<sub> channels (sub an openid or unionid), not on %q", n.Channel)
	}
	if !validTemplateID(n.TemplateID) {
		return badInput("notify.templateId: must be a template id (1..128 letters, digits, '_' or '-'), got %q", n.TemplateID)
	}
	if len(n.Page) > maxPageLength || strings.ContainsFunc(n.Page, unicode.IsControl) {
		return badInput("notify.page: must be a page path of at most %d bytes without control characters", maxPageLength)
	}
	switch n.When {
	case "":
		n.When = WhenOffline
	case WhenOffline, WhenUnseen, WhenAlways:
	default:
		return badInput("notify.when: must be OFFLINE, UNSEEN or ALWAYS, got %q", n.When)
	}
	data, err := normalizeData(n.Data)
	if err != nil {
		return err
	}
	n.Data = data
	return nil
}

// Notify queues n, whose message has been appended with n.MessageID. An
// OFFLINE or UNSEEN notification is decided after the app's grace period,
// an ALWAYS one at once. Queueing the same (Channel, MessageID) again does
// nothing: a message is notified at most once. An error means nothing was
// queued.
func (s *Service) Notify(ctx context.Context, n Notify) error {
	if err := s.CheckNotify(&n); err != nil {
		return err
	}
	if n.MessageID == "" || len(n.MessageID) > maxMessageID {
		return badInput("notify: the message id must be 1..%d bytes", maxMessageID)
	}
	ap := s.apps[n.AppID]
	now := s.clock.Now()
	job := &Job{App: n.AppID, Channel: n.Channel, MessageID: n.MessageID, Subject: strings.TrimPrefix(n.Channel, "user:"),
		TemplateID: n.TemplateID, Data: n.Data, Page: n.Page, When: n.When, CreatedAt: now}
	due, reason := now, ""
	if n.When != WhenAlways {
		due, reason = now.Add(ap.cfg.OfflineGrace), ReasonWaiting
	}
	added, err := ap.queue.Put(ctx, job, reason, due, now, s.cfg.OutcomeTTL)
	if err != nil {
		return s.storeErr(err)
	}
	if added {
		s.obs.Notification(n.AppID, StatusPending)
	}
	return nil
}

func ackKey(channel, messageID string) string { return "ack:" + notificationRef(channel, messageID) }

// Ack records that the user's client has shown the message (channel,
// messageID): an UNSEEN or OFFLINE notification of it that has not been
// sent yet is skipped. The server checks that the caller may read channel.
func (s *Service) Ack(ctx context.Context, channel, messageID string) error {
	if !strings.HasPrefix(channel, "user:") || len(channel) > 256 || messageID == "" || len(messageID) > maxMessageID {
		return badInput("ack: a user:<sub> channel and a message id")
	}
	if err := s.store.Set(ctx, ackKey(channel, messageID), "1", s.ackTTL); err != nil {
		return s.storeErr(err)
	}
	return nil
}

// Notification returns the outcome of the notification of (channel,
// messageID), or nil when the message had none (or it expired).
func (s *Service) Notification(ctx context.Context, channel, messageID string) (*Outcome, error) {
	for _, id := range s.order {
		o, err := s.apps[id].queue.Get(ctx, channel, messageID)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, s.storeErr(err)
		}
		return &o, nil
	}
	return nil, nil
}

// queueWindow bounds how long after its message is appended a
// notification is queued: the server queues it right after the append,
// each store call bounded by its own timeout, well under this.
const queueWindow = time.Minute

// NotificationOf returns the outcome of the notification of (channel,
// messageID), a message appended at appended and marked as sent with
// notify. The mark is stored with the message, the notification queued
// right after the append (its id is the message's position), so a reader
// may see the message first: until the record exists the outcome is
// PENDING (WAITING). Past queueWindow without one, the notification was
// never queued (the send answered an error asking to send again with its
// idempotency key): FAILED (NOT_QUEUED), until such a send queues it.
// Past the outcome TTL it is nil, like an expired record.
func (s *Service) NotificationOf(ctx context.Context, channel, messageID string, appended time.Time) (*Outcome, error) {
	o, err := s.Notification(ctx, channel, messageID)
	if o != nil || err != nil {
		return o, err
	}
	switch age := s.clock.Now().Sub(appended); {
	case age < queueWindow:
		return &Outcome{Status: StatusPending, Reason: ReasonWaiting, UpdatedAt: appended}, nil
	case age < s.cfg.OutcomeTTL:
		return &Outcome{Status: StatusFailed, Reason: ReasonNotQueued, UpdatedAt: appended.Add(queueWindow)}, nil
	}
	return nil, nil
}

// ---- workers ----

// work is an app's loop: take what is due, send it with at most
// Concurrency in flight, until Close.
func (s *Service) work(ap *app) {
	slots := make(chan struct{}, s.cfg.Concurrency)
	var failures int
	for s.stop.Err() == nil {
		// Wait for one free slot, then take as many as are free.
		select {
		case slots <- struct{}{}:
		case <-s.stop.Done():
			return
		}
		free := 1
		for free < s.cfg.Concurrency {
			select {
			case slots <- struct{}{}:
				free++
				continue
			default:
			}
			break
		}
		ds, err := ap.queue.Take(s.stop, s.node, free, s.clock.Now(), s.cfg.ClaimIdle, s.cfg.PollInterval)
		s.polls.Add(1)
		for range free - len(ds) {
			<-slots
		}
		if err != nil {
			if s.stop.Err() != nil {
				return
			}
			failures++
			if failures == 1 || failures%60 == 0 {
				s.log.Warn().Str("app", ap.cfg.AppID).Err(err).Int("failures", failures).Msg("wechat: notification queue unavailable")
			}
			select {
			case <-time.After(s.cfg.PollInterval):
			case <-s.stop.Done():
				return
			}
			continue
		}
		failures = 0
		for _, d := range ds {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() { <-slots }()
				s.process(s.abort, ap, d)
			}()
		}
	}
}

// process decides and sends one delivery. When ctx ends (the node is
// killed), it returns without recording anything: the delivery stays with
// this consumer until another claims it, and the record tells that one
// whether an attempt was in flight.
func (s *Service) process(ctx context.Context, ap *app, d Delivery) {
	job := &d.Job
	now := s.clock.Now()
	switch {
	case d.Outcome.Status.Final():
		s.finish(ctx, ap, &d, d.Outcome, false)
		return
	case d.InFlight && !ap.cfg.AtLeastOnce:
		// An earlier attempt went out and its answer was never recorded:
		// WeChat may have delivered it. It is not sent again.
		s.finish(ctx, ap, &d, Outcome{Status: StatusUnknown, Reason: ReasonInterrupted, UpdatedAt: now}, false)
		return
	case now.Sub(job.CreatedAt) >= ap.cfg.NotifyMaxAge:
		s.expire(ctx, ap, &d, now)
		return
	}
	if job.When != WhenAlways {
		_, err := s.store.Get(ctx, ackKey(job.Channel, job.MessageID))
		switch {
		case err == nil:
			s.finish(ctx, ap, &d, Outcome{Status: StatusSkipped, Reason: ReasonAcked, UpdatedAt: now}, false)
			return
		case !errors.Is(err, ErrNotFound):
			s.retry(ctx, ap, &d, Outcome{Reason: ReasonRetrying, UpdatedAt: now}, false, err)
			return
		}
		if job.When == WhenOffline && s.online != nil {
			on, err := s.online(ctx, ap.cfg.AppID, job.Subject)
			if err != nil {
				s.retry(ctx, ap, &d, Outcome{Reason: ReasonRetrying, UpdatedAt: now}, false, fmt.Errorf("presence: %w", err))
				return
			}
			if on {
				s.finish(ctx, ap, &d, Outcome{Status: StatusSkipped, Reason: ReasonOnline, UpdatedAt: now}, false)
				return
			}
		}
	}
	openid, err := s.openID(ctx, ap, job.Subject)
	if errors.Is(err, ErrNotFound) {
		s.finish(ctx, ap, &d, Outcome{Status: StatusFailed, Reason: ReasonNoOpenID, UpdatedAt: now}, false)
		return
	}
	if err != nil {
		s.retry(ctx, ap, &d, Outcome{Reason: ReasonRetrying, UpdatedAt: now}, false, err)
		return
	}
	qk := QuotaKey{App: ap.cfg.AppID, OpenID: openid, Template: job.TemplateID}
	q, err := s.store.Quota(ctx, qk)
	if err != nil {
		s.retry(ctx, ap, &d, Outcome{Reason: ReasonRetrying, UpdatedAt: now}, false, err)
		return
	}
	if !q.Allows(ap.cfg.longTerm(job.TemplateID)) {
		s.finish(ctx, ap, &d, Outcome{Status: StatusSkipped, Reason: ReasonNoQuota, UpdatedAt: now}, false)
		return
	}
	tok, err := s.tokens.get(ctx, ap)
	if err != nil {
		s.retry(ctx, ap, &d, s.retryOutcome(now, err), false, fmt.Errorf("access token: %w", err))
		return
	}
	verdict, _, err := ap.queue.Begin(ctx, &d, now, ap.cfg.AtLeastOnce)
	switch {
	case errors.Is(err, ErrNotFound):
		s.finish(ctx, ap, &d, Outcome{}, false) // the record expired: drop
		return
	case err != nil:
		s.retry(ctx, ap, &d, Outcome{Reason: ReasonRetrying, UpdatedAt: now}, false, err)
		return
	case verdict == BeginDone:
		s.finish(ctx, ap, &d, d.Outcome, false)
		return
	case verdict == BeginUnknown:
		// Another consumer's attempt is in flight, or was and died.
		s.finish(ctx, ap, &d, Outcome{Status: StatusUnknown, Reason: ReasonInterrupted, UpdatedAt: now}, false)
		return
	}
	req := &sendRequest{ToUser: openid, TemplateID: job.TemplateID, Page: job.Page, Data: job.Data,
		MiniprogramState: ap.cfg.MiniprogramState, Lang: ap.cfg.Lang}
	err = s.api.subscribeSend(ctx, ap, tok.Token, req)
	if ae := (*APIError)(nil); errors.As(err, &ae) && ae.Status == http.StatusOK && tokenErrcode(ae.Errcode) && ctx.Err() == nil {
		// WeChat did not send: the token is bad. Refresh it once (forced)
		// and retry once, within this attempt.
		if nt, ferr := s.tokens.invalid(ctx, ap, tok.Token); ferr == nil {
			err = s.api.subscribeSend(ctx, ap, nt.Token, req)
		} else {
			s.log.Warn().Str("app", ap.cfg.AppID).Err(ferr).Msg("wechat: no new access token after an invalid-token answer")
		}
	}
	if ctx.Err() != nil {
		return // killed mid-call: the in-flight mark stays for the next consumer
	}
	s.answer(ctx, ap, &d, qk, err)
}

// answer records the outcome of a send attempt.
func (s *Service) answer(ctx context.Context, ap *app, d *Delivery, qk QuotaKey, err error) {
	now := s.clock.Now()
	if err == nil {
		s.finish(ctx, ap, d, Outcome{Status: StatusSent, UpdatedAt: now}, true)
		if _, err := s.store.UpdateQuota(ctx, qk, QuotaUse, now); err != nil {
			s.log.Warn().Str("app", ap.cfg.AppID).Err(err).Msg("wechat: quota ledger update failed")
		}
		return
	}
	var ae *APIError
	var te *TransportError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusOK:
		o := Outcome{Errcode: ae.Errcode, Errmsg: ae.Errmsg, UpdatedAt: now}
		switch ae.Errcode {
		case ErrcodeRefused:
			o.Status, o.Reason = StatusRefused, ReasonUserRefused
			if _, err := s.store.UpdateQuota(ctx, qk, QuotaReject, now); err != nil {
				s.log.Warn().Str("app", ap.cfg.AppID).Err(err).Msg("wechat: quota ledger update failed")
			}
		case ErrcodeInvalidArgument:
			o.Status, o.Reason = StatusFailed, ReasonBadData
		case ErrcodeInvalidOpenID:
			o.Status, o.Reason = StatusFailed, ReasonBadOpenID
		case ErrcodeInvalidTemplate:
			o.Status, o.Reason = StatusFailed, ReasonBadTemplate
		case ErrcodeInvalidPage:
			o.Status, o.Reason = StatusFailed, ReasonBadPage
		case ErrcodeSystemBusy, ErrcodeDailyQuota, ErrcodeMinuteQuota,
			ErrcodeInvalidCredential, ErrcodeTokenExpired, ErrcodeInvalidToken:
			// WeChat did not send it and may later: busy, over a quota, or
			// a token a forced refresh could not replace yet.
			o.Reason = ReasonRetrying
			s.retry(ctx, ap, d, o, true, err)
			return
		default:
			o.Status, o.Reason = StatusFailed, ReasonWeChatError
		}
		s.finish(ctx, ap, d, o, true)
	case errors.As(err, &ae) && (ae.Status >= 500 || ae.Status == http.StatusTooManyRequests):
		s.retry(ctx, ap, d, Outcome{Reason: ReasonRetrying, Errmsg: fmt.Sprintf("HTTP %d", ae.Status), UpdatedAt: now}, true, err)
	case errors.As(err, &ae):
		s.finish(ctx, ap, d, Outcome{Status: StatusFailed, Reason: ReasonWeChatError,
			Errmsg: fmt.Sprintf("HTTP %d", ae.Status), UpdatedAt: now}, true)
	case errors.As(err, &te) && !te.Sent:
		// The request never left: WeChat cannot have acted on it.
		s.retry(ctx, ap, d, Outcome{Reason: ReasonRetrying, UpdatedAt: now}, true, err)
	case errors.As(err, &te) && ap.cfg.AtLeastOnce:
		s.retry(ctx, ap, d, Outcome{Reason: ReasonRetrying, UpdatedAt: now}, true, err)
	default:
		// The request went out and no answer came back: WeChat may have
		// delivered it. At most once: it is not sent again.
		s.log.Warn().Str("app", ap.cfg.AppID).Err(err).Msg("wechat: subscribe message sent without an answer; its outcome is UNKNOWN")
		s.finish(ctx, ap, d, Outcome{Status: StatusUnknown, Reason: ReasonNoAnswer, UpdatedAt: now}, false)
	}
}

// retryOutcome is the PENDING outcome of a failure before a send (the
// access token could not be had): WeChat's errcode when it gave one.
func (s *Service) retryOutcome(now time.Time, err error) Outcome {
	o := Outcome{Reason: ReasonRetrying, UpdatedAt: now}
	var ae *APIError
	if errors.As(err, &ae) {
		o.Errcode, o.Errmsg = ae.Errcode, ae.Errmsg
	}
	return o
}

// retry reschedules d after the backoff, or fails it when that would pass
// its max age. began: this delivery's own attempt failed without WeChat
// acting on it, so its in-flight mark is cleared.
func (s *Service) retry(ctx context.Context, ap *app, d *Delivery, o Outcome, began bool, cause error) {
	if ctx.Err() != nil {
		return
	}
	now := s.clock.Now()
	if o.Errcode == 0 && o.Errmsg == "" {
		// A failure of pushgate's own (the store, presence) keeps WeChat's
		// last answer on record.
		o.Errcode, o.Errmsg = d.Outcome.Errcode, d.Outcome.Errmsg
	}
	due := now.Add(s.backoff(d.Retries + 1))
	if !due.Before(d.Job.CreatedAt.Add(ap.cfg.NotifyMaxAge)) {
		d.Outcome.Errcode, d.Outcome.Errmsg = o.Errcode, o.Errmsg
		s.expire(ctx, ap, d, now)
		return
	}
	s.log.Debug().Str("app", ap.cfg.AppID).Str("channel", d.Job.Channel).Str("message", d.Job.MessageID).
		Err(cause).Time("due", due).Msg("wechat: notification will be retried")
	if err := ap.queue.Retry(ctx, d, o, began, due, s.cfg.OutcomeTTL); err != nil {
		// The delivery stays with this consumer; another claims it.
		s.log.Warn().Str("app", ap.cfg.AppID).Err(err).Msg("wechat: notification retry could not be recorded")
	}
}

// expire fails d: its max age passed, with WeChat's last answer kept.
func (s *Service) expire(ctx context.Context, ap *app, d *Delivery, now time.Time) {
	s.finish(ctx, ap, d, Outcome{Status: StatusFailed, Reason: ReasonExpired,
		Errcode: d.Outcome.Errcode, Errmsg: d.Outcome.Errmsg, UpdatedAt: now}, false)
}

// finish records a final outcome (or only drops the delivery, when o is
// the record's own final outcome) and counts it.
func (s *Service) finish(ctx context.Context, ap *app, d *Delivery, o Outcome, answered bool) {
	if ctx.Err() != nil {
		return
	}
	got, err := ap.queue.Finish(ctx, d, o, answered, s.cfg.OutcomeTTL)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			s.log.Warn().Str("app", ap.cfg.AppID).Err(err).Msg("wechat: notification outcome could not be recorded")
		}
		return
	}
	if o.Status == "" || o == d.Outcome || got.Status != o.Status || got.Reason != o.Reason {
		return // dropped, or another outcome stands
	}
	s.obs.Notification(ap.cfg.AppID, o.Status)
	s.logOutcome(ap, &d.Job, got)
}

// logOutcome logs a final outcome: SENT and SKIPPED at debug level (they
// are counted in the metrics), REFUSED at info, FAILED and UNKNOWN as
// warnings.
func (s *Service) logOutcome(ap *app, job *Job, o Outcome) {
	ev := s.log.Debug()
	switch o.Status {
	case StatusRefused:
		ev = s.log.Info()
	case StatusFailed, StatusUnknown:
		ev = s.log.Warn()
	}
	ev.Str("app", ap.cfg.AppID).Str("channel", job.Channel).Str("message", job.MessageID).
		Str("template", job.TemplateID).Str("status", string(o.Status)).Str("reason", o.Reason).
		Int("errcode", o.Errcode).Str("errmsg", o.Errmsg).Int("attempts", o.Attempts).Msg("wechat: notification")
}
