package presence

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"dialtone/roster"
	"dialtone/xmppd/mod/internal/modtest"
	"dialtone/xmppd/router"

	"mellium.im/xmpp/jid"
)

// TestHandshakeLocal runs the whole handshake between two local users who
// are online, in both directions, and checks what each side sees.
func TestHandshakeLocal(t *testing.T) {
	e := newEnv(t)
	a, b := full(alice, "phone"), full(bob, "phone")
	e.login(a)
	e.login(b)
	e.r.Reset()

	// Alice asks, writing Bob's number in national form.
	bobNational := jid.MustParse("010-2222-2222@" + domain)
	e.send(typeSubscribe, a, bobNational, "<status>hi</status>")
	if got, want := e.state(alice, bob), "none+out"; got != want {
		t.Errorf("alice's item: %s, want %s", got, want)
	}
	if got, want := e.state(bob, alice), "none+in hidden"; got != want {
		t.Errorf("bob's item: %s, want %s", got, want)
	}
	if p := e.pushes(a); len(p) != 1 || p[0].Items[0].Ask != "subscribe" || p[0].Items[0].Subscription != "none" || p[0].Items[0].JID != bob.String() {
		t.Errorf("alice's push: %+v", p)
	}
	if p := e.pushes(b); len(p) != 0 {
		t.Errorf("bob got a push for a pending request: %+v", p)
	}
	routed := e.r.RoutedTo(bob)
	if len(routed) != 1 || routed[0].Type != typeSubscribe || !routed[0].From.Equal(alice) || string(routed[0].Inner) != "<status>hi</status>" {
		t.Fatalf("routed to bob: %+v", routed)
	}
	if got := e.presences(b); !slices.Equal(got, []string{"subscribe " + alice.String()}) {
		t.Errorf("bob's presences: %v", got)
	}

	// Bob approves: he gets 'from', she gets 'to' and his presence.
	e.r.Reset()
	e.send(typeSubscribed, b, alice, "")
	if got := e.state(bob, alice); got != "from" {
		t.Errorf("bob's item: %s", got)
	}
	if got := e.state(alice, bob); got != "to" {
		t.Errorf("alice's item: %s", got)
	}
	if p := e.pushes(b); len(p) != 1 || p[0].Items[0].Subscription != "from" {
		t.Errorf("bob's push: %+v", p)
	}
	if p := e.pushes(a); len(p) != 1 || p[0].Items[0].Subscription != "to" || p[0].Items[0].Ask != "" {
		t.Errorf("alice's push: %+v", p)
	}
	if got, want := e.presences(a), []string{"subscribed " + bob.String(), "available " + b.String()}; !slices.Equal(got, want) {
		t.Errorf("alice's presences: %v, want %v", got, want)
	}

	// The other direction: Bob asks, Alice approves.
	e.r.Reset()
	e.send(typeSubscribe, b, alice, "")
	if got := e.state(bob, alice); got != "from+out" {
		t.Errorf("bob's item: %s", got)
	}
	if got := e.state(alice, bob); got != "to+in" {
		t.Errorf("alice's item: %s", got)
	}
	if got := e.presences(a); !slices.Equal(got, []string{"subscribe " + bob.String()}) {
		t.Errorf("alice's presences: %v", got)
	}
	e.r.Reset()
	e.send(typeSubscribed, a, bob, "")
	if got, got2 := e.state(alice, bob), e.state(bob, alice); got != "both" || got2 != "both" {
		t.Errorf("after the handshake: alice %s, bob %s", got, got2)
	}
	if got, want := e.presences(b), []string{"subscribed " + alice.String(), "available " + a.String()}; !slices.Equal(got, want) {
		t.Errorf("bob's presences: %v, want %v", got, want)
	}
	for _, f := range []jid.JID{a, b} {
		if p := e.pushes(f); len(p) != 1 || p[0].Items[0].Subscription != "both" {
			t.Errorf("push to %s: %+v", f, p)
		}
	}

	// A repeated request is answered by the server on Bob's behalf, and
	// changes nothing.
	e.r.Reset()
	e.send(typeSubscribe, a, bob, "")
	if got := e.presences(b); len(got) != 0 {
		t.Errorf("bob was asked again: %v", got)
	}
	if got := e.routedPresences(alice); !slices.Contains(got, "subscribed "+bob.String()) {
		t.Errorf("no auto-reply: %v", got)
	}
	if got, got2 := e.state(alice, bob), e.state(bob, alice); got != "both" || got2 != "both" {
		t.Errorf("after the repeat: alice %s, bob %s", got, got2)
	}
}

// TestUnsubscribeAndUnsubscribed ends subscriptions from both sides.
func TestUnsubscribeAndUnsubscribed(t *testing.T) {
	e := newEnv(t)
	a, b := full(alice, "phone"), full(bob, "phone")
	e.store.Put(alice, roster.Item{Contact: bob.String(), Subscription: roster.SubBoth, InRoster: true})
	e.store.Put(bob, roster.Item{Contact: alice.String(), Subscription: roster.SubBoth, InRoster: true})
	e.login(a)
	e.login(b)
	e.r.Reset()

	// Alice stops receiving Bob's presence (§3.3): Bob's server sends her
	// his unavailable presence.
	e.send(typeUnsubscribe, a, bob, "")
	if got, got2 := e.state(alice, bob), e.state(bob, alice); got != "from" || got2 != "to" {
		t.Errorf("after unsubscribe: alice %s, bob %s", got, got2)
	}
	if got := e.presences(b); !slices.Equal(got, []string{"unsubscribe " + alice.String()}) {
		t.Errorf("bob's presences: %v", got)
	}
	if got := e.presences(a); !slices.Equal(got, []string{"unavailable " + b.String()}) {
		t.Errorf("alice's presences: %v", got)
	}
	if p := e.pushes(a); len(p) != 1 || p[0].Items[0].Subscription != "from" {
		t.Errorf("alice's push: %+v", p)
	}
	if p := e.pushes(b); len(p) != 1 || p[0].Items[0].Subscription != "to" {
		t.Errorf("bob's push: %+v", p)
	}

	// Alice revokes Bob's subscription to her (§3.2): her server sends him
	// her unavailable presence.
	e.r.Reset()
	e.send(typeUnsubscribed, a, bob, "")
	if got, got2 := e.state(alice, bob), e.state(bob, alice); got != "none" || got2 != "none" {
		t.Errorf("after unsubscribed: alice %s, bob %s", got, got2)
	}
	if got := e.presences(b); !slices.Equal(got, []string{"unsubscribed " + alice.String(), "unavailable " + a.String()}) {
		t.Errorf("bob's presences: %v", got)
	}
	// Nothing changes on a repeat: Bob is not told twice.
	e.r.Reset()
	e.send(typeUnsubscribed, a, bob, "")
	if got := e.presences(b); len(got) != 0 {
		t.Errorf("repeat delivered: %v", got)
	}
	if p := e.pushes(a); len(p) != 0 {
		t.Errorf("repeat pushed: %+v", p)
	}

	// Denying a request that came from someone not in the roster leaves
	// nothing stored.
	e.r.Reset()
	e.send(typeSubscribe, full(carol, "x"), alice, "")
	if got := e.state(alice, carol); got != "none+in hidden" {
		t.Fatalf("carol's request: %s", got)
	}
	e.send(typeUnsubscribed, a, carol, "")
	if got := e.state(alice, carol); got != "absent" {
		t.Errorf("denied request left %s", got)
	}
	if got := e.state(carol, alice); got != "none" {
		t.Errorf("carol's item after denial: %s", got)
	}
	// Carol cancels nothing further; an unsolicited subscribed is ignored.
	e.r.Reset()
	e.m.InboundPresence(t.Context(), presence(typeSubscribed, carol, alice, ""))
	if got := e.state(alice, carol); got != "absent" || len(e.presences(a)) != 0 {
		t.Errorf("unsolicited subscribed: %s, %v", got, e.presences(a))
	}
}

// TestPreApproval: Bob approves Alice before she asks (§3.4).
func TestPreApproval(t *testing.T) {
	e := newEnv(t)
	a, b := full(alice, "phone"), full(bob, "phone")
	e.login(a)
	e.login(b)
	e.r.Reset()

	e.send(typeSubscribed, b, alice, "")
	if got := e.state(bob, alice); got != "none+approved" {
		t.Fatalf("bob's item: %s", got)
	}
	if p := e.pushes(b); len(p) != 1 || p[0].Items[0].Approved != "true" {
		t.Errorf("bob's push: %+v", p)
	}
	if r := e.r.RoutedTo(alice); len(r) != 0 {
		t.Errorf("pre-approval was routed: %+v", r)
	}

	e.r.Reset()
	e.send(typeSubscribe, a, bob, "")
	if got, got2 := e.state(alice, bob), e.state(bob, alice); got != "to" || got2 != "from" {
		t.Errorf("after the request: alice %s, bob %s", got, got2)
	}
	if got := e.presences(b); len(got) != 0 {
		t.Errorf("bob was asked although he pre-approved: %v", got)
	}
	if got, want := e.presences(a), []string{"subscribed " + bob.String(), "available " + b.String()}; !slices.Equal(got, want) {
		t.Errorf("alice's presences: %v, want %v", got, want)
	}

	// Unsubscribed cancels a pre-approval.
	e.send(typeSubscribed, a, carol, "")
	e.send(typeUnsubscribed, a, carol, "")
	if got := e.state(alice, carol); got != "none" {
		t.Errorf("cancelled pre-approval: %s", got)
	}
}

// TestPendingInDeliveredOnLogin: a request to an offline user waits for
// her next initial presence, and every later one until she answers.
func TestPendingInDeliveredOnLogin(t *testing.T) {
	e := newEnv(t)
	b := full(bob, "phone")
	e.login(b)
	e.send(typeSubscribe, b, alice, "")
	e.send(typeSubscribe, full(carol, "c"), alice, "") // carol is not even online
	if got := e.state(alice, bob); got != "none+in hidden" {
		t.Fatalf("alice's item: %s", got)
	}

	a1 := full(alice, "phone")
	e.r.Bind(a1)
	// Bound but not available: the request is not pushed at her.
	if len(e.r.DeliveredTo(a1)) != 0 {
		t.Fatalf("delivered before initial presence")
	}
	e.send("", a1, jid.JID{}, "")
	got := e.presences(a1)
	for _, want := range []string{"subscribe " + bob.String(), "subscribe " + carol.String()} {
		if !slices.Contains(got, want) {
			t.Errorf("alice's presences %v lack %q", got, want)
		}
	}
	for _, s := range e.r.DeliveredTo(a1) {
		if s.Type == typeSubscribe && !s.To.Equal(alice) {
			t.Errorf("pending request addressed to %s", s.To)
		}
	}
	// A second, subsequent presence does not repeat it.
	e.r.Reset()
	e.send("", a1, jid.JID{}, "<show>away</show>")
	if got := e.presences(a1); slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "subscribe") }) {
		t.Errorf("subsequent presence redelivered requests: %v", got)
	}

	// She approves Bob; her next login does not show his request again.
	e.send(typeSubscribed, a1, bob, "")
	a2 := full(alice, "laptop")
	e.r.Reset()
	e.r.Bind(a2)
	e.send("", a2, jid.JID{}, "")
	got = e.presences(a2)
	if slices.Contains(got, "subscribe "+bob.String()) || !slices.Contains(got, "subscribe "+carol.String()) {
		t.Errorf("second login: %v", got)
	}
}

// TestSubscriptionNormalizeError: a request to an invalid number is
// answered with the Normalize error and changes nothing.
func TestSubscriptionNormalizeError(t *testing.T) {
	e := newEnv(t)
	a := full(alice, "phone")
	e.login(a)
	e.r.Reset()
	bad := jid.MustParse("12ab@" + domain)
	for _, typ := range []string{typeSubscribe, typeSubscribed, typeUnsubscribe, typeUnsubscribed} {
		e.send(typ, a, bad, "")
	}
	var errs int
	for _, s := range e.r.DeliveredTo(a) {
		if s.Kind == router.KindPresence && s.Type == typeError && strings.Contains(string(s.Inner), "<item-not-found") &&
			s.From.Equal(bad) && s.To.Equal(a) {
			errs++
		}
	}
	if errs != 4 {
		t.Errorf("%d error replies, want 4: %v", errs, e.r.DeliveredTo(a))
	}
	if len(e.r.Routed()) != 0 {
		t.Errorf("routed: %+v", e.r.Routed())
	}
	if items, _, _ := e.store.Roster(t.Context(), alice.Localpart()); len(items) != 0 {
		t.Errorf("stored: %+v", items)
	}
}

// TestRemoteSubscription: stanzas to and from a remote contact.
func TestRemoteSubscription(t *testing.T) {
	e := newEnv(t)
	a := full(alice, "phone")
	e.login(a)
	e.r.Reset()

	e.send(typeSubscribe, a, full(juliet, "balcony"), "")
	r := e.r.RoutedTo(juliet)
	if len(r) != 1 || r[0].Type != typeSubscribe || !r[0].From.Equal(alice) {
		t.Fatalf("routed: %+v", r)
	}
	// Her server approves and sends her presence.
	e.m.InboundPresence(t.Context(), presence(typeSubscribed, juliet, alice, ""))
	if got := e.state(alice, juliet); got != "to" {
		t.Errorf("alice's item: %s", got)
	}
	jb := full(juliet, "balcony")
	e.m.InboundPresence(t.Context(), presence("", jb, alice, ""))
	if got, want := e.presences(a), []string{"subscribed " + juliet.String(), "available " + jb.String()}; !slices.Equal(got, want) {
		t.Errorf("alice's presences: %v, want %v", got, want)
	}

	// Juliet asks back through a full JID; Alice is online, so she is asked.
	e.r.Reset()
	e.m.InboundPresence(t.Context(), presence(typeSubscribe, jb, a, ""))
	if got := e.state(alice, juliet); got != "to+in" {
		t.Errorf("alice's item: %s", got)
	}
	d := e.r.DeliveredTo(a)
	if len(d) != 1 || d[0].Type != typeSubscribe || !d[0].From.Equal(juliet) || !d[0].To.Equal(alice) {
		t.Errorf("delivered: %+v", d)
	}
}

// idAttr matches the id of a stanza the server made (a roster push).
var idAttr = regexp.MustCompile(` id="[^"]*"`)

// answersTo returns what reached the sender alice from the exchange:
// every stanza delivered to her sessions or routed to her addresses, as
// bytes with the other party's address replaced by "X" (the one thing
// that must differ).
func (e *env) answersTo(other jid.JID) []string {
	var out []string
	for _, list := range [][]modtest.Sent{e.r.Delivered(), e.r.Routed()} {
		for _, d := range list {
			if !d.To.Bare().Equal(alice) {
				continue
			}
			b := string(d.St.Clone().Bytes())
			b = strings.ReplaceAll(b, other.String(), "X")
			b = idAttr.ReplaceAllString(b, "")
			out = append(out, b)
		}
	}
	return out
}

// ownerCalls keeps the store calls made for owner, with the owner cut off.
func ownerCalls(calls []string, owner jid.JID) []string {
	var out []string
	for _, c := range calls {
		if m, ok := strings.CutSuffix(c, " "+owner.Localpart()); ok {
			out = append(out, m)
		}
	}
	return out
}

// TestLatentNumberIndistinguishable: subscription stanzas and probes to a
// latent number (no account), an unclaimed account (no session) and an
// active one (online) give the sender byte for byte the same answers, the
// sender's roster the same state, and make the same store calls for the
// receiver, a write included (SPEC.md "Limits on what clients send": whether
// a number has an account is not visible to other users). Nothing is
// stored for the latent number.
func TestLatentNumberIndistinguishable(t *testing.T) {
	latent := jid.MustParse("+821099999999@" + domain)
	targets := []struct {
		name string
		to   jid.JID
	}{{"latent", latent}, {"unclaimed", carol}, {"active", bob}}
	type outcome struct {
		answers, calls []string
		state          string
	}
	steps := []struct {
		name string
		run  func(e *env, a, to jid.JID)
	}{
		{"subscribe", func(e *env, a, to jid.JID) { e.send(typeSubscribe, a, to, "") }},
		{"subscribe again", func(e *env, a, to jid.JID) { e.send(typeSubscribe, a, to, "") }},
		{"probe", func(e *env, a, to jid.JID) {
			e.m.InboundPresence(t.Context(), presence(typeProbe, alice, to, ""))
		}},
		{"unsubscribe", func(e *env, a, to jid.JID) { e.send(typeUnsubscribe, a, to, "") }},
		{"subscribed", func(e *env, a, to jid.JID) { e.send(typeSubscribed, a, to, "") }},
		{"unsubscribed", func(e *env, a, to jid.JID) { e.send(typeUnsubscribed, a, to, "") }},
	}
	got := map[string][]outcome{}
	for _, tg := range targets {
		e := newEnv(t)
		e.rost.MaxItems = 100
		a := full(alice, "phone")
		e.login(a)
		e.login(full(bob, "desk"))
		for _, st := range steps {
			e.r.Reset()
			e.store.TakeCalls()
			st.run(e, a, tg.to)
			got[tg.name] = append(got[tg.name], outcome{
				answers: e.answersTo(tg.to),
				calls:   ownerCalls(e.store.TakeCalls(), tg.to),
				state:   e.state(alice, tg.to),
			})
		}
		if tg.to.Equal(latent) {
			if items, _, _ := e.store.Roster(t.Context(), latent.Localpart()); len(items) != 0 {
				t.Errorf("stored for a latent number: %+v", items)
			}
		}
	}
	for i, st := range steps {
		want := got["active"][i]
		for _, name := range []string{"latent", "unclaimed"} {
			o := got[name][i]
			if !slices.Equal(o.answers, want.answers) || o.state != want.state {
				t.Errorf("%s to the %s number: answers %q, alice's item %s;\nto the active one: %q, %s",
					st.name, name, o.answers, o.state, want.answers, want.state)
			}
			if !slices.Equal(o.calls, want.calls) {
				t.Errorf("%s to the %s number: store calls %q, for the active one %q", st.name, name, o.calls, want.calls)
			}
		}
	}
	// The first request is kept pending, and the store was written for it.
	if first := got["latent"][0]; first.state != "none+out" || !slices.Contains(first.calls, "write") {
		t.Errorf("subscribe to a latent number: alice's item %s, store calls %q", first.state, first.calls)
	}
	if probe := got["latent"][2]; !slices.Contains(probe.answers, `<presence to="`+alice.String()+`" from="X" type="unsubscribed"/>`) {
		t.Errorf("probe answer %q", probe.answers)
	}
}
