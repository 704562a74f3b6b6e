package daemon_test

import (
	"strings"
	"testing"

	"dialtone/archive"
	"dialtone/auth"
	"dialtone/internal/xmpptest"
)

// testArchive: a message to an account without an available resource is
// stored offline and archived for both; the offline copy delivered at the
// next login carries the receiver's stanza-id, which is the archive id;
// the archive is advertised on the domain and on the account, and goes
// with the account's data.
func testArchive(t *testing.T, s *daemonUnderTest) {
	alice, bob := s.newUser(t), s.activeUser(t) // active: a notice keeps its password
	a := s.online(t, alice, "phone")
	a.Send(`<message type='chat' to='` + bob.bare() + `' id='arch1'><body>kept for later</body></message>`)
	a.Sync()

	b := s.login(t, bob, "phone")
	b.Send(`<presence/>`)
	e, _ := until(b, "the offline message", func(e xmpptest.Elem) bool { return e.XMLName.Local == "message" && e.Attr("id") == "arch1" })
	i := strings.Index(e.Inner, `<stanza-id xmlns="urn:xmpp:sid:0" by="`+bob.bare()+`" id="`)
	if i < 0 {
		t.Fatalf("offline copy without bob's stanza-id: %s", e.Inner)
	}
	rest := e.Inner[i+len(`<stanza-id xmlns="urn:xmpp:sid:0" by="`+bob.bare()+`" id="`):]
	sid := rest[:strings.IndexByte(rest, '"')]

	for _, c := range []*xmpptest.Client{a, b} {
		r, before := iq(c, "set", "", `<query xmlns='urn:xmpp:mam:2' queryid='q'/>`)
		mustResult(t, r)
		var results []string
		for _, m := range before {
			if strings.Contains(m.Inner, "urn:xmpp:mam:2") && strings.Contains(m.Inner, "kept for later") {
				results = append(results, m.Inner)
			}
		}
		if len(results) != 1 || !strings.Contains(r.Inner, `complete="true"`) {
			t.Fatalf("%s: archive %v, fin %s", c.JID, results, r.Inner)
		}
		if c == b && !strings.Contains(results[0], `id="`+sid+`"`) {
			t.Fatalf("bob's archive id is not the stanza-id %s: %s", sid, results[0])
		}
	}

	for _, to := range []string{domain, bob.bare()} {
		r, _ := iq(b, "get", to, `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
		for _, f := range []string{"urn:xmpp:mam:2", "urn:xmpp:mam:2#extended", "urn:xmpp:sid:0"} {
			if !strings.Contains(r.Inner, `"`+f+`"`) {
				t.Errorf("disco of %s lacks %s: %s", to, f, r.Inner)
			}
		}
	}

	if err := s.d.DB.WipeAccountData(t.Context(), auth.Number(bob.num)); err != nil {
		t.Fatal(err)
	}
	page, _, err := s.d.DB.QueryArchive(t.Context(), archive.Query{Owner: bob.num, Max: 10})
	if err != nil || len(page) != 0 {
		t.Fatalf("after the wipe: %d messages, %v", len(page), err)
	}
}
