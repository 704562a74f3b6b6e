package im_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/storage"
	"dialtone/xmppd/im"
	"dialtone/xmppd/router"

	"mellium.im/xmpp/jid"
)

const domain = "example.net"

// storeRouter is the core as far as Reset needs it, over a real store:
// presence to the local domain is handed to the module as inbound (as the
// core does), everything else is recorded.
type storeRouter struct {
	db *storage.DB
	m  *im.Module

	mu        sync.Mutex
	sessions  map[string][]*router.Session
	routed    []*router.Stanza
	delivered []*router.Stanza
}

func (r *storeRouter) Domain() string { return domain }

func (r *storeRouter) Route(ctx context.Context, s *router.Stanza) {
	r.mu.Lock()
	r.routed = append(r.routed, s)
	r.mu.Unlock()
	if s.Kind == router.KindPresence && s.To.Domainpart() == domain {
		r.m.InboundPresence(ctx, s)
	}
}

func (r *storeRouter) Deliver(full jid.JID, s *router.Stanza) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delivered = append(r.delivered, s)
	return true
}

func (r *storeRouter) Sessions(bare jid.JID) []*router.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*router.Session(nil), r.sessions[bare.String()]...)
}

func (r *storeRouter) Session(full jid.JID) *router.Session {
	for _, s := range r.Sessions(full.Bare()) {
		if s.JID().Equal(full) {
			return s
		}
	}
	return nil
}

func (r *storeRouter) SetPresence(context.Context, *router.Session, *router.Stanza) {}

func (r *storeRouter) StoreContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Minute)
}

func (r *storeRouter) IsLocal(ctx context.Context, bare jid.JID) (bool, error) {
	_, err := r.db.Account(ctx, auth.Number(bare.Localpart()))
	if errors.Is(err, auth.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (r *storeRouter) Normalize(j jid.JID) (jid.JID, error) { return j, nil }

// A recycled number's contacts lose their subscriptions to it, local ones
// in their stored rosters (pushed to their clients), remote ones by the
// stanzas routed to them; the old owner's roster is gone.
func TestResetCancelsSubscriptions(t *testing.T) {
	ctx := context.Background()
	db, err := storage.Open(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := &storeRouter{db: db, sessions: map[string][]*router.Session{}}
	m := im.New(db, r, nil)
	r.m = m

	alice := jid.MustParse("+821011111111@" + domain) // the recycled number
	bob := jid.MustParse("+821022222222@" + domain)   // mutual subscription
	carol := jid.MustParse("+821033333333@" + domain) // alice asked carol, no answer yet
	dave := jid.MustParse("+821044444444@" + domain)  // dave asked alice, no answer yet
	juliet := jid.MustParse("juliet@capulet.example") // remote, mutual
	for _, j := range []jid.JID{alice, bob, carol, dave} {
		if _, err := db.SetCredentials(ctx, auth.Number(j.Localpart()), auth.Credentials{}); err != nil {
			t.Fatal(err)
		}
	}
	bobFull := jid.MustParse(bob.String() + "/phone")
	bobSession := router.NewSession(ctx, bobFull, nil)
	im.SetInterested(bobSession)
	r.sessions[bob.String()] = []*router.Session{bobSession}

	put := func(owner jid.JID, it im.Item) {
		t.Helper()
		if _, err := db.PutRosterItem(ctx, owner.Localpart(), it); err != nil {
			t.Fatal(err)
		}
	}
	put(alice, im.Item{Contact: bob.String(), Subscription: im.SubBoth, InRoster: true, Groups: []string{"Friends"}})
	put(bob, im.Item{Contact: alice.String(), Subscription: im.SubBoth, InRoster: true, Name: "Alice"})
	put(alice, im.Item{Contact: carol.String(), Subscription: im.SubNone, PendingOut: true, InRoster: true})
	put(carol, im.Item{Contact: alice.String(), Subscription: im.SubNone, PendingIn: true})
	put(alice, im.Item{Contact: dave.String(), Subscription: im.SubNone, PendingIn: true})
	put(dave, im.Item{Contact: alice.String(), Subscription: im.SubNone, PendingOut: true, InRoster: true})
	put(alice, im.Item{Contact: juliet.String(), Subscription: im.SubBoth, InRoster: true})

	if err := m.Reset(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if err := db.WipeAccountData(ctx, auth.Number(alice.Localpart())); err != nil {
		t.Fatal(err)
	}

	items, v, err := db.Roster(ctx, alice.Localpart())
	if err != nil || len(items) != 0 || v != 0 {
		t.Fatalf("old owner's roster after reset: %v version %d (%v)", items, v, err)
	}
	item := func(owner jid.JID) (im.Item, bool) {
		t.Helper()
		it, err := db.RosterItem(ctx, owner.Localpart(), alice.String())
		if errors.Is(err, auth.ErrNotFound) {
			return im.Item{}, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return it, true
	}
	if it, ok := item(bob); !ok || it.Subscription != im.SubNone || it.PendingIn || it.PendingOut || !it.InRoster || it.Name != "Alice" {
		t.Errorf("bob's item for the recycled number: %+v (exists %v), want kept with subscription none", it, ok)
	}
	if it, ok := item(carol); ok {
		t.Errorf("carol still holds the old owner's request: %+v", it)
	}
	if it, ok := item(dave); !ok || it.Subscription != im.SubNone || it.PendingOut {
		t.Errorf("dave's request was not denied: %+v (exists %v)", it, ok)
	}

	// Bob's client was told; juliet's server got both cancellations.
	var pushed bool
	for _, s := range r.delivered {
		if s.Kind == router.KindIQ && s.To.Equal(bobFull) && strings.Contains(string(s.Inner), `subscription="none"`) {
			pushed = true
		}
	}
	if !pushed {
		t.Errorf("no roster push to bob's session")
	}
	var toJuliet []string
	for _, s := range r.routed {
		if s.To.Equal(juliet) && s.From.Equal(alice) {
			toJuliet = append(toJuliet, s.Type)
		}
	}
	if strings.Join(toJuliet, ",") != "unsubscribed,unsubscribe" {
		t.Errorf("routed to the remote contact: %v, want unsubscribed,unsubscribe", toJuliet)
	}
}
