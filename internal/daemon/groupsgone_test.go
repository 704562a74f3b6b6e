package daemon_test

import (
	"strings"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/internal/admin"
	"dialtone/internal/xmpptest"
)

// A number's group memberships (and kept invitations) go with its
// account: a recycled number's new owner, or whoever gets a released or
// deleted number next, does not inherit its groups. Both stores.
func TestGroupsGoWithTheAccount(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { testGroupsGoWithTheAccount(t, b.url(t)) })
	}
}

func testGroupsGoWithTheAccount(t *testing.T, dbURL string) {
	s := startDaemon(t, noticeEnv(t, dbURL, map[string]string{
		"XMPPD_RECYCLE_AFTER":         "1h",
		"XMPPD_UNCLAIMED_ACCOUNT_TTL": "1s", // swept every 250ms
	}))
	const room = "club@groups." + domain
	owner := s.newUser(t)
	a := s.online(t, owner, "phone")
	if self := mucJoin(t, a, room+"/owner"); !strings.Contains(self.Inner, `code="201"`) {
		t.Fatalf("room not made: %v", self)
	}
	r, _ := iq(a, "set", room, `<query xmlns='`+nsMUCOwner+`'><x xmlns='jabber:x:data' type='submit'>`+
		`<field var='muc#roomconfig_persistentroom'><value>1</value></field>`+
		`<field var='muc#roomconfig_membersonly'><value>1</value></field></x></query>`)
	mustResult(t, r)
	members := func() string {
		t.Helper()
		r, _ := iq(a, "get", room, `<query xmlns='`+nsMUC+`#admin'><item affiliation='member'/></query>`)
		mustResult(t, r)
		return r.Inner
	}
	stored := func(num string) bool {
		t.Helper()
		affs, err := s.d.DB.MUCAffiliations(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, af := range affs {
			if af.JID == num+"@"+domain {
				return true
			}
		}
		return false
	}
	member := func(c *xmpptest.Client, num string) {
		t.Helper()
		r, _ := iq(c, "set", room, `<query xmlns='`+nsMUC+`#admin'><item affiliation='member' jid='`+num+`@`+domain+`'/></query>`)
		mustResult(t, r)
		if !strings.Contains(members(), num+"@") || !stored(num) {
			t.Fatalf("%s is not a member: %s", num, members())
		}
	}
	gone := func(num string) func() bool {
		return func() bool { return !strings.Contains(members(), num+"@") && !stored(num) }
	}

	t.Run("recycled", func(t *testing.T) {
		u := s.newUser(t)
		member(a, u.num)
		if err := s.d.DB.RecordLogin(t.Context(), auth.Number(u.num), time.Now().Add(-2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		postPassword(t, s, u.num)
		// The recycle is done before the new password is texted.
		if !gone(u.num)() {
			t.Errorf("the old owner's membership is still there after the recycle: %s", members())
		}
	})

	t.Run("released", func(t *testing.T) {
		// Invited while unused: a member, with a kept invitation.
		num := s.newNumber()
		a.Send(`<message to='` + room + `'><x xmlns='` + nsMUCUser + `'><invite to='` + num + `@` + domain + `'/></x></message>`)
		drain(a)
		if !strings.Contains(members(), num+"@") {
			t.Fatalf("the invited number is not a member: %s", members())
		}
		waitForLong(t, 20*time.Second, "the released number's membership to go", gone(num))
		if invs, err := s.d.DB.MUCInvitations(t.Context(), num); err != nil || len(invs) != 0 {
			t.Errorf("invitations of the released number: %v %v", invs, err)
		}
	})

	t.Run("deleted", func(t *testing.T) {
		// What xmppctl account delete does: the store, then the server.
		u := s.newUser(t)
		member(a, u.num)
		if err := s.d.DB.DeleteAccount(t.Context(), auth.Number(u.num)); err != nil {
			t.Fatal(err)
		}
		if err := admin.Forget(t.Context(), s.env["XMPPD_ADMIN_SOCKET"], u.num); err != nil {
			t.Fatal(err)
		}
		if !gone(u.num)() {
			t.Errorf("the deleted account's membership is still there: %s", members())
		}
	})
}
