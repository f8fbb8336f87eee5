package wechat

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Observer counts what the Service does. It is called synchronously and
// must not block. No argument ever holds a secret, a channel, a subject or
// a message: app ids, API names, result labels and statuses only, so label
// sets stay small.
type Observer interface {
	// Notification: a notification of app reached status (PENDING when it
	// is queued, then its final status; a retry is not counted again).
	Notification(app string, status Status)
	// APIRequest: one call to WeChat's api ("jscode2session",
	// "stable_token", "subscribe_send") ended with result ("ok",
	// "errcode_<n>", "errcode_other", "http_5xx", "network", ...).
	APIRequest(app, api, result string)
	// TokenRefresh: this node fetched a new access token for app (forced
	// after WeChat called the current one invalid, or before its expiry).
	TokenRefresh(app string, forced bool)
}

type nopObserver struct{}

func (nopObserver) Notification(string, Status)       {}
func (nopObserver) APIRequest(string, string, string) {}
func (nopObserver) TokenRefresh(string, bool)         {}

// Metrics is an Observer that keeps pushgate's WeChat metrics:
//
//	pushgate_wechat_notifications_total{status}
//	pushgate_wechat_api_requests_total{api,result}
//	pushgate_wechat_token_refreshes_total
type Metrics struct {
	notifications *prometheus.CounterVec
	requests      *prometheus.CounterVec
	refreshes     prometheus.Counter
}

// NewMetrics registers the WeChat metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgate_wechat_notifications_total",
			Help: "WeChat subscribe-message notifications by status: PENDING when queued, then their final status.",
		}, []string{"status"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushgate_wechat_api_requests_total",
			Help: "Calls to WeChat's APIs by API and result (ok, errcode_<n>, http_5xx, network, ...).",
		}, []string{"api", "result"}),
		refreshes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushgate_wechat_token_refreshes_total",
			Help: "Access tokens fetched from WeChat by this node (before expiry, or forced after an invalid-token answer).",
		}),
	}
	for _, c := range []prometheus.Collector{m.notifications, m.requests, m.refreshes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, s := range []Status{StatusPending, StatusSent, StatusSkipped, StatusRefused, StatusFailed, StatusUnknown} {
		m.notifications.WithLabelValues(string(s))
	}
	return m, nil
}

func (m *Metrics) Notification(_ string, s Status) { m.notifications.WithLabelValues(string(s)).Inc() }

func (m *Metrics) APIRequest(_, api, result string) { m.requests.WithLabelValues(api, result).Inc() }

func (m *Metrics) TokenRefresh(string, bool) { m.refreshes.Inc() }
