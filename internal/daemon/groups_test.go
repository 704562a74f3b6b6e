package daemon_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"dialtone/auth"
	"dialtone/internal/xmpptest"
)

const (
	nsMUC      = "http://jabber.org/protocol/muc"
	nsMUCUser  = nsMUC + "#user"
	nsMUCOwner = nsMUC + "#owner"
)

var invitationSMS = regexp.MustCompile(`^(\+\d+) added you to the group "(.*)" on ` + domain + `\. Log in with your phone number and password ([A-Za-z0-9]+), or tap ` + loginLinkRE + `$`)

// TestGroups runs group chats on each store: a members-only group,
// inviting a number that never used the service (its SMS, its account,
// the invitation delivered at login), the caps, and the group, its
// members and its archive after a restart.
func TestGroups(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			rcv := newSMSReceiver(t)
			s := startDaemon(t, noticeEnv(t, b.url(t), map[string]string{
				"XMPPD_SMS_GATEWAY":                       "webhook",
				"XMPPD_SMS_WEBHOOK_URL":                   rcv.URL,
				"XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY": "1",
			}))
			testGroupInvitation(t, s, rcv)
		})
	}
}

func mucJoin(t *testing.T, c *xmpptest.Client, roomNick string) xmpptest.Elem {
	t.Helper()
	c.Send(`<presence to='` + roomNick + `'><x xmlns='` + nsMUC + `'/></presence>`)
	self, _ := until(c, "self-presence in "+roomNick, func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "presence" && e.Attr("from") == roomNick
	})
	if self.Attr("type") == "" {
		until(c, "subject", func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "<subject") })
	}
	return self
}

func testGroupInvitation(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	const room = "family@groups." + domain
	alice := s.newUser(t)
	a := s.online(t, alice, "phone")
	if self := mucJoin(t, a, room+"/alice"); !strings.Contains(self.Inner, `code="201"`) {
		t.Fatalf("room not made: %v", self)
	}
	r, _ := iq(a, "set", room, `<query xmlns='`+nsMUCOwner+`'><x xmlns='jabber:x:data' type='submit'>`+
		`<field var='muc#roomconfig_roomname'><value>Family</value></field>`+
		`<field var='muc#roomconfig_persistentroom'><value>1</value></field>`+
		`<field var='muc#roomconfig_membersonly'><value>1</value></field></x></query>`)
	mustResult(t, r)

	// A number that never used the service: account made, SMS sent.
	latent := s.newNumber()
	a.Send(`<message to='` + room + `'><x xmlns='` + nsMUCUser + `'><invite to='` + latent + `@` + domain + `'/></x></message>`)
	quiet(t, a, "an invitation to a new number")
	acct, err := s.d.DB.Account(context.Background(), auth.Number(latent))
	if err != nil || acct.State != auth.StateUnclaimed {
		t.Fatalf("account of the invitee: %+v %v", acct, err)
	}
	m := rcv.Wait(t, latent, 1, noticeTimeout)
	got := invitationSMS.FindStringSubmatch(m.Text)
	if got == nil || got[1] != alice.num || got[2] != "Family" || m.Purpose != "notice" {
		t.Fatalf("invitation SMS %+v", m)
	}
	a.Send(`<message to='` + room + `' type='groupchat'><body>welcome</body></message>`)
	until(a, "own message", func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "welcome") })

	// An invalid number: item-not-found. Over the new-numbers cap:
	// policy-violation saying no SMS was sent.
	id := nextID("inv")
	a.Send(`<message id='` + id + `' to='` + room + `'><x xmlns='` + nsMUCUser + `'><invite to='12@` + domain + `'/></x></message>`)
	e, _ := until(a, "error", func(e xmpptest.Elem) bool { return e.Attr("id") == id })
	wantError(t, e, "cancel", "item-not-found")
	other := s.newNumber()
	id = nextID("inv")
	a.Send(`<message id='` + id + `' to='` + room + `'><x xmlns='` + nsMUCUser + `'><invite to='` + other + `@` + domain + `'/></x></message>`)
	e, _ = until(a, "error", func(e xmpptest.Elem) bool { return e.Attr("id") == id })
	wantError(t, e, "cancel", "policy-violation")
	if !strings.Contains(e.Inner, "no SMS was sent") {
		t.Fatalf("over the cap: %v", e)
	}

	// The restart keeps the group, its members and its archive.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	s.restart(t)
	b := s.login(t, user{num: latent, pass: got[3]}, "phone")
	b.Send(`<presence/>`)
	inv, _ := until(b, "the kept invitation", func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "message" && e.Attr("from") == room
	})
	if !strings.Contains(inv.Inner, `<invite from="`+alice.num+`@`+domain+`"`) {
		t.Fatalf("invitation %v", inv)
	}
	if self := mucJoin(t, b, room+"/bob"); self.Attr("type") == "error" || !strings.Contains(self.Inner, `affiliation="member"`) {
		t.Fatalf("the invitee joins: %v", self)
	}
	res, before := iq(b, "set", room, `<query xmlns='urn:xmpp:mam:2' queryid='q'/>`)
	mustResult(t, res)
	if _, ok := find(before, func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "<body>welcome</body>") }); !ok {
		t.Fatalf("archive after restart: %v", before)
	}
}
