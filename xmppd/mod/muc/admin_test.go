package muc_test

import (
	"strings"
	"testing"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd/mod/muc"
)

const adminNS = `http://jabber.org/protocol/muc#admin`

// setup makes room with alice (number 1) as owner of an instant room, and
// joins the others in order with nicks n2, n3, …
func setup(t *testing.T, e *env, configureFields map[string]string, others ...int) (*xmpptest.Client, []*xmpptest.Client) {
	t.Helper()
	alice := e.login(1, "phone")
	join(alice, "alice")
	alice.Expect("subject", func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "<subject") })
	if configureFields == nil {
		instant(t, alice)
	} else {
		configure(t, alice, configureFields)
	}
	var cs []*xmpptest.Client
	for _, n := range others {
		c := e.login(n, "phone")
		joined(t, c, nickOf(n))
		alice.Expect("presence of "+nickOf(n), isPresenceFrom(room+"/"+nickOf(n)))
		cs = append(cs, c)
	}
	return alice, cs
}

func nickOf(n int) string { return "n" + number(n)[len(number(n))-2:] }

func TestNickChangeAndConflict(t *testing.T) {
	e := start(t, newMemStore(), nil)
	alice, cs := setup(t, e, nil, 2)
	bob := cs[0]
	join(bob, "alice")
	expectError(t, bob, "presence", "conflict")

	join(bob, "bobby")
	old := alice.Expect("old nick", isPresenceFrom(room+"/"+nickOf(2)))
	if old.Attr("type") != "unavailable" || !hasCode(old, 303) || !strings.Contains(old.Inner, `nick="bobby"`) {
		t.Fatalf("nick change: %v", old)
	}
	alice.Expect("new nick", isPresenceFrom(room+"/bobby"))
	groupchat(bob, "renamed")
	expectBody(t, alice, room+"/bobby", "renamed")
}

func TestKickVoiceBan(t *testing.T) {
	e := start(t, newMemStore(), nil)
	alice, cs := setup(t, e, map[string]string{"moderatedroom": "1"}, 2, 3)
	bob, carol := cs[0], cs[1]

	// Moderated: without affiliation, a visitor.
	groupchat(bob, "may I")
	expectError(t, bob, "message", "forbidden")
	if r := iq(bob, "v0", "set", room, `<query xmlns='`+adminNS+`'><item nick='`+nickOf(3)+`' role='none'/></query>`); r.Attr("type") != "error" {
		t.Fatalf("a visitor kicked: %v", r)
	}
	if r := iq(alice, "v1", "set", room, `<query xmlns='`+adminNS+`'><item nick='`+nickOf(2)+`' role='participant'/></query>`); r.Attr("type") != "result" {
		t.Fatalf("voice: %v", r)
	}
	p := bob.Expect("voice", isPresenceFrom(room+"/"+nickOf(2)))
	if !strings.Contains(p.Inner, `role="participant"`) {
		t.Fatalf("voice presence: %v", p)
	}
	groupchat(bob, "thanks")
	expectBody(t, alice, room+"/"+nickOf(2), "thanks")

	// Kick carol: she hears 307, the others see her go.
	if r := iq(alice, "k", "set", room, `<query xmlns='`+adminNS+`'><item nick='`+nickOf(3)+`' role='none'><reason>noise</reason></item></query>`); r.Attr("type") != "result" {
		t.Fatalf("kick: %v", r)
	}
	k := carol.Expect("kicked", isPresenceFrom(room+"/"+nickOf(3)))
	if k.Attr("type") != "unavailable" || !hasCode(k, 307) || !hasCode(k, 110) || !strings.Contains(k.Inner, "noise") {
		t.Fatalf("kick presence: %v", k)
	}
	bob.Expect("carol kicked", func(x xmpptest.Elem) bool {
		return isPresenceFrom(room+"/"+nickOf(3))(x) && hasCode(x, 307)
	})

	// Ban bob: 301, and he cannot come back.
	if r := iq(alice, "b", "set", room, `<query xmlns='`+adminNS+`'><item jid='`+number(2)+`@localhost' affiliation='outcast'/></query>`); r.Attr("type") != "result" {
		t.Fatalf("ban: %v", r)
	}
	b := bob.Expect("banned", isPresenceFrom(room+"/"+nickOf(2)))
	if !hasCode(b, 301) {
		t.Fatalf("ban presence: %v", b)
	}
	join(bob, "again")
	expectError(t, bob, "presence", "forbidden")
	list := iq(alice, "l", "get", room, `<query xmlns='`+adminNS+`'><item affiliation='outcast'/></query>`)
	if !strings.Contains(list.Inner, number(2)+"@localhost") {
		t.Fatalf("outcast list: %v", list)
	}
	// The last owner stays.
	if r := iq(alice, "o", "set", room, `<query xmlns='`+adminNS+`'><item jid='`+number(1)+`@localhost' affiliation='admin'/></query>`); !strings.Contains(r.Inner, "conflict") {
		t.Fatalf("last owner removed: %v", r)
	}
}

func TestMembersOnlyAndMultipleDevices(t *testing.T) {
	e := start(t, newMemStore(), nil)
	alice, _ := setup(t, e, map[string]string{"membersonly": "1", "persistentroom": "1"})
	bob := e.login(2, "phone")
	join(bob, "bob")
	expectError(t, bob, "presence", "registration-required")
	if r := iq(alice, "m", "set", room, `<query xmlns='`+adminNS+`'><item jid='`+number(2)+`@localhost' affiliation='member'/></query>`); r.Attr("type") != "result" {
		t.Fatalf("member: %v", r)
	}
	joined(t, bob, "bob")
	alice.Expect("bob in", isPresenceFrom(room+"/bob"))
	// A second device of bob joins under the same nick: once each.
	laptop := e.login(2, "laptop")
	joined(t, laptop, "bob")
	groupchat(alice, "both")
	expectBody(t, bob, room+"/alice", "both")
	expectBody(t, laptop, room+"/alice", "both")
	// The phone leaves; the laptop stays, and nobody else sees bob go.
	bob.Send(`<presence to='` + room + `/bob' type='unavailable'/>`)
	groupchat(alice, "still")
	expectBody(t, laptop, room+"/alice", "still")
	x := alice.Expect("own echo", func(x xmpptest.Elem) bool {
		return x.XMLName.Local == "presence" || strings.Contains(x.Inner, "<body>still</body>")
	})
	if x.XMLName.Local == "presence" {
		t.Fatalf("bob's phone leaving was seen: %v", x)
	}
	members := iq(bob, "ml", "get", room, `<query xmlns='`+adminNS+`'><item affiliation='member'/></query>`)
	if members.Attr("type") != "result" || !strings.Contains(members.Inner, number(2)+"@localhost") {
		t.Fatalf("member list for a member: %v", members)
	}
	// Revoking membership removes him (321).
	iq(alice, "r", "set", room, `<query xmlns='`+adminNS+`'><item jid='`+number(2)+`@localhost' affiliation='none'/></query>`)
	gone := laptop.Expect("removed", isPresenceFrom(room+"/bob"))
	if !hasCode(gone, 321) {
		t.Fatalf("removal: %v", gone)
	}
}

func TestPersistenceAcrossRestart(t *testing.T) {
	store := newMemStore()
	e := start(t, store, nil)
	alice, _ := setup(t, e, map[string]string{"persistentroom": "1", "roomname": "Team", "membersonly": "1"})
	iq(alice, "m", "set", room, `<query xmlns='`+adminNS+`'><item jid='`+number(2)+`@localhost' affiliation='member'/></query>`)
	groupchat(alice, "before")
	expectBody(t, alice, room+"/alice", "before")
	alice.Send(`<presence to='` + room + `/alice' type='unavailable'/>`)
	alice.Expect("left", isPresenceFrom(room+"/alice"))

	e2 := start(t, store, nil)
	bob := e2.login(2, "phone")
	info := iq(bob, "i", "get", room, `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
	for _, f := range []string{`name="Team"`, "muc_persistent", "muc_membersonly", "urn:xmpp:mam:2"} {
		if !strings.Contains(info.Inner, f) {
			t.Fatalf("disco#info after restart lacks %s: %v", f, info)
		}
	}
	// The discussion history survives too (it is kept in memory, refilled
	// from the room's archive).
	join(bob, "bob")
	bob.Expect("self-presence", isPresenceFrom(room+"/bob"))
	h := bob.Expect("history", func(x xmpptest.Elem) bool { return x.XMLName.Local == "message" })
	if !strings.Contains(h.Inner, "<body>before</body>") || !strings.Contains(h.Inner, "urn:xmpp:delay") || h.Attr("from") != room+"/alice" {
		t.Fatalf("history after restart: %v", h)
	}
	bob.Expect("subject", func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "<subject") })
	bob.Send(`<iq type='set' id='q' to='` + room + `'><query xmlns='urn:xmpp:mam:2' queryid='q1'/></iq>`)
	r := bob.Expect("archived message", func(x xmpptest.Elem) bool { return strings.Contains(x.Inner, "urn:xmpp:mam:2") })
	if !strings.Contains(r.Inner, "<body>before</body>") {
		t.Fatalf("archive after restart: %v", r)
	}
}

func TestLimits(t *testing.T) {
	e := start(t, newMemStore(), func(m *muc.Module) { m.MaxOccupants, m.RoomsPerAccount = 2, 1 })
	alice, _ := setup(t, e, nil, 2)
	carol := e.login(3, "phone")
	join(carol, "carol")
	expectError(t, carol, "presence", "service-unavailable")
	alice.Send(`<presence to='other@groups.localhost/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	p := alice.Expect("second room", isPresenceFrom("other@groups.localhost/alice"))
	if p.Attr("type") != "error" || !strings.Contains(p.Inner, "not-allowed") {
		t.Fatalf("second room of one owner: %v", p)
	}
}
