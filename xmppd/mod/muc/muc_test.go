package muc_test

import (
	"fmt"
	"strings"
	"testing"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd/internal/servertest"
	"dialtone/xmppd/mod/muc"
	"dialtone/xmppd/router"
)

const room = "team@groups.localhost"

type env struct {
	t     *testing.T
	srv   *servertest.Server
	m     *muc.Module
	store *memStore
}

// start runs a server with the group chat module on store; cfg, if not
// nil, sets the module's fields.
func start(t *testing.T, store *memStore, cfg func(m *muc.Module)) *env {
	t.Helper()
	e := &env{t: t, store: store}
	e.srv = servertest.Start(t, servertest.With(directed{}, router.ModuleFunc(func(h *router.Hooks) error {
		e.m = muc.New(h.Router(), store)
		if cfg != nil {
			cfg(e.m)
		}
		return e.m.Register(h)
	})))
	return e
}

// number is the n-th test number.
func number(n int) string { return fmt.Sprintf("+8210123456%02d", n) }

// login makes the account of number n (once per server) and logs a session in, available.
func (e *env) login(n int, res string) *xmpptest.Client {
	e.t.Helper()
	return e.loginWith(n, res)
}

func isPresenceFrom(from string) func(xmpptest.Elem) bool {
	return func(e xmpptest.Elem) bool { return e.XMLName.Local == "presence" && e.Attr("from") == from }
}

func hasCode(e xmpptest.Elem, code int) bool {
	return strings.Contains(e.Inner, fmt.Sprintf(`code="%d"`, code))
}

func join(c *xmpptest.Client, nick string) {
	c.Send(`<presence to='` + room + `/` + nick + `'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
}

// joined joins and reads up to the subject, which ends a join; it returns
// the self-presence.
func joined(t *testing.T, c *xmpptest.Client, nick string) xmpptest.Elem {
	t.Helper()
	join(c, nick)
	self := c.Expect("self-presence", isPresenceFrom(room+"/"+nick))
	if self.Attr("type") == "error" || !hasCode(self, 110) {
		t.Fatalf("join as %s: %v", nick, self)
	}
	c.Expect("subject", func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "<subject") })
	return self
}

func iq(c *xmpptest.Client, id, typ, to, payload string) xmpptest.Elem {
	c.Send(`<iq id='` + id + `' type='` + typ + `' to='` + to + `'>` + payload + `</iq>`)
	return c.Expect("answer to "+id, func(e xmpptest.Elem) bool { return e.XMLName.Local == "iq" && e.Attr("id") == id })
}

func instant(t *testing.T, c *xmpptest.Client) {
	t.Helper()
	if r := iq(c, "cfg", "set", room, `<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>`); r.Attr("type") != "result" {
		t.Fatalf("instant room: %v", r)
	}
}

func configure(t *testing.T, c *xmpptest.Client, fields map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString(`<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>`)
	b.WriteString(`<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>`)
	for k, v := range fields {
		fmt.Fprintf(&b, `<field var='muc#roomconfig_%s'><value>%s</value></field>`, k, v)
	}
	b.WriteString(`</x></query>`)
	if r := iq(c, "cfg", "set", room, b.String()); r.Attr("type") != "result" {
		t.Fatalf("configure: %v", r)
	}
}

func groupchat(c *xmpptest.Client, body string) {
	c.Send(`<message to='` + room + `' type='groupchat' id='m-` + body + `'><body>` + body + `</body></message>`)
}

func expectBody(t *testing.T, c *xmpptest.Client, from, body string) xmpptest.Elem {
	t.Helper()
	return c.Expect("message "+body, func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "message" && e.Attr("from") == from && strings.Contains(e.Inner, "<body>"+body+"</body>")
	})
}

func expectError(t *testing.T, c *xmpptest.Client, kind, cond string) xmpptest.Elem {
	t.Helper()
	e := c.Expect(kind+" error", func(e xmpptest.Elem) bool { return e.XMLName.Local == kind && e.Attr("type") == "error" })
	if !strings.Contains(e.Inner, "<"+cond) {
		t.Fatalf("want %s, got %v", cond, e)
	}
	return e
}

func TestCreateConfigureJoinTalkLeave(t *testing.T) {
	e := start(t, newMemStore(), nil)
	alice, bob := e.login(1, "phone"), e.login(2, "phone")

	join(alice, "alice")
	self := alice.Expect("self-presence", isPresenceFrom(room+"/alice"))
	if !hasCode(self, 110) || !hasCode(self, 201) || !strings.Contains(self.Inner, `affiliation="owner"`) || !strings.Contains(self.Inner, `role="moderator"`) {
		t.Fatalf("creator's presence: %v", self)
	}
	alice.Expect("subject", func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "<subject") })

	// Locked until configured: nobody else gets in.
	join(bob, "bob")
	expectError(t, bob, "presence", "item-not-found")

	form := iq(alice, "form", "get", room, `<query xmlns='http://jabber.org/protocol/muc#owner'/>`)
	for _, v := range []string{"roomname", "roomdesc", "persistentroom", "membersonly", "moderatedroom", "roomsecret", "maxusers", "whois", "mam", "allowinvites", "changesubject"} {
		if !strings.Contains(form.Inner, "muc#roomconfig_"+v) {
			t.Errorf("the form has no %s: %v", v, form)
		}
	}
	instant(t, alice)

	self = joined(t, bob, "bob")
	if strings.Contains(self.Inner, `code="201"`) || !strings.Contains(self.Inner, `role="participant"`) {
		t.Fatalf("bob's presence: %v", self)
	}
	alice.Expect("bob's presence", isPresenceFrom(room+"/bob"))

	groupchat(bob, "hello")
	for _, c := range []*xmpptest.Client{alice, bob} {
		m := expectBody(t, c, room+"/bob", "hello")
		if m.Attr("type") != "groupchat" || !strings.Contains(m.Inner, `urn:xmpp:sid:0`) || !strings.Contains(m.Inner, `by="`+room+`"`) {
			t.Fatalf("groupchat: %v", m)
		}
	}

	// Subject by a participant: not allowed by default; by the owner, yes.
	bob.Send(`<message to='` + room + `' type='groupchat' id='s1'><subject>new</subject></message>`)
	expectError(t, bob, "message", "forbidden")
	alice.Send(`<message to='` + room + `' type='groupchat'><subject>Plans</subject></message>`)
	bob.Expect("subject", func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "<subject>Plans</subject>") })

	bob.Send(`<presence to='` + room + `/bob' type='unavailable'/>`)
	left := alice.Expect("bob left", isPresenceFrom(room+"/bob"))
	if left.Attr("type") != "unavailable" {
		t.Fatalf("leave: %v", left)
	}
	self = bob.Expect("own leave", isPresenceFrom(room+"/bob"))
	if self.Attr("type") != "unavailable" || !hasCode(self, 110) {
		t.Fatalf("own leave: %v", self)
	}
	// A message from someone not in the room is refused.
	groupchat(bob, "ghost")
	expectError(t, bob, "message", "not-acceptable")
}
