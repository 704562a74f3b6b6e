package daemon_test

import (
	"strings"
	"testing"
)

const nsLegacyBM = "storage:bookmarks"

// XEP-0402 with #compat and #compat-pep: bookmarks set through any of
// XEP-0402 items, XEP-0048 on private PEP and XEP-0049 private XML show
// in the other two; a replacement list changes only the rooms that
// changed.
func testBookmarks(t *testing.T, s *daemonUnderTest) {
	a := s.newUser(t)
	a0 := s.online(t, a, "setup")
	a1 := s.capsOnline(t, a, "phone", nodeBM2, nsLegacyBM)

	info, _ := iq(a0, "get", a.bare(), `<query xmlns='`+nsDiscoInf+`'/>`)
	for _, f := range []string{nodeBM2 + "#compat-pep", nodeBM2 + "#compat"} {
		if !strings.Contains(info.Inner, `"`+f+`"`) {
			t.Errorf("account disco#info lacks %s: %v", f, info)
		}
	}
	private := func() string {
		t.Helper()
		r, _ := iq(a0, "get", "", `<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>`)
		mustResult(t, r)
		return r.Inner
	}
	legacyPEP := func() string {
		t.Helper()
		r := items(a0, "", nsLegacyBM, "")
		mustResult(t, r)
		return r.Inner
	}
	bmOptions := field("pubsub#persist_items", "true") + field("pubsub#max_items", "max") + field("pubsub#send_last_published_item", "never") + field("pubsub#access_model", "whitelist")

	// XEP-0402 to both older forms.
	mustResult(t, publish(a0, nodeBM2, "team@groups.example", `<conference xmlns='urn:xmpp:bookmarks:1' name='Team' autojoin='true'><nick>Al</nick><extensions><x xmlns='urn:x'/></extensions></conference>`, bmOptions))
	mustResult(t, publish(a0, nodeBM2, "club@groups.example", `<conference xmlns='urn:xmpp:bookmarks:1' name='Club'/>`, bmOptions))
	for where, got := range map[string]string{"private XML": private(), "private PEP": legacyPEP()} {
		for _, want := range []string{`<conference jid="team@groups.example" autojoin="true" name="Team"><nick>Al</nick></conference>`, `<conference jid="club@groups.example" autojoin="false" name="Club"/>`} {
			if !strings.Contains(got, want) {
				t.Errorf("%s lacks %s: %s", where, want, got)
			}
		}
	}
	drain(a1)

	// XEP-0049 to XEP-0402: team renamed, club removed, new added; a url kept.
	r, _ := iq(a0, "set", "", `<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>`+
		`<conference jid='team@groups.example' name='Team' autojoin='true'><nick>Al</nick></conference>`+
		`<conference jid='new@groups.example' name='New' autojoin='1'><password>pw</password></conference>`+
		`<url name='site' url='https://example.com/'/></storage></query>`)
	mustResult(t, r)
	got := items(a0, "", nodeBM2, "")
	mustResult(t, got)
	if strings.Contains(got.Inner, "club@") || !strings.Contains(got.Inner, `<item id="new@groups.example"><conference xmlns="urn:xmpp:bookmarks:1" autojoin="true" name="New"><password>pw</password></conference>`) ||
		!strings.Contains(got.Inner, `<extensions><x xmlns="urn:x"/></extensions>`) {
		t.Errorf("XEP-0402 items after a private XML list: %v", got)
	}
	evs := drain(a1)
	var changed, retracted, unchanged bool
	for _, e := range evs {
		changed = changed || isEvent(a.bare(), `id="new@groups.example"`)(e)
		retracted = retracted || isEvent(a.bare(), `<retract id="club@groups.example"`)(e)
		unchanged = unchanged || isEvent(a.bare(), `<item id="team@groups.example"`)(e)
	}
	if !changed || !retracted || unchanged {
		t.Errorf("notifications: new %v, retracted %v, unchanged team %v: %v", changed, retracted, unchanged, evs)
	}
	if got := legacyPEP(); !strings.Contains(got, "new@groups.example") || strings.Contains(got, "club@") {
		t.Errorf("private PEP after a private XML list: %s", got)
	}

	// A XEP-0402 change keeps the <url/> XEP-0402 has no place for.
	mustResult(t, publish(a0, nodeBM2, "more@groups.example", `<conference xmlns='urn:xmpp:bookmarks:1'/>`, bmOptions))
	if p := private(); !strings.Contains(p, `name="site" url="https://example.com/"`) || !strings.Contains(p, "more@") {
		t.Errorf("private XML after a XEP-0402 publish lost the url: %s", p)
	}

	// XEP-0048 on PEP to the others.
	mustResult(t, publish(a0, nsLegacyBM, "current", `<storage xmlns='storage:bookmarks'><conference jid='team@groups.example' name='Team 2' autojoin='true'/></storage>`, field("pubsub#access_model", "whitelist")))
	got = items(a0, "", nodeBM2, "")
	if strings.Contains(got.Inner, "new@") || strings.Contains(got.Inner, "more@") || !strings.Contains(got.Inner, `name="Team 2"`) {
		t.Errorf("XEP-0402 items after a private PEP list: %v", got)
	}
	if p := private(); !strings.Contains(p, `name="Team 2"`) || strings.Contains(p, "new@") {
		t.Errorf("private XML after a private PEP list: %s", p)
	}

	// Retracting the last XEP-0402 item empties the older lists.
	e, _ := iq(a0, "set", "", `<pubsub xmlns='`+nsPubsub+`'><retract node='`+nodeBM2+`' notify='true'><item id='team@groups.example'/></retract></pubsub>`)
	mustResult(t, e)
	if p := private(); strings.Contains(p, "<conference") {
		t.Errorf("private XML after the retraction: %s", p)
	}
	if p := legacyPEP(); strings.Contains(p, "<conference") {
		t.Errorf("private PEP after the retraction: %s", p)
	}
}
