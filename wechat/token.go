package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Access token timing.
const (
	// tokenRenewWindow: WeChat's stable_token answers a new token in the
	// last 5 minutes of the current one (the old one stays valid until it
	// expires), so a refresh starts there.
	tokenRenewWindow = 5 * time.Minute
	// tokenRecheck: a refresh that got the current token back (WeChat had
	// not renewed it yet) is not tried again for this long.
	tokenRecheck = 30 * time.Second
	// forceInterval: at most one forced refresh per app in this time, on
	// every node together (WeChat allows 20 a day, 30 s apart).
	forceInterval = time.Minute
	// tokenPoll: how often a node without any valid token looks for the
	// one the lock holder is fetching.
	tokenPoll = 50 * time.Millisecond
)

// AccessToken is an app's current access token.
type AccessToken struct {
	Token     Secret
	ExpiresAt time.Time
}

// tokenState is an access token as kept in the store.
type tokenState struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	// FetchedAt is when WeChat last answered this token.
	FetchedAt time.Time `json:"fetchedAt"`
}

func (t tokenState) valid(now time.Time) bool { return t.Token != "" && now.Before(t.ExpiresAt) }

// fresh: valid, and either outside its renew window or answered again by
// WeChat lately.
func (t tokenState) fresh(now time.Time) bool {
	if !t.valid(now) {
		return false
	}
	window := min(tokenRenewWindow, t.ExpiresAt.Sub(t.FetchedAt)/2)
	return now.Before(t.ExpiresAt.Add(-window)) || now.Sub(t.FetchedAt) < tokenRecheck
}

// errForceLimited: a forced refresh was refused because another one ran
// within forceInterval.
var errForceLimited = errors.New("wechat: access token was force-refreshed less than a minute ago")

// tokens keeps each app's access token: in the store, shared by every node
// (so one node refreshes it and the others read it), and in a local cache.
// A refresh is made under a lock in the store; nodes that do not hold it
// keep using the current token, or wait for the new one when there is none.
type tokens struct {
	s     *Service
	owner string
}

func tokenKey(app string) string      { return "app:" + app + ":token" }
func tokenLockKey(app string) string  { return "app:" + app + ":token:lock" }
func tokenForceKey(app string) string { return "app:" + app + ":token:force" }

// lockTTL outlives one stable_token call, so a lock is never lost while
// its holder waits for WeChat, and frees itself soon after a crash.
func (t *tokens) lockTTL() time.Duration { return t.s.cfg.HTTPTimeout + 5*time.Second }

func (t *tokens) load(ctx context.Context, ap *app) (tokenState, error) {
	raw, err := t.s.store.Get(ctx, tokenKey(ap.cfg.AppID))
	if errors.Is(err, ErrNotFound) {
		return tokenState{}, nil
	}
	if err != nil {
		return tokenState{}, err
	}
	var st tokenState
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return tokenState{}, nil // unreadable: as good as none
	}
	return st, nil
}

func (t *tokens) save(ctx context.Context, ap *app, st tokenState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	ttl := st.ExpiresAt.Sub(st.FetchedAt) + time.Minute
	if ttl < time.Minute {
		ttl = time.Minute
	}
	return t.s.store.Set(ctx, tokenKey(ap.cfg.AppID), string(b), ttl)
}

func (t *tokens) cached(ap *app) tokenState {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	return ap.token
}

func (t *tokens) remember(ap *app, st tokenState) {
	ap.mu.Lock()
	ap.token = st
	ap.mu.Unlock()
}

// get returns a valid access token of ap, refreshing it first when it is
// missing, expired or in its renew window.
func (t *tokens) get(ctx context.Context, ap *app) (tokenState, error) {
	if st := t.cached(ap); st.fresh(t.s.clock.Now()) {
		return st, nil
	}
	// One caller per app and node goes to the store; the others wait for
	// it.
	if err := lockApp(ctx, ap); err != nil {
		return tokenState{}, err
	}
	defer func() { <-ap.tokenSem }()
	deadline := time.Now().Add(2 * t.lockTTL())
	for {
		now := t.s.clock.Now()
		if st := t.cached(ap); st.fresh(now) {
			return st, nil
		}
		st, err := t.load(ctx, ap)
		if err != nil {
			return tokenState{}, fmt.Errorf("read access token: %w", err)
		}
		if st.fresh(now) {
			t.remember(ap, st)
			return st, nil
		}
		got, err := t.s.store.SetNX(ctx, tokenLockKey(ap.cfg.AppID), t.owner, t.lockTTL())
		if err != nil {
			return tokenState{}, fmt.Errorf("lock access token: %w", err)
		}
		if got {
			return t.refreshLocked(ctx, ap)
		}
		// Another node is refreshing: keep using the current token while it
		// is valid, or wait for the new one.
		if st.valid(now) {
			t.remember(ap, st)
			return st, nil
		}
		if time.Now().After(deadline) {
			return tokenState{}, &Error{Code: CodeUnavailable, Message: "no WeChat access token: another node holds the refresh lock and stored none"}
		}
		ap.waiting.Store(true)
		select {
		case <-ctx.Done():
			return tokenState{}, ctx.Err()
		case <-time.After(tokenPoll):
		}
	}
}

// refreshLocked fetches the token in normal mode; the caller holds the
// store's lock, which it releases.
func (t *tokens) refreshLocked(ctx context.Context, ap *app) (tokenState, error) {
	defer t.unlock(ap)
	now := t.s.clock.Now()
	// Read again: the previous holder may have stored a fresh token between
	// our read and our lock.
	cur, err := t.load(ctx, ap)
	if err != nil {
		return tokenState{}, fmt.Errorf("read access token: %w", err)
	}
	if cur.fresh(now) {
		t.remember(ap, cur)
		return cur, nil
	}
	ans, err := t.s.api.stableToken(ctx, ap, false)
	if err != nil {
		if cur.valid(now) {
			t.s.log.Warn().Str("app", ap.cfg.AppID).Err(err).Msg("wechat: access token refresh failed; the current one is still valid")
			t.remember(ap, cur)
			return cur, nil
		}
		return tokenState{}, err
	}
	st := tokenState{Token: ans.AccessToken, ExpiresAt: now.Add(time.Duration(ans.ExpiresIn) * time.Second), FetchedAt: now}
	if err := t.save(ctx, ap, st); err != nil {
		return tokenState{}, fmt.Errorf("store access token: %w", err)
	}
	t.remember(ap, st)
	if st.Token != cur.Token {
		t.s.obs.TokenRefresh(ap.cfg.AppID, false)
		t.s.log.Info().Str("app", ap.cfg.AppID).Time("expires", st.ExpiresAt).Msg("wechat: access token refreshed")
	}
	return st, nil
}

func (t *tokens) unlock(ap *app) {
	// The release must happen even when the caller's context is done.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := t.s.store.CompareAndDelete(ctx, tokenLockKey(ap.cfg.AppID), t.owner); err != nil {
		t.s.log.Warn().Str("app", ap.cfg.AppID).Err(err).Msg("wechat: access token lock release failed; it expires on its own")
	}
}

// invalid handles WeChat calling bad (the token a call used) invalid or
// expired: unless another node has replaced it already, it forces a
// refresh, at most once per forceInterval per app on every node together,
// and returns the token to retry with. errForceLimited means no newer
// token can be had now.
func (t *tokens) invalid(ctx context.Context, ap *app, bad string) (tokenState, error) {
	if err := lockApp(ctx, ap); err != nil {
		return tokenState{}, err
	}
	defer func() { <-ap.tokenSem }()
	// Take the refresh lock too, so that a normal refresh running elsewhere
	// cannot store the old token over the forced one.
	deadline := time.Now().Add(2 * t.lockTTL())
	for {
		got, err := t.s.store.SetNX(ctx, tokenLockKey(ap.cfg.AppID), t.owner, t.lockTTL())
		if err != nil {
			return tokenState{}, fmt.Errorf("lock access token: %w", err)
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			return tokenState{}, &Error{Code: CodeUnavailable, Message: "no WeChat access token: the refresh lock is held"}
		}
		select {
		case <-ctx.Done():
			return tokenState{}, ctx.Err()
		case <-time.After(tokenPoll):
		}
	}
	defer t.unlock(ap)
	now := t.s.clock.Now()
	cur, err := t.load(ctx, ap)
	if err != nil {
		return tokenState{}, fmt.Errorf("read access token: %w", err)
	}
	if cur.Token != bad && cur.valid(now) {
		t.remember(ap, cur)
		return cur, nil
	}
	first, err := t.s.store.SetNX(ctx, tokenForceKey(ap.cfg.AppID), t.owner, forceInterval)
	if err != nil {
		return tokenState{}, fmt.Errorf("limit forced refresh: %w", err)
	}
	if !first {
		return tokenState{}, errForceLimited
	}
	ans, err := t.s.api.stableToken(ctx, ap, true)
	if err != nil {
		return tokenState{}, err
	}
	st := tokenState{Token: ans.AccessToken, ExpiresAt: now.Add(time.Duration(ans.ExpiresIn) * time.Second), FetchedAt: now}
	if err := t.save(ctx, ap, st); err != nil {
		return tokenState{}, fmt.Errorf("store access token: %w", err)
	}
	t.remember(ap, st)
	t.s.obs.TokenRefresh(ap.cfg.AppID, true)
	t.s.log.Warn().Str("app", ap.cfg.AppID).Msg("wechat: access token force-refreshed after WeChat called it invalid")
	return st, nil
}

// tokenErrcode reports whether errcode says the access token is invalid
// or expired, which a forced refresh may fix.
func tokenErrcode(errcode int) bool {
	return errcode == ErrcodeInvalidCredential || errcode == ErrcodeTokenExpired || errcode == ErrcodeInvalidToken
}

// lockApp takes ap's token semaphore (one token operation per app and node
// at a time) or gives up with ctx; a mutex would not heed ctx. The caller
// releases it with <-ap.tokenSem.
func lockApp(ctx context.Context, ap *app) error {
	select {
	case ap.tokenSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
