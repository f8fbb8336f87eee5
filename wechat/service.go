package wechat

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Online reports whether subject (the sub of user:<sub>) of app has a live
// subscription to user:<sub> on any node. The server implements it with
// its presence.
type Online func(ctx context.Context, app, subject string) (bool, error)

// Options are the Service's dependencies; every field may be left zero.
type Options struct {
	// Store is shared by the nodes (NewRedisStore); nil keeps the state in
	// the process (NewMemoryStore).
	Store Store
	// Online decides OFFLINE notifications; without it an OFFLINE
	// notification is sent unless acknowledged (as UNSEEN).
	Online Online
	// Logger receives the Service's logs (none when zero).
	Logger zerolog.Logger
	// Observer counts notifications, API calls and token refreshes
	// (NewMetrics for Prometheus).
	Observer Observer
	// Clock, Backoff and HTTPClient replace the system clock, DefaultBackoff
	// and the default HTTP client (tests).
	Clock      Clock
	Backoff    Backoff
	HTTPClient *http.Client
	// Node names this node's consumer in the queue (default: host name,
	// process id and a random suffix). Two live nodes must not share one.
	Node string
}

// Service is pushgate's WeChat side for every configured app: login,
// access tokens, notifications and message push. Start runs its workers,
// Close stops them; the other methods are safe for concurrent use.
type Service struct {
	cfg     Config
	apps    map[string]*app
	order   []string
	store   Store
	online  Online
	log     zerolog.Logger
	obs     Observer
	clock   Clock
	backoff Backoff
	api     *api
	tokens  *tokens
	// ownClient: the HTTP client is the Service's, closed with it.
	ownClient bool
	node      string
	ackTTL    time.Duration

	startOnce sync.Once
	closeOnce sync.Once
	// stop ends the workers' loops (Close); abort cancels their work in
	// progress (Close after the drain time, or a test's kill).
	stop, abort context.Context
	cancelStop  context.CancelFunc
	cancelAbort context.CancelFunc
	wg          sync.WaitGroup
	// polls counts the workers' looks at the queue (tests wait on it).
	polls atomic.Int64
}

// app is one configured app and its state on this node.
type app struct {
	cfg    AppConfig
	redact *redactor
	aesKey []byte
	queue  Queue

	mu    sync.Mutex
	token tokenState
	// tokenSem lets one caller per node refresh the token at a time.
	tokenSem chan struct{}
	// waiting: a caller waited for another node's token (tests).
	waiting atomic.Bool
}

// New returns the Service of cfg (which it validates). It starts nothing:
// call Start.
func New(cfg Config, opts Options) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Apps) == 0 {
		return nil, errors.New("wechat: no apps configured")
	}
	s := &Service{
		cfg: cfg, apps: map[string]*app{}, store: opts.Store, online: opts.Online,
		log: opts.Logger, obs: opts.Observer, clock: opts.Clock, backoff: opts.Backoff, node: opts.Node,
	}
	if s.store == nil {
		s.store = NewMemoryStore()
	}
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	if s.clock == nil {
		s.clock = systemClock{}
	}
	if s.backoff == nil {
		s.backoff = DefaultBackoff
	}
	if s.node == "" {
		s.node = nodeName()
	}
	client := opts.HTTPClient
	if client == nil {
		client, s.ownClient = newHTTPClient(), true
	}
	s.api = &api{client: client, timeout: cfg.HTTPTimeout, obs: s.obs}
	s.tokens = &tokens{s: s, owner: s.node}
	for i := range cfg.Apps {
		c := cfg.Apps[i]
		ap := &app{cfg: c, redact: &redactor{}, queue: s.store.Queue(c.AppID), tokenSem: make(chan struct{}, 1)}
		ap.redact.add(c.AppSecret.Reveal(), c.PushToken.Reveal(), c.AESKey.Reveal())
		if !c.AESKey.IsZero() {
			ap.aesKey, _ = aesKeyBytes(c.AESKey) // checked by Validate
		}
		s.apps[c.AppID] = ap
		s.order = append(s.order, c.AppID)
		// An acknowledgement matters until the notification's last try.
		s.ackTTL = max(s.ackTTL, c.NotifyMaxAge+time.Hour)
	}
	s.stop, s.cancelStop = context.WithCancel(context.Background())
	s.abort, s.cancelAbort = context.WithCancel(context.Background())
	return s, nil
}

func nodeName() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// Apps returns the configured app ids, in configuration order.
func (s *Service) Apps() []string { return append([]string(nil), s.order...) }

// app resolves an app id; "" names the only app, when there is one.
func (s *Service) app(id string) (*app, error) {
	if id == "" {
		if len(s.order) == 1 {
			return s.apps[s.order[0]], nil
		}
		return nil, &Error{Code: CodeBadUserInput, Message: "appId is required: several WeChat apps are configured", Err: ErrUnknownApp}
	}
	if ap := s.apps[id]; ap != nil {
		return ap, nil
	}
	return nil, &Error{Code: CodeBadUserInput, Message: fmt.Sprintf("unknown WeChat app %q", id), Err: ErrUnknownApp}
}

// Start starts the notification workers: one loop per app that takes due
// notifications from the queue and sends up to Concurrency at once.
// Calling it again does nothing.
func (s *Service) Start() {
	s.startOnce.Do(func() {
		for _, id := range s.order {
			ap := s.apps[id]
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.work(ap)
			}()
		}
	})
}

// Close stops the workers and waits for them: no new notification is
// taken, and those being sent finish (each call to WeChat is bounded by the
// HTTP timeout). A notification taken but not finished is claimed by
// another node after ClaimIdle. Close is safe to call more than once.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.cancelStop()
		done := make(chan struct{})
		go func() {
			s.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(s.cfg.HTTPTimeout + 5*time.Second):
			// Something ignores its deadline: abandon the work (its
			// deliveries are claimed by another node) rather than hang.
			s.cancelAbort()
			<-done
		}
		s.cancelAbort()
		if s.ownClient {
			s.api.client.CloseIdleConnections()
		}
	})
	return nil
}

// AccessToken returns app's current access token (refreshing it when
// needed), for Query.wechatAccessToken. It is the token every node uses:
// a service that calls WeChat with it must not fetch its own.
func (s *Service) AccessToken(ctx context.Context, appID string) (AccessToken, error) {
	ap, err := s.app(appID)
	if err != nil {
		return AccessToken{}, err
	}
	st, err := s.tokens.get(ctx, ap)
	if err != nil {
		return AccessToken{}, s.unavailable(ap, "the WeChat access token is unavailable", err)
	}
	return AccessToken{Token: Secret(st.Token), ExpiresAt: st.ExpiresAt}, nil
}

// unavailable wraps err as an UNAVAILABLE *Error whose message names
// WeChat's errcode when it gave one.
func (s *Service) unavailable(ap *app, msg string, err error) error {
	var we *Error
	if errors.As(err, &we) {
		return we
	}
	e := &Error{Code: CodeUnavailable, Message: msg, Err: err}
	var ae *APIError
	if errors.As(err, &ae) {
		e.API, e.Errcode, e.Errmsg = ae.API, ae.Errcode, ae.Errmsg
		if ae.Status != http.StatusOK {
			e.Message = fmt.Sprintf("%s: WeChat %s answered HTTP %d", msg, ae.API, ae.Status)
		} else {
			e.Message = fmt.Sprintf("%s: WeChat %s answered errcode %d (%s)", msg, ae.API, ae.Errcode, ae.Errmsg)
		}
	}
	s.log.Warn().Str("app", ap.cfg.AppID).Err(err).Msg("wechat: " + msg)
	return e
}

// Subscription returns what the quota ledger knows of subject's permission
// to receive templateID, for Query.wechatSubscription. subject is the sub
// of user:<sub>: an openid, or a unionid for an app with subject unionid
// (an unknown unionid has no entry).
func (s *Service) Subscription(ctx context.Context, appID, subject, templateID string) (Quota, error) {
	ap, err := s.app(appID)
	if err != nil {
		return Quota{}, err
	}
	if !validSubject(subject) {
		return Quota{}, badInput("subject: must be an openid or unionid, got %q", subject)
	}
	if !validTemplateID(templateID) {
		return Quota{}, badInput("templateId: must be a template id, got %q", templateID)
	}
	openid, err := s.openID(ctx, ap, subject)
	if errors.Is(err, ErrNotFound) {
		return Quota{}, nil
	}
	if err != nil {
		return Quota{}, s.storeErr(err)
	}
	q, err := s.store.Quota(ctx, QuotaKey{App: ap.cfg.AppID, OpenID: openid, Template: templateID})
	if err != nil {
		return Quota{}, s.storeErr(err)
	}
	return q, nil
}

func (s *Service) storeErr(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &Error{Code: CodeUnavailable, Message: "the request was cancelled", Err: err}
	}
	return &Error{Code: CodeUnavailable, Message: "the WeChat state store is unavailable; retry later", Err: err}
}
