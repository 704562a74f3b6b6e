package presence

import (
	"slices"
	"testing"

	"dialtone/roster"
	"dialtone/xmppd/router"

	"mellium.im/xmpp/jid"
)

// seedMutual makes two local users subscribed to each other.
func (e *env) seedMutual(x, y jid.JID) {
	e.store.Put(x, roster.Item{Contact: y.String(), Subscription: roster.SubBoth, InRoster: true})
	e.store.Put(y, roster.Item{Contact: x.String(), Subscription: roster.SubBoth, InRoster: true})
}

func TestPresenceBroadcastAndProbes(t *testing.T) {
	e := newEnv(t)
	e.seedMutual(alice, bob)
	romeo := jid.MustParse("romeo@montague.example")
	e.store.Put(alice, roster.Item{Contact: juliet.String(), Subscription: roster.SubFrom, InRoster: true})
	e.store.Put(alice, roster.Item{Contact: romeo.String(), Subscription: roster.SubTo, InRoster: true})
	e.store.Put(alice, roster.Item{Contact: carol.String(), Subscription: roster.SubNone, PendingOut: true, InRoster: true})

	b := full(bob, "phone")
	e.login(b)
	a1, a2 := full(alice, "phone"), full(alice, "laptop")
	e.r.Bind(a1)
	e.send("", a1, jid.JID{}, "<priority>5</priority>")
	e.r.Bind(a2)
	e.r.Reset()

	// Initial presence of the second resource.
	e.send("", a2, jid.JID{}, "<priority>1</priority>")
	sess := e.r.Session(a2)
	if !sess.Available() || string(sess.Presence().Inner) != "<priority>1</priority>" {
		t.Fatalf("SetPresence not called with the stanza: %+v", sess.Presence())
	}
	// Subscribers (bob: both, juliet: from) get it from the full JID;
	// romeo (to) and carol (none) do not.
	if got := e.presences(b); !slices.Equal(got, []string{"available " + a2.String()}) {
		t.Errorf("bob got %v", got)
	}
	if r := e.r.RoutedTo(juliet); len(r) != 1 || r[0].Type != "" || !r[0].From.Equal(a2) || string(r[0].Inner) != "<priority>1</priority>" {
		t.Errorf("routed to juliet: %+v", r)
	}
	if r := e.r.RoutedTo(carol); len(r) != 0 {
		t.Errorf("routed to carol (no subscription): %+v", r)
	}
	// Probes, from the bare JID, to bob (both) and romeo (to) only.
	for _, to := range []jid.JID{bob, romeo} {
		var probes int
		for _, s := range e.r.RoutedTo(to) {
			if s.Type == typeProbe {
				probes++
				if !s.From.Equal(alice) {
					t.Errorf("probe to %s from %s", to, s.From)
				}
			}
		}
		if probes != 1 {
			t.Errorf("%d probes to %s", probes, to)
		}
	}
	if r := e.r.RoutedTo(juliet); slices.ContainsFunc(r, func(s *router.Stanza) bool { return s.Type == typeProbe }) {
		t.Errorf("probe to juliet (from only)")
	}
	// The new resource sees itself, the other resource, and bob's answer
	// to the probe; the other resource sees the new one.
	got := e.presences(a2)
	for _, want := range []string{"available " + a2.String(), "available " + a1.String(), "available " + b.String()} {
		if !slices.Contains(got, want) {
			t.Errorf("a2 got %v, lacks %q", got, want)
		}
	}
	if len(got) != 3 {
		t.Errorf("a2 got %v", got)
	}
	// The probe came from the bare JID, so its answer reaches every
	// available resource (RFC 6121 §4.3.1).
	if got := e.presences(a1); !slices.Equal(got, []string{"available " + a2.String(), "available " + b.String()}) {
		t.Errorf("a1 got %v", got)
	}

	// Subsequent presence: broadcast again, no probes.
	e.r.Reset()
	e.send("", a2, jid.JID{}, "<show>away</show>")
	if got := e.presences(b); !slices.Equal(got, []string{"available " + a2.String()}) {
		t.Errorf("bob got %v", got)
	}
	for _, s := range e.r.Routed() {
		if s.St.Type == typeProbe {
			t.Errorf("probe on subsequent presence to %s", s.To)
		}
	}
	if got := e.presences(a1); !slices.Equal(got, []string{"available " + a2.String()}) {
		t.Errorf("a1 got %v", got)
	}

	// Unavailable: subscribers and own resources are told; the session is
	// recorded as unavailable.
	e.r.Reset()
	e.send(typeUnavailable, a2, jid.JID{}, "<status>bye</status>")
	if got := e.presences(b); !slices.Equal(got, []string{"unavailable " + a2.String()}) {
		t.Errorf("bob got %v", got)
	}
	if r := e.r.RoutedTo(juliet); len(r) != 1 || r[0].Type != typeUnavailable || string(r[0].Inner) != "<status>bye</status>" {
		t.Errorf("routed to juliet: %+v", r)
	}
	if got := e.presences(a1); !slices.Equal(got, []string{"unavailable " + a2.String()}) {
		t.Errorf("a1 got %v", got)
	}
	for _, s := range e.r.Sessions(alice) {
		if s.JID().Equal(a2) && s.Available() {
			t.Errorf("a2 still available")
		}
	}
}

func TestInboundProbe(t *testing.T) {
	e := newEnv(t)
	e.store.Put(alice, roster.Item{Contact: juliet.String(), Subscription: roster.SubFrom, InRoster: true})
	e.store.Put(alice, roster.Item{Contact: bob.String(), Subscription: roster.SubTo, InRoster: true})
	probe := func(from jid.JID) {
		e.r.Reset()
		e.m.InboundPresence(t.Context(), presence(typeProbe, from, alice, ""))
	}

	// Subscriber, nobody online: unavailable from the bare JID.
	probe(juliet)
	if got := e.routedPresences(juliet); !slices.Equal(got, []string{"unavailable " + alice.String()}) {
		t.Errorf("offline answer: %v", got)
	}
	// Not a subscriber (to only, or unknown): unsubscribed, no presence.
	probe(bob)
	if got := e.routedPresences(bob); !slices.Equal(got, []string{"unsubscribed " + alice.String()}) {
		t.Errorf("answer to bob: %v", got)
	}
	romeo := jid.MustParse("romeo@montague.example")
	probe(romeo)
	if got := e.routedPresences(romeo); !slices.Equal(got, []string{"unsubscribed " + alice.String()}) {
		t.Errorf("answer to stranger: %v", got)
	}

	// Two resources, one available: its presence, from its full JID.
	a1, a2 := full(alice, "phone"), full(alice, "laptop")
	e.r.Bind(a1)
	e.r.Bind(a2)
	e.send("", a1, jid.JID{}, "<show>dnd</show>")
	probe(juliet)
	r := e.r.RoutedTo(juliet)
	if len(r) != 1 || !r[0].From.Equal(a1) || r[0].Type != "" || string(r[0].Inner) != "<show>dnd</show>" {
		t.Fatalf("online answer: %+v", r)
	}
	e.send("", a2, jid.JID{}, "")
	probe(juliet)
	if got := e.routedPresences(juliet); len(got) != 2 {
		t.Errorf("two resources: %v", got)
	}
	// A probe to a full JID is answered as one to the bare JID.
	e.r.Reset()
	e.m.InboundPresence(t.Context(), presence(typeProbe, juliet, a1, ""))
	if got := e.routedPresences(juliet); len(got) != 2 {
		t.Errorf("probe to full JID: %v", got)
	}
}

func TestInboundPresenceAddressing(t *testing.T) {
	e := newEnv(t)
	a1, a2, a3 := full(alice, "phone"), full(alice, "laptop"), full(alice, "idle")
	e.r.Bind(a1)
	e.r.Bind(a2)
	e.r.Bind(a3) // bound, never available
	e.send("", a1, jid.JID{}, "")
	e.send("", a2, jid.JID{}, "")
	jb := full(juliet, "balcony")

	e.r.Reset()
	e.m.InboundPresence(t.Context(), presence("", jb, alice, ""))
	for _, tc := range []struct {
		f    jid.JID
		want int
	}{{a1, 1}, {a2, 1}, {a3, 0}} {
		if got := len(e.r.DeliveredTo(tc.f)); got != tc.want {
			t.Errorf("to bare JID: %s got %d", tc.f, got)
		}
	}
	e.r.Reset()
	e.m.InboundPresence(t.Context(), presence(typeUnavailable, jb, a3, ""))
	if len(e.r.DeliveredTo(a3)) != 1 || len(e.r.DeliveredTo(a1)) != 0 || len(e.r.DeliveredTo(a2)) != 0 {
		t.Errorf("to full JID: %+v", e.r.Delivered())
	}
	e.r.Reset()
	e.m.InboundPresence(t.Context(), presence("", jb, full(alice, "gone"), ""))
	if len(e.r.Delivered()) != 0 {
		t.Errorf("to missing resource: %+v", e.r.Delivered())
	}
}

func TestDirectedPresence(t *testing.T) {
	e := newEnv(t)
	e.seedMutual(alice, bob)
	a, b := full(alice, "phone"), full(bob, "phone")
	e.login(b)
	e.login(a)
	romeo := jid.MustParse("romeo@montague.example")
	jb := full(juliet, "balcony")

	e.r.Reset()
	e.send("", a, jb, "<show>chat</show>")
	e.send("", a, romeo, "")
	e.send("", a, bob, "") // a subscriber: must not get two unavailables
	if r := e.r.RoutedTo(jb); len(r) != 1 || !r[0].From.Equal(a) || string(r[0].Inner) != "<show>chat</show>" {
		t.Fatalf("directed to juliet: %+v", r)
	}
	// Directed unavailable to romeo: routed, and romeo is forgotten.
	e.send(typeUnavailable, a, romeo, "")
	if got := e.routedPresences(romeo); !slices.Equal(got, []string{"available " + a.String(), "unavailable " + a.String()}) {
		t.Errorf("romeo: %v", got)
	}

	e.r.Reset()
	e.send(typeUnavailable, a, jid.JID{}, "")
	if got := e.routedPresences(jb); !slices.Equal(got, []string{"unavailable " + a.String()}) {
		t.Errorf("juliet after broadcast unavailable: %v", got)
	}
	if got := e.routedPresences(romeo); len(got) != 0 {
		t.Errorf("romeo after broadcast unavailable: %v", got)
	}
	if got := e.routedPresences(bob); !slices.Equal(got, []string{"unavailable " + a.String()}) {
		t.Errorf("bob: %v", got)
	}

	// The list was used up: a second unavailable does not repeat it.
	e.r.Reset()
	e.send(typeUnavailable, a, jid.JID{}, "")
	if got := e.routedPresences(jb); len(got) != 0 {
		t.Errorf("juliet told twice: %v", got)
	}
}

func TestSessionClosed(t *testing.T) {
	e := newEnv(t)
	e.seedMutual(alice, bob)
	a1, a2, b := full(alice, "phone"), full(alice, "laptop"), full(bob, "phone")
	e.login(b)
	e.login(a1)
	e.login(a2)
	jb := full(juliet, "balcony")
	e.send("", a1, jb, "")

	// a1 goes away without unavailable presence.
	e.r.Reset()
	info := e.r.Unbind(a1)
	e.m.SessionClosed(t.Context(), info)
	if got := e.presences(b); !slices.Equal(got, []string{"unavailable " + a1.String()}) {
		t.Errorf("bob: %v", got)
	}
	if got := e.presences(a2); !slices.Equal(got, []string{"unavailable " + a1.String()}) {
		t.Errorf("a2: %v", got)
	}
	if got := e.routedPresences(jb); !slices.Equal(got, []string{"unavailable " + a1.String()}) {
		t.Errorf("juliet: %v", got)
	}

	// A session that never became available only owes its directed
	// presence recipients.
	a3 := full(alice, "shy")
	e.r.Bind(a3)
	e.send("", a3, jb, "")
	e.r.Reset()
	s3 := e.r.Unbind(a3)
	e.m.SessionClosed(t.Context(), s3)
	if got := e.routedPresences(jb); !slices.Equal(got, []string{"unavailable " + a3.String()}) {
		t.Errorf("juliet: %v", got)
	}
	if got := e.presences(b); len(got) != 0 {
		t.Errorf("bob told about a session that was never available: %v", got)
	}
	// Forgotten: closing again sends nothing.
	e.r.Reset()
	e.m.SessionClosed(t.Context(), s3)
	if len(e.r.Routed()) != 0 {
		t.Errorf("second close: %+v", e.r.Routed())
	}
}
