package roster

import (
	"context"
	"encoding/xml"
	"errors"
	"slices"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/roster"
	"dialtone/xmppd/mod/internal/modtest"
	"dialtone/xmppd/router"
)

const domain = modtest.Domain

var (
	alice = jid.MustParse(modtest.Alice + "@" + domain)
	bob   = jid.MustParse(modtest.Bob + "@" + domain)
)

func TestRegister(t *testing.T) {
	h := router.NewHooks()
	m := New(modtest.NewRosters(), modtest.NewRouter(domain), nil)
	if err := m.Register(h); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(h.DiscoFeatures(router.ScopeAccount), NS) || !slices.Contains(h.DiscoFeatures(router.ScopeServer), NS) {
		t.Errorf("features: account %v server %v", h.DiscoFeatures(router.ScopeAccount), h.DiscoFeatures(router.ScopeServer))
	}
	if got := string(h.Features(router.PostAuth, router.ConnInfo{})); got != `<ver xmlns="urn:xmpp:features:rosterver"/>` {
		t.Errorf("stream features %s", got)
	}
}

// rosterIQ builds a roster iq from the session from to its own account.
func rosterIQ(t *testing.T, from jid.JID, typ, inner string) *router.Stanza {
	return modtest.IQ(t, from.String(), "", typ, inner)
}

// A roster set is stored and pushed to the sessions that asked for the
// roster, with the new version; the others get nothing.
func TestSetPushesToInterested(t *testing.T) {
	r := modtest.NewRouter(domain, alice.String(), bob.String())
	st := modtest.NewRosters()
	m := New(st, r, nil)
	a1, _ := alice.WithResource("one")
	a2, _ := alice.WithResource("two")
	r.Bind(a1)
	s2 := r.Bind(a2)
	res, err := m.Handle(context.Background(), rosterIQ(t, a1, "get", `<query xmlns="jabber:iq:roster"/>`))
	if err != nil || string(res) != `<query xmlns="jabber:iq:roster" ver="0"/>` {
		t.Fatalf("empty roster: %s %v", res, err)
	}
	if Interested(s2) {
		t.Fatal("a session that did not ask is interested")
	}
	if _, err := m.Handle(context.Background(), rosterIQ(t, a2, "set",
		`<query xmlns="jabber:iq:roster"><item jid="`+bob.String()+`" name="B &amp; b"><group>x</group></item></query>`)); err != nil {
		t.Fatal(err)
	}
	it, ok := st.Get(alice, bob)
	if !ok || it.Name != "B & b" || !it.InRoster || it.Subscription != roster.SubNone || !slices.Equal(it.Groups, []string{"x"}) {
		t.Fatalf("stored %+v", it)
	}
	pushes := r.DeliveredTo(a1)
	if len(pushes) != 1 || !strings.Contains(string(pushes[0].Inner), `ver="1"`) || !strings.Contains(string(pushes[0].Inner), `name="B &amp; b"`) {
		t.Fatalf("pushes to the interested session: %v", pushes)
	}
	if got := r.DeliveredTo(a2); len(got) != 0 {
		t.Fatalf("the session that did not ask got %d pushes", len(got))
	}
	var q struct {
		XMLName xml.Name `xml:"jabber:iq:roster query"`
		Items   []struct {
			JID, Subscription string `xml:",attr"`
		} `xml:"item"`
	}
	res, err = m.Handle(context.Background(), rosterIQ(t, a1, "get", `<query xmlns="jabber:iq:roster"/>`))
	modtest.Unmarshal(t, res, &q)
	if err != nil || len(q.Items) != 1 {
		t.Fatalf("roster %s %v", res, err)
	}
}

// One item more than MaxItems is refused: not-allowed with the
// policy-violation text (SPEC.md).
func TestMaxItems(t *testing.T) {
	r := modtest.NewRouter(domain, alice.String())
	m := New(modtest.NewRosters(), r, nil)
	m.MaxItems = 1
	a, _ := alice.WithResource("one")
	r.Bind(a)
	set := func(contact string) error {
		_, err := m.Handle(context.Background(), rosterIQ(t, a, "set", `<query xmlns="jabber:iq:roster"><item jid="`+contact+`"/></query>`))
		return err
	}
	if err := set(bob.String()); err != nil {
		t.Fatal(err)
	}
	err := set("juliet@capulet.example")
	var se stanza.Error
	if modtest.Condition(t, err) != stanza.NotAllowed || !errors.As(err, &se) || !strings.HasPrefix(se.Text[""], "policy-violation") {
		t.Fatalf("over the limit: %v", err)
	}
	if err := set(bob.String()); err != nil {
		t.Fatalf("a change of an item in a full roster: %v", err)
	}
}
