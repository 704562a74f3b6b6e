package presence

import (
	rostermod "dialtone/xmppd/mod/roster"
	"encoding/xml"
	"errors"
	"slices"
	"strings"
	"testing"

	"dialtone/roster"
	"dialtone/xmppd/router"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// parsedQuery is a roster result or push as a client reads it.
type parsedQuery struct {
	XMLName xml.Name `xml:"jabber:iq:roster query"`
	Ver     *string  `xml:"ver,attr"`
	Items   []struct {
		JID          string   `xml:"jid,attr"`
		Name         string   `xml:"name,attr"`
		Subscription string   `xml:"subscription,attr"`
		Ask          string   `xml:"ask,attr"`
		Approved     string   `xml:"approved,attr"`
		Groups       []string `xml:"group"`
	} `xml:"item"`
}

func parseQuery(t *testing.T, b []byte) parsedQuery {
	t.Helper()
	var q parsedQuery
	if err := xml.Unmarshal(b, &q); err != nil {
		t.Fatalf("roster query %q: %v", b, err)
	}
	return q
}

// pushes returns the roster pushes delivered to a session, checking that
// each is an iq set from the user's bare JID.
func (e *env) pushes(f jid.JID) []parsedQuery {
	e.t.Helper()
	var out []parsedQuery
	for _, s := range e.r.DeliveredTo(f) {
		if s.Kind != router.KindIQ {
			continue
		}
		if s.Type != "set" || !s.From.Equal(f.Bare()) || !s.To.Equal(f) || s.ID == "" {
			e.t.Fatalf("push to %s is not an iq set from the bare JID: %s", f, s.Bytes())
		}
		out = append(out, parseQuery(e.t, s.Inner))
	}
	return out
}

// presences returns the presence stanzas delivered to a session as
// "type from" strings ("available" for no type).
func (e *env) presences(f jid.JID) []string {
	var out []string
	for _, s := range e.r.DeliveredTo(f) {
		if s.Kind == router.KindPresence {
			out = append(out, ptype(s)+" "+s.From.String())
		}
	}
	return out
}

func ptype(s *router.Stanza) string {
	if s.Type == "" {
		return "available"
	}
	return s.Type
}

// routedPresences returns presence routed to an address as "type from".
func (e *env) routedPresences(to jid.JID) []string {
	var out []string
	for _, s := range e.r.RoutedTo(to) {
		out = append(out, ptype(s)+" "+s.From.String())
	}
	return out
}

func TestRosterGetVersioningAndPush(t *testing.T) {
	e := newEnv(t)
	a1, a2, a3 := full(alice, "phone"), full(alice, "laptop"), full(alice, "watch")
	e.r.Bind(a1)
	e.r.Bind(a2)
	e.r.Bind(a3)

	res, err := e.iq("get", a1, jid.JID{}, `<query xmlns="jabber:iq:roster"/>`)
	if err != nil {
		t.Fatal(err)
	}
	q := parseQuery(t, res)
	if q.Ver == nil || *q.Ver != "0" || len(q.Items) != 0 {
		t.Fatalf("empty roster: %s", res)
	}
	if _, err := e.iq("get", a2, alice, `<query xmlns="jabber:iq:roster" ver=""/>`); err != nil {
		t.Fatal(err)
	}
	for _, s := range e.r.Sessions(alice) {
		if want := !s.JID().Equal(a3); rostermod.Interested(s) != want {
			t.Errorf("%s interested = %v, want %v", s.JID(), !want, want)
		}
	}

	// Add Bob in national form, with a name and two groups.
	res, err = e.iq("set", a1, jid.JID{}, `<query xmlns="jabber:iq:roster"><item jid="010-2222-2222@example.net" name="Bob &amp; co" subscription="both" ask="subscribe"><group>Friends</group><group>Work</group></item></query>`)
	if err != nil || res != nil {
		t.Fatalf("set: %q, %v", res, err)
	}
	it, ok := e.store.Get(alice, bob)
	if !ok || it.Name != "Bob & co" || !slices.Equal(it.Groups, []string{"Friends", "Work"}) || !it.InRoster {
		t.Fatalf("stored item: %+v, %v", it, ok)
	}
	if it.Subscription != roster.SubNone || it.PendingOut {
		t.Errorf("client subscription/ask not ignored: %+v", it)
	}
	for _, f := range []jid.JID{a1, a2} {
		p := e.pushes(f)
		if len(p) != 1 || *p[0].Ver != "1" || len(p[0].Items) != 1 {
			t.Fatalf("pushes to %s: %+v", f, p)
		}
		pi := p[0].Items[0]
		if pi.JID != bob.String() || pi.Name != "Bob & co" || pi.Subscription != "none" || pi.Ask != "" || len(pi.Groups) != 2 {
			t.Errorf("pushed item to %s: %+v", f, pi)
		}
	}
	if p := e.pushes(a3); len(p) != 0 {
		t.Errorf("push to a session that never asked for the roster: %+v", p)
	}

	// Current version: empty result. Older version: the whole roster.
	res, err = e.iq("get", a1, jid.JID{}, `<query xmlns="jabber:iq:roster" ver="1"/>`)
	if err != nil || res != nil {
		t.Fatalf("get with current ver: %q, %v", res, err)
	}
	res, err = e.iq("get", a1, jid.JID{}, `<query xmlns="jabber:iq:roster" ver="0"/>`)
	if err != nil {
		t.Fatal(err)
	}
	q = parseQuery(t, res)
	if *q.Ver != "1" || len(q.Items) != 1 || q.Items[0].JID != bob.String() {
		t.Fatalf("get with old ver: %s", res)
	}

	// Items that only remember an inbound request are not shown.
	e.store.Put(alice, roster.Item{Contact: carol.String(), Subscription: roster.SubNone, PendingIn: true})
	res, _ = e.iq("get", a1, jid.JID{}, `<query xmlns="jabber:iq:roster"/>`)
	q = parseQuery(t, res)
	if *q.Ver != "2" || len(q.Items) != 1 {
		t.Fatalf("hidden item shown: %s", res)
	}

	// Update: name and groups replaced, subscription kept.
	e.store.Put(alice, roster.Item{Contact: bob.String(), Subscription: roster.SubBoth, InRoster: true, Name: "old"})
	e.r.Reset()
	if _, err := e.iq("set", a2, jid.JID{}, `<query xmlns="jabber:iq:roster"><item jid="+821022222222@example.net" subscription="none"/></query>`); err != nil {
		t.Fatal(err)
	}
	if got := e.state(alice, bob); got != "both" {
		t.Errorf("update changed subscription: %s", got)
	}
	if it, _ := e.store.Get(alice, bob); it.Name != "" || len(it.Groups) != 0 {
		t.Errorf("update kept name/groups: %+v", it)
	}
	if p := e.pushes(a1); len(p) != 1 || p[0].Items[0].Subscription != "both" || *p[0].Ver != "4" {
		t.Errorf("update push: %+v", p)
	}
}

func TestRosterSetErrors(t *testing.T) {
	e := newEnv(t)
	a := full(alice, "r")
	e.r.Bind(a)
	q := func(items string) string { return `<query xmlns="jabber:iq:roster">` + items + `</query>` }
	tests := []struct {
		name string
		to   jid.JID
		typ  string
		xml  string
		cond stanza.Condition
	}{
		{"other account", bob, "set", q(`<item jid="juliet@capulet.example"/>`), stanza.Forbidden},
		{"get other account", bob, "get", q(``), stanza.Forbidden},
		{"no item", jid.JID{}, "set", q(``), stanza.BadRequest},
		{"two items", jid.JID{}, "set", q(`<item jid="juliet@capulet.example"/><item jid="romeo@montague.example"/>`), stanza.BadRequest},
		{"no jid", jid.JID{}, "set", q(`<item name="x"/>`), stanza.BadRequest},
		{"malformed jid", jid.JID{}, "set", q(`<item jid="@@"/>`), stanza.JIDMalformed},
		{"invalid number", jid.JID{}, "set", q(`<item jid="12ab@example.net"/>`), stanza.ItemNotFound},
		{"invalid number remove", jid.JID{}, "set", q(`<item jid="12ab@example.net" subscription="remove"/>`), stanza.ItemNotFound},
		{"own jid", jid.JID{}, "set", q(`<item jid="+821011111111@example.net"/>`), stanza.NotAllowed},
		{"own jid national", jid.JID{}, "set", q(`<item jid="010-1111-1111@example.net"/>`), stanza.NotAllowed},
		{"duplicate groups", jid.JID{}, "set", q(`<item jid="juliet@capulet.example"><group>A</group><group>A</group></item>`), stanza.BadRequest},
		{"empty group", jid.JID{}, "set", q(`<item jid="juliet@capulet.example"><group></group></item>`), stanza.NotAcceptable},
		{"long name", jid.JID{}, "set", q(`<item jid="juliet@capulet.example" name="` + strings.Repeat("n", rostermod.MaxNameLen+1) + `"/>`), stanza.NotAcceptable},
		{"remove absent", jid.JID{}, "set", q(`<item jid="juliet@capulet.example" subscription="remove"/>`), stanza.ItemNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.r.Reset()
			res, err := e.iq(tc.typ, a, tc.to, tc.xml)
			if res != nil || condition(err) != string(tc.cond) {
				t.Fatalf("got %q, %v; want %s", res, err, tc.cond)
			}
			if len(e.r.Delivered()) != 0 || len(e.r.Routed()) != 0 {
				t.Errorf("error case sent stanzas: %+v %+v", e.r.Delivered(), e.r.Routed())
			}
		})
	}
	if items, _, _ := e.store.Roster(t.Context(), alice.Localpart()); len(items) != 0 {
		t.Errorf("error cases stored items: %+v", items)
	}
}

func TestRosterRemove(t *testing.T) {
	tests := []struct {
		item roster.Item
		want []string // presence routed to the contact, in order
	}{
		{roster.Item{Subscription: roster.SubBoth}, []string{"unsubscribed", "unavailable", "unsubscribe"}},
		{roster.Item{Subscription: roster.SubFrom}, []string{"unsubscribed", "unavailable"}},
		{roster.Item{Subscription: roster.SubTo}, []string{"unsubscribe"}},
		{roster.Item{Subscription: roster.SubNone, PendingOut: true}, []string{"unsubscribe"}},
		{roster.Item{Subscription: roster.SubNone, PendingIn: true}, []string{"unsubscribed"}},
		{roster.Item{Subscription: roster.SubNone}, nil},
	}
	for _, tc := range tests {
		t.Run(stateName(tc.item), func(t *testing.T) {
			e := newEnv(t)
			a := full(alice, "r")
			sess := e.r.Bind(a)
			if _, err := e.iq("get", a, jid.JID{}, `<query xmlns="jabber:iq:roster"/>`); err != nil {
				t.Fatal(err)
			}
			sess.SetPresence(presence("", a, jid.JID{}, ""))
			it := tc.item
			it.Contact, it.InRoster = juliet.String(), true
			e.store.Put(alice, it)

			res, err := e.iq("set", a, jid.JID{}, `<query xmlns="jabber:iq:roster"><item jid="juliet@capulet.example" subscription="remove"/></query>`)
			if res != nil || err != nil {
				t.Fatalf("remove: %q, %v", res, err)
			}
			if got := e.state(alice, juliet); got != "absent" {
				t.Errorf("item left: %s", got)
			}
			var types []string
			for _, s := range e.r.RoutedTo(juliet) {
				types = append(types, ptype(s))
				wantFrom := alice
				if s.Type == typeUnavailable {
					wantFrom = a
				}
				if !s.From.Equal(wantFrom) {
					t.Errorf("%s from %s, want %s", ptype(s), s.From, wantFrom)
				}
			}
			if !slices.Equal(types, tc.want) {
				t.Errorf("routed %v, want %v", types, tc.want)
			}
			p := e.pushes(a)
			if len(p) != 1 || p[0].Items[0].Subscription != "remove" || p[0].Items[0].JID != juliet.String() || *p[0].Ver != "2" {
				t.Errorf("remove push: %+v", p)
			}
		})
	}
}

// stateName names an item's subscription state for subtests.
func stateName(it roster.Item) string {
	return it.Subscription + map[bool]string{true: "+out"}[it.PendingOut] + map[bool]string{true: "+in"}[it.PendingIn]
}

func TestRosterStoreError(t *testing.T) {
	e := newEnv(t)
	a := full(alice, "r")
	e.r.Bind(a)
	e.store.SetFail(errors.New("disk on fire"))
	for _, tc := range []struct{ typ, xml string }{
		{"get", `<query xmlns="jabber:iq:roster"/>`},
		{"set", `<query xmlns="jabber:iq:roster"><item jid="juliet@capulet.example"/></query>`},
		{"set", `<query xmlns="jabber:iq:roster"><item jid="juliet@capulet.example" subscription="remove"/></query>`},
	} {
		_, err := e.iq(tc.typ, a, jid.JID{}, tc.xml)
		if condition(err) != string(stanza.InternalServerError) {
			t.Errorf("%s %s: %v, want internal-server-error", tc.typ, tc.xml, err)
		}
	}
	// Presence paths log and go on without panicking; the subscription
	// request is answered with an error.
	e.send("", a, jid.JID{}, "")
	e.send(typeSubscribe, a, juliet, "")
	var errs int
	for _, s := range e.r.DeliveredTo(a) {
		if s.Type == typeError && strings.Contains(string(s.Inner), "internal-server-error") {
			errs++
		}
	}
	if errs != 1 {
		t.Errorf("subscription with failing store: %d error presences", errs)
	}
	if len(e.r.RoutedTo(juliet)) != 0 {
		t.Errorf("subscription routed although it was not stored")
	}
}
