package presence_test

import (
	"context"
	"encoding/xml"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/roster"
	"dialtone/storage"
	"dialtone/xmppd/mod/presence"
	rostermod "dialtone/xmppd/mod/roster"
	"dialtone/xmppd/router"

	"mellium.im/xmpp/jid"
)

const domain = "example.net"

// storeRouter is the core as far as Reset needs it, over a real store:
// presence to the local domain is handed to the module as inbound (as the
// core does), everything else is recorded.
type storeRouter struct {
	db *storage.DB
	m  *presence.Module

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
	rost := rostermod.New(db, r, nil)
	r.m = presence.New(r, rost, nil)

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
	r.sessions[bob.String()] = []*router.Session{router.NewSession(ctx, bobFull, nil)}
	// bob's client asks for his roster: it gets pushes from then on.
	if _, err := rost.Handle(ctx, &router.Stanza{Kind: router.KindIQ, Type: "get", ID: "r", From: bobFull, To: bob,
		Payload: xml.Name{Space: rostermod.NS, Local: "query"}, Inner: []byte(`<query xmlns="jabber:iq:roster"/>`)}); err != nil {
		t.Fatal(err)
	}

	put := func(owner jid.JID, it roster.Item) {
		t.Helper()
		if _, err := db.PutRosterItem(ctx, owner.Localpart(), it); err != nil {
			t.Fatal(err)
		}
	}
	put(alice, roster.Item{Contact: bob.String(), Subscription: roster.SubBoth, InRoster: true, Groups: []string{"Friends"}})
	put(bob, roster.Item{Contact: alice.String(), Subscription: roster.SubBoth, InRoster: true, Name: "Alice"})
	put(alice, roster.Item{Contact: carol.String(), Subscription: roster.SubNone, PendingOut: true, InRoster: true})
	put(carol, roster.Item{Contact: alice.String(), Subscription: roster.SubNone, PendingIn: true})
	put(alice, roster.Item{Contact: dave.String(), Subscription: roster.SubNone, PendingIn: true})
	put(dave, roster.Item{Contact: alice.String(), Subscription: roster.SubNone, PendingOut: true, InRoster: true})
	put(alice, roster.Item{Contact: juliet.String(), Subscription: roster.SubBoth, InRoster: true})

	if err := rost.Reset(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if err := db.WipeAccountData(ctx, auth.Number(alice.Localpart())); err != nil {
		t.Fatal(err)
	}

	items, v, err := db.Roster(ctx, alice.Localpart())
	if err != nil || len(items) != 0 || v != 0 {
		t.Fatalf("old owner's roster after reset: %v version %d (%v)", items, v, err)
	}
	item := func(owner jid.JID) (roster.Item, bool) {
		t.Helper()
		it, err := db.RosterItem(ctx, owner.Localpart(), alice.String())
		if errors.Is(err, auth.ErrNotFound) {
			return roster.Item{}, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return it, true
	}
	if it, ok := item(bob); !ok || it.Subscription != roster.SubNone || it.PendingIn || it.PendingOut || !it.InRoster || it.Name != "Alice" {
		t.Errorf("bob's item for the recycled number: %+v (exists %v), want kept with subscription none", it, ok)
	}
	if it, ok := item(carol); ok {
		t.Errorf("carol still holds the old owner's request: %+v", it)
	}
	if it, ok := item(dave); !ok || it.Subscription != roster.SubNone || it.PendingOut {
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
