package daemon_test

import (
	"errors"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"dialtone/auth"
	"dialtone/internal/xmpptest"
)

// rosterMax is XMPPD_ROSTER_MAX in TestPrivacyAndLimits.
const rosterMax = 3

// TestPrivacyAndLimits runs, on each store, what other users can learn
// about a number and the per-account roster limit, over real sockets.
func TestPrivacyAndLimits(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			s := startDaemon(t, noticeEnv(t, b.url(t), map[string]string{
				"XMPPD_ROSTER_MAX": "3",
			}))
			t.Run("account_existence_hidden", func(t *testing.T) { testAccountExistenceHidden(t, s) })
			t.Run("blocked_request_not_delivered", func(t *testing.T) { testBlockedRequestNotDelivered(t, s) })
			t.Run("roster_max", func(t *testing.T) { testRosterMax(t, s) })
		})
	}
}

// idValue matches the value of an id attribute as normalise prints it.
var idValue = regexp.MustCompile(`\bid="[^"]*"`)

// normalise prints e with its attributes sorted, the addresses of the
// sender (A) and of the other party (X) replaced, and ids blanked: what
// is left must be the same whoever X is.
func normalise(e xmpptest.Elem, sender, other string) string {
	repl := strings.NewReplacer(other, "X", sender, "A")
	attrs := make([]string, 0, len(e.Attrs))
	for _, a := range e.Attrs {
		v := a.Value
		if a.Name.Local == "id" && a.Name.Space == "" {
			v = ""
		}
		attrs = append(attrs, a.Name.Space+":"+a.Name.Local+`="`+repl.Replace(v)+`"`)
	}
	sort.Strings(attrs)
	inner := idValue.ReplaceAllString(repl.Replace(e.Inner), `id=""`)
	return "<" + e.XMLName.Local + " " + strings.Join(attrs, " ") + ">" + inner
}

// testAccountExistenceHidden: a latent number, an unclaimed account, an
// active account that is offline and one that is online give another
// user byte for byte the same answers (after normalising ids and the
// addresses) to every query: subscription stanzas, probes, vCard,
// disco#info and #items, ping, other iqs to the bare and to a full JID
// (SPEC.md "Limits on what clients send": whether a number has an account
// is not visible to other users).
func testAccountExistenceHidden(t *testing.T, s *daemonUnderTest) {
	latent := s.newNumber()
	unclaimed := s.newUser(t)
	offline := s.activeUser(t)
	onlineUser := s.newUser(t)
	online := s.online(t, onlineUser, "desk")
	targets := []struct{ name, bare string }{
		{"latent", latent + "@" + domain},
		{"unclaimed", unclaimed.bare()},
		{"active offline", offline.bare()},
		{"active online", onlineUser.bare()},
	}
	type query struct {
		name string
		ask  func(c *xmpptest.Client, to string) []xmpptest.Elem
	}
	iqQuery := func(name, typ, payload string, full bool) query {
		return query{name, func(c *xmpptest.Client, to string) []xmpptest.Elem {
			if full {
				to += "/nosuch" // a resource nobody bound
			}
			r, before := iq(c, typ, to, payload)
			return append(before, r)
		}}
	}
	presenceQuery := func(typ string) query {
		return query{typ, func(c *xmpptest.Client, to string) []xmpptest.Elem {
			c.Send(`<presence type='` + typ + `' to='` + to + `'/>`)
			// The ping's answer comes after everything the presence caused.
			return drain(c)
		}}
	}
	queries := []query{
		presenceQuery("subscribe"),
		presenceQuery("subscribe"), // again, while pending
		iqQuery("vCard", "get", `<vCard xmlns='vcard-temp'/>`, false),
		iqQuery("disco#info", "get", `<query xmlns='http://jabber.org/protocol/disco#info'/>`, false),
		iqQuery("disco#items", "get", `<query xmlns='http://jabber.org/protocol/disco#items'/>`, false),
		iqQuery("ping", "get", `<ping xmlns='urn:xmpp:ping'/>`, false),
		iqQuery("version", "get", `<query xmlns='jabber:iq:version'/>`, false),
		iqQuery("unknown namespace", "get", `<query xmlns='urn:example:nothing'/>`, false),
		iqQuery("roster of another", "get", `<query xmlns='jabber:iq:roster'/>`, false),
		iqQuery("private of another", "get", `<query xmlns='jabber:iq:private'><x xmlns='urn:example:p'/></query>`, false),
		iqQuery("vCard set", "set", `<vCard xmlns='vcard-temp'><FN>M</FN></vCard>`, false),
		iqQuery("full JID", "get", `<ping xmlns='urn:xmpp:ping'/>`, true),
		presenceQuery("probe"),
		presenceQuery("subscribe"), // after the probe's answer cleared it
		presenceQuery("unsubscribe"),
		presenceQuery("subscribed"),
		presenceQuery("unsubscribed"),
	}
	answers := make(map[string][]string) // target → one joined answer per query
	for _, tg := range targets {
		// A new sender for each target, so that its roster versions run alike.
		sender := s.newUser(t)
		c := s.online(t, sender, "phone")
		for _, q := range queries {
			var got []string
			for _, e := range q.ask(c, tg.bare) {
				got = append(got, normalise(e, sender.bare(), tg.bare))
			}
			answers[tg.name] = append(answers[tg.name], strings.Join(got, "\n"))
		}
		c.Send(`</stream:stream>`)
	}
	for i, q := range queries {
		want := answers["latent"][i]
		for _, tg := range targets[1:] {
			if got := answers[tg.name][i]; got != want {
				t.Errorf("%s to the %s number:\n%s\nto the latent one:\n%s", q.name, tg.name, got, want)
			}
		}
	}
	// What the answers are: the request stays pending, the vCard is empty,
	// the account identity is shown, iqs nobody serves are refused alike.
	for i, want := range map[int]string{
		0:  `ask="subscribe"`,
		2:  `<vCard xmlns="vcard-temp"/>`,
		3:  `<identity category="account" type="registered"/>`,
		7:  `service-unavailable`,
		8:  `forbidden`,
		11: `service-unavailable`,
	} {
		if !strings.Contains(answers["latent"][i], want) {
			t.Errorf("%s: %q lacks %q", queries[i].name, answers["latent"][i], want)
		}
	}
	// The online account was asked; nothing was stored for the latent number.
	online.Expect("the request to the online account", func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "presence" && e.Attr("type") == "subscribe"
	})
	ctx := t.Context()
	if items, v, err := s.d.DB.Roster(ctx, latent); err != nil || len(items) != 0 || v != 0 {
		t.Errorf("stored for the latent number: %v version %d (%v)", items, v, err)
	}
	if _, err := s.d.DB.Account(ctx, auth.Number(latent)); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("the latent number has an account now: %v", err)
	}
}

// testBlockedRequestNotDelivered: a subscription request that waited for
// its receiver is not delivered at her login once she blocked its sender
// (XEP-0191: nothing from a blocked entity is delivered); after an
// unblock it is.
func testBlockedRequestNotDelivered(t *testing.T, s *daemonUnderTest) {
	alice, bob, carol := s.newUser(t), s.newUser(t), s.newUser(t)
	for _, u := range []user{bob, carol} {
		c := s.online(t, u, "r")
		c.Send(`<presence type='subscribe' to='` + alice.bare() + `'/>`)
		expectPush(t, c)
		c.Sync()
	}
	// alice blocks bob from a session that is not available, then goes
	// available: carol's request comes, bob's does not.
	a := s.login(t, alice, "one")
	r, _ := iq(a, "set", "", `<block xmlns='urn:xmpp:blocking'><item jid='`+bob.bare()+`'/></block>`)
	mustResult(t, r)
	a.Send(`<presence/>`)
	got := drain(a)
	if _, ok := find(got, isPresence("subscribe", carol.bare())); !ok {
		t.Errorf("carol's request was not delivered: %v", got)
	}
	if e, ok := find(got, isPresence("subscribe", bob.bare())); ok {
		t.Errorf("the blocked sender's request was delivered: %v", e)
	}
	r, _ = iq(a, "set", "", `<unblock xmlns='urn:xmpp:blocking'><item jid='`+bob.bare()+`'/></unblock>`)
	mustResult(t, r)
	a2 := s.login(t, alice, "two")
	a2.Send(`<presence/>`)
	if got := drain(a2); !slices.ContainsFunc(got, isPresence("subscribe", bob.bare())) {
		t.Errorf("after the unblock bob's request did not come: %v", got)
	}
}

// testRosterMax: XMPPD_ROSTER_MAX items and no more: a roster set or a
// request for one more gets not-allowed with a policy-violation text, an
// incoming request that would add one is dropped without a word, and a
// removal makes room.
func testRosterMax(t *testing.T, s *daemonUnderTest) {
	alice, dave := s.newUser(t), s.newUser(t)
	a := s.online(t, alice, "phone")
	set := func(contact string) xmpptest.Elem {
		r, _ := iq(a, "set", "", `<query xmlns='jabber:iq:roster'><item jid='`+contact+`'/></query>`)
		return r
	}
	wantFull := func(what string, e xmpptest.Elem) {
		t.Helper()
		wantError(t, e, "cancel", "not-allowed")
		if !strings.Contains(e.Inner, "policy-violation") {
			t.Errorf("%s: no policy-violation text: %v", what, e)
		}
	}
	contacts := make([]string, rosterMax)
	for i := range contacts {
		contacts[i] = s.newNumber() + "@" + domain
		mustResult(t, set(contacts[i]))
	}
	wantFull("roster set", set(s.newNumber()+"@"+domain))
	extra := s.newNumber() + "@" + domain
	a.Send(`<presence type='subscribe' id='full1' to='` + extra + `'/>`)
	wantFull("subscribe", a.Expect("the refusal", func(e xmpptest.Elem) bool { return e.Attr("id") == "full1" }))

	// dave's request would be one more item: alice hears nothing, nor dave.
	d := s.online(t, dave, "d")
	d.Send(`<presence type='subscribe' to='` + alice.bare() + `'/>`)
	if it, _ := expectPush(t, d); it.Ask != "subscribe" {
		t.Errorf("dave's item %+v", it)
	}
	quiet(t, d, "a request to a full roster is not answered")
	quiet(t, a, "a request that would overfill the roster is dropped")
	if n, err := s.d.DB.RosterCount(t.Context(), alice.num); err != nil || n != rosterMax {
		t.Errorf("alice has %d items (%v), want %d", n, err, rosterMax)
	}

	r, _ := iq(a, "set", "", `<query xmlns='jabber:iq:roster'><item jid='`+contacts[0]+`' subscription='remove'/></query>`)
	mustResult(t, r)
	mustResult(t, set(extra))
	if q := rosterGet(t, a); len(q.Items) != rosterMax {
		t.Errorf("roster has %d items, want %d", len(q.Items), rosterMax)
	}
}
