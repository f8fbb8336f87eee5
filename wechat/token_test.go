package wechat

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pushgate/pushgate/internal/wechattest"
)

// TestTokenOneRefreshForTwoNodes: two nodes on one store asking for the
// access token at once make one stable_token call between them, and use
// the same token; it is fetched again only in its renew window, once.
func TestTokenOneRefreshForTwoNodes(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() Store) {
		e := newEnv(t)
		a, b := e.service(newStore(), offline), e.service(newStore(), offline)
		tokensOf := func() map[string]bool {
			got := map[string]bool{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					node := a
					if i%2 == 1 {
						node = b
					}
					tok, err := node.AccessToken(context.Background(), appID)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					got[tok.Token.Reveal()] = true
					mu.Unlock()
				}()
			}
			wg.Wait()
			return got
		}
		first := tokensOf()
		if len(first) != 1 || e.wx.Calls(wechattest.APIStableToken) != 1 {
			t.Fatalf("%d tokens in %d stable_token calls, want 1 in 1", len(first), e.wx.Calls(wechattest.APIStableToken))
		}
		if !first[e.wx.AccessToken(appID)] {
			t.Fatal("the nodes do not use WeChat's current token")
		}
		// An hour later nothing is fetched; in the last five minutes the
		// token is renewed once for both.
		e.clock.Add(time.Hour)
		tokensOf()
		e.clock.Add(56 * time.Minute)
		// While one node renews, the others keep using the current token.
		second := tokensOf()
		if len(second) > 2 || first[e.wx.AccessToken(appID)] || !second[e.wx.AccessToken(appID)] ||
			e.wx.Calls(wechattest.APIStableToken) != 2 {
			t.Fatalf("renewal: %d tokens, %d calls", len(second), e.wx.Calls(wechattest.APIStableToken))
		}
		if third := tokensOf(); len(third) != 1 || !third[e.wx.AccessToken(appID)] {
			t.Fatalf("after the renewal: %v", third)
		}
		if got := e.counter("pushgate_wechat_token_refreshes_total", nil); got != 2 {
			t.Fatalf("token refreshes counted %v, want 2", got)
		}
	})
}

// TestTokenLockHolder: while another node holds the refresh lock, a node
// keeps using the current token; with none, it waits for the holder's.
func TestTokenLockHolder(t *testing.T) {
	e := newEnv(t)
	store := NewMemoryStore()
	s := e.service(store, offline)
	cur, err := s.AccessToken(context.Background(), appID)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if ok, _ := store.SetNX(ctx, tokenLockKey(appID), "other-node", time.Minute); !ok {
		t.Fatal("lock taken")
	}
	e.clock.Add(DefaultTokenLifetimeForTest - 2*time.Minute) // in the renew window
	got, err := s.AccessToken(ctx, appID)
	if err != nil || got.Token != cur.Token || e.wx.Calls(wechattest.APIStableToken) != 1 {
		t.Fatalf("with the lock held elsewhere: %v %v, %d calls", got.ExpiresAt, err, e.wx.Calls(wechattest.APIStableToken))
	}
	// Expired, lock held: the node waits for the holder to store a token.
	e.clock.Add(3 * time.Minute)
	done := make(chan AccessToken, 1)
	go func() {
		tok, err := s.AccessToken(ctx, appID)
		if err != nil {
			t.Error(err)
		}
		done <- tok
	}()
	waitFor(t, 5*time.Second, "the node to poll", func() bool { return s.tokensWaiting() })
	fresh := tokenState{Token: "88_from_the_other_node", ExpiresAt: e.clock.Now().Add(2 * time.Hour), FetchedAt: e.clock.Now()}
	if err := s.tokens.save(ctx, s.apps[appID], fresh); err != nil {
		t.Fatal(err)
	}
	if tok := <-done; tok.Token.Reveal() != fresh.Token {
		t.Fatalf("waited for %v", tok)
	}
}

// DefaultTokenLifetimeForTest is the fake's token lifetime.
const DefaultTokenLifetimeForTest = wechattest.DefaultTokenLifetime

// TestTokenForcedRefresh: an invalid-token answer forces one refresh (the
// old token is then refused by WeChat) and the call is retried once; a
// second one within a minute does not force again, on any node.
func TestTokenForcedRefresh(t *testing.T) {
	stores(t, func(t *testing.T, newStore func() Store) {
		e := newEnv(t)
		a := e.service(newStore(), offline)
		e.wx.Accept(appID, openID1, tplOnce, 10)
		old, err := a.AccessToken(context.Background(), appID)
		if err != nil {
			t.Fatal(err)
		}
		e.wx.Inject(wxSend, 40001, 1)
		e.notify(a, openID1, "1", WhenAlways)
		if o := e.outcome(a, "user:"+openID1, "1", StatusSent); o.Attempts != 1 {
			t.Fatalf("outcome %+v", o)
		}
		cur, _ := a.AccessToken(context.Background(), appID)
		if cur.Token == old.Token || cur.Token.Reveal() != e.wx.AccessToken(appID) || e.wx.Calls(wxSend) != 2 {
			t.Fatalf("after a forced refresh: same token %v, %d sends", cur.Token == old.Token, e.wx.Calls(wxSend))
		}
		_ = a.Close()
		// Within the minute another node gets 42001 and may not force
		// again: the notification waits for a later try.
		b := e.service(newStore(), offline)
		e.wx.Inject(wxSend, 42001, 1)
		e.notify(b, openID1, "2", WhenAlways)
		waitFor(t, 5*time.Second, "the retry", func() bool {
			o, _ := b.Notification(context.Background(), "user:"+openID1, "2")
			return o.Reason == ReasonRetrying && o.Errcode == 42001
		})
		if calls := e.wx.Calls(wechattest.APIStableToken); calls != 2 {
			t.Fatalf("%d stable_token calls, want 2 (one normal, one forced)", calls)
		}
		e.advanceUntil(time.Second, "the retry to be sent", func() bool { return e.sentTo(openID1) == 2 })
		if o := e.outcome(b, "user:"+openID1, "2", StatusSent); o.Attempts != 2 {
			t.Fatalf("outcome %+v", o)
		}
	})
}

// TestTokenUnavailable: without a token, a send waits and retries; the
// token query says UNAVAILABLE with WeChat's errcode.
func TestTokenUnavailable(t *testing.T) {
	e := newEnv(t)
	s := e.service(NewMemoryStore(), offline)
	e.wx.Inject(wechattest.APIStableToken, 40164, 1)
	_, err := s.AccessToken(context.Background(), appID)
	var we *Error
	if !errors.As(err, &we) || we.Code != CodeUnavailable || we.Errcode != 40164 || !contains(we.Message, "40164") {
		t.Fatalf("error %v", err)
	}
}
