package presence

import (
	"context"
	"encoding/xml"
	"errors"
	"slices"
	"strings"
	"testing"

	"dialtone/xmppd/router"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// TestRosterMax: with MaxItems items stored, one more (a roster set, an
// outgoing request, a pre-approval) gets not-allowed with a policy-violation
// text, and an incoming request that would add one is dropped without a
// word; changing or removing existing items still works
// (XMPPD_ROSTER_MAX).
func TestRosterMax(t *testing.T) {
	e := newEnv(t)
	e.rost.MaxItems = 2
	a := full(alice, "phone")
	e.login(a)
	set := func(contact string) error {
		_, err := e.iq("set", a, jid.JID{}, `<query xmlns="jabber:iq:roster"><item jid="`+contact+`"/></query>`)
		return err
	}
	wantFull := func(what string, err error) {
		t.Helper()
		var se stanza.Error
		if !errors.As(err, &se) || se.Condition != stanza.NotAllowed || se.Type != stanza.Cancel ||
			!strings.Contains(se.Text[""], "policy-violation") {
			t.Errorf("%s: got %v, want not-allowed (cancel) with a policy-violation text", what, err)
		}
	}
	if err := set(bob.String()); err != nil {
		t.Fatal(err)
	}
	// An incoming request adds a (hidden) item: it counts.
	e.m.InboundPresence(t.Context(), presence(typeSubscribe, carol, alice, ""))
	if got := e.state(alice, carol); got != "none+in hidden" {
		t.Fatalf("carol's request: %s", got)
	}
	wantFull("roster set of a third contact", set(juliet.String()))
	if _, ok := e.store.Get(alice, juliet); ok {
		t.Error("the refused item was stored")
	}

	e.r.Reset()
	latent := jid.MustParse("+821099999999@" + domain)
	for _, typ := range []string{typeSubscribe, typeSubscribed} {
		e.send(typ, a, latent, "")
		var got error
		for _, s := range e.r.DeliveredTo(a) {
			if s.Type == typeError {
				got = errorOf(t, s)
			}
		}
		wantFull(typ+" to a new contact", got)
		e.r.Reset()
	}
	if _, ok := e.store.Get(alice, latent); ok || len(e.r.RoutedTo(latent)) != 0 {
		t.Error("a refused request was stored or sent")
	}

	// A request from a new contact to the full roster: nothing stored,
	// nothing delivered, nothing answered.
	e.r.Reset()
	e.m.InboundPresence(t.Context(), presence(typeSubscribe, juliet, alice, ""))
	if _, ok := e.store.Get(alice, juliet); ok {
		t.Error("a request to a full roster was stored")
	}
	if len(e.r.Delivered()) != 0 || len(e.r.Routed()) != 0 {
		t.Errorf("a request to a full roster: delivered %v, routed %v", e.r.Delivered(), e.r.Routed())
	}

	// Existing items change freely, and removing one makes room.
	if _, err := e.iq("set", a, jid.JID{}, `<query xmlns="jabber:iq:roster"><item jid="`+bob.String()+`" name="Bob"/></query>`); err != nil {
		t.Errorf("renaming an item of a full roster: %v", err)
	}
	e.send(typeSubscribed, a, carol, "")
	if got := e.state(alice, carol); got != "from" {
		t.Errorf("approving carol's request with a full roster: %s", got)
	}
	if _, err := e.iq("set", a, jid.JID{}, `<query xmlns="jabber:iq:roster"><item jid="`+bob.String()+`" subscription="remove"/></query>`); err != nil {
		t.Fatal(err)
	}
	if err := set(juliet.String()); err != nil {
		t.Errorf("after a removal: %v", err)
	}
}

// errorOf decodes the stanza error of an error stanza the module made.
func errorOf(t *testing.T, s *router.Stanza) error {
	t.Helper()
	var e struct {
		Err stanza.Error `xml:"error"`
	}
	b := s.Bytes()
	if err := xml.Unmarshal(b, &e); err != nil {
		t.Fatalf("error stanza %s: %v", b, err)
	}
	return e.Err
}

// TestBlockedRequestNotDelivered: a request stored before the user blocked
// its sender is not delivered at her next login (XEP-0191 §3.3), others
// are; once unblocked it comes again. A blocklist that cannot be read
// delivers nothing.
func TestBlockedRequestNotDelivered(t *testing.T) {
	e := newEnv(t)
	var blockedErr error
	blocks := map[string]bool{bob.String(): true}
	e.m.Blocked = func(_ context.Context, user, contact jid.JID) (bool, error) {
		if !user.Equal(alice) {
			t.Errorf("Blocked asked for %s", user)
		}
		return blocks[contact.String()], blockedErr
	}
	e.m.InboundPresence(t.Context(), presence(typeSubscribe, bob, alice, ""))
	e.m.InboundPresence(t.Context(), presence(typeSubscribe, carol, alice, ""))

	login := func(res string) []string {
		t.Helper()
		f := full(alice, res)
		e.r.Bind(f)
		e.send("", f, jid.JID{}, "")
		var got []string
		for _, p := range e.presences(f) {
			if strings.HasPrefix(p, typeSubscribe+" ") {
				got = append(got, p)
			}
		}
		slices.Sort(got)
		return got
	}
	if got := login("one"); !slices.Equal(got, []string{"subscribe " + carol.String()}) {
		t.Errorf("while bob is blocked: %v", got)
	}
	if got := e.state(alice, bob); got != "none+in hidden" {
		t.Errorf("bob's request is kept while he is blocked: %s", got)
	}
	blocks = map[string]bool{}
	if got := login("two"); !slices.Equal(got, []string{"subscribe " + bob.String(), "subscribe " + carol.String()}) {
		t.Errorf("after unblocking: %v", got)
	}
	blockedErr = errors.New("store down")
	if got := login("three"); len(got) != 0 {
		t.Errorf("with an unreadable blocklist: %v", got)
	}
}
