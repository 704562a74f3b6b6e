package muc_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"dialtone/internal/xmpptest"
)

func TestHistoryAndArchive(t *testing.T) {
	e := start(t, newMemStore(), nil)
	alice, _ := setup(t, e, nil)
	for _, b := range []string{"one", "two", "three"} {
		groupchat(alice, b)
		expectBody(t, alice, room+"/alice", b)
	}
	// History on joining: the last two, stamped.
	bob := e.login(2, "phone")
	bob.Send(`<presence to='` + room + `/bob'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='2'/></x></presence>`)
	var got []string
	for {
		x := bob.Next()
		if strings.Contains(x.Inner, "<subject") {
			break
		}
		if x.XMLName.Local == "message" {
			if !strings.Contains(x.Inner, "urn:xmpp:delay") {
				t.Fatalf("history without delay: %v", x)
			}
			got = append(got, regexp.MustCompile(`<body>(\w+)</body>`).FindStringSubmatch(x.Inner)[1])
		}
	}
	if strings.Join(got, ",") != "two,three" {
		t.Fatalf("history: %v", got)
	}

	// The archive: every message, the stanza-ids as archive ids, paged.
	bob.Send(`<iq type='set' id='q1' to='` + room + `'><query xmlns='urn:xmpp:mam:2' queryid='x'><set xmlns='http://jabber.org/protocol/rsm'><max>2</max></set></query></iq>`)
	var ids []string
	for {
		x := bob.Next()
		if x.XMLName.Local == "iq" && x.Attr("id") == "q1" {
			if x.Attr("type") != "result" || strings.Contains(x.Inner, `complete="true"`) {
				t.Fatalf("fin of the first page: %v", x)
			}
			break
		}
		if x.XMLName.Local == "message" && strings.Contains(x.Inner, "urn:xmpp:mam:2") {
			if !strings.Contains(x.Inner, `queryid="x"`) || !strings.Contains(x.Inner, `from="`+room+`/alice"`) {
				t.Fatalf("result: %v", x)
			}
			ids = append(ids, regexp.MustCompile(` id="([^"]+)"`).FindStringSubmatch(x.Inner)[1])
		}
	}
	if len(ids) != 2 {
		t.Fatalf("first page: %v", ids)
	}
	fin := iq(bob, "q2", "set", room, `<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><after>`+ids[1]+`</after></set></query>`)
	if !strings.Contains(fin.Inner, `complete="true"`) {
		t.Fatalf("last page: %v", fin)
	}
	if r := iq(bob, "q3", "set", room, `<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><after>nope</after></set></query>`); !strings.Contains(r.Inner, "item-not-found") {
		t.Fatalf("unknown id: %v", r)
	}
}

func TestSelfPingPrivateDestroy(t *testing.T) {
	e := start(t, newMemStore(), nil)
	alice, cs := setup(t, e, nil, 2)
	bob := cs[0]
	if r := iq(bob, "p1", "get", room+"/"+nickOf(2), `<ping xmlns='urn:xmpp:ping'/>`); r.Attr("type") != "result" {
		t.Fatalf("self-ping while joined: %v", r)
	}
	carol := e.login(3, "phone")
	if r := iq(carol, "p2", "get", room+"/carol", `<ping xmlns='urn:xmpp:ping'/>`); !strings.Contains(r.Inner, "not-acceptable") {
		t.Fatalf("self-ping of a non-occupant: %v", r)
	}

	bob.Send(`<message to='` + room + `/alice' type='chat'><body>psst</body></message>`)
	pm := expectBody(t, alice, room+"/"+nickOf(2), "psst")
	if pm.Attr("type") != "chat" || !strings.Contains(pm.Inner, "muc#user") {
		t.Fatalf("private message: %v", pm)
	}
	carol.Send(`<message to='` + room + `/alice' type='chat'><body>hi</body></message>`)
	expectError(t, carol, "message", "not-acceptable")

	// vCard: owners set it, anyone reads it.
	if r := iq(bob, "v1", "set", room, `<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>AAAA</BINVAL></PHOTO></vCard>`); r.Attr("type") != "error" {
		t.Fatalf("vcard by a participant: %v", r)
	}
	if r := iq(alice, "v2", "set", room, `<vCard xmlns='vcard-temp'><PHOTO><TYPE>image/png</TYPE><BINVAL>AAAA</BINVAL></PHOTO></vCard>`); r.Attr("type") != "result" {
		t.Fatalf("vcard by the owner: %v", r)
	}
	if r := iq(carol, "v3", "get", room, `<vCard xmlns='vcard-temp'/>`); !strings.Contains(r.Inner, "AAAA") {
		t.Fatalf("vcard: %v", r)
	}

	if r := iq(bob, "d0", "set", room, `<query xmlns='http://jabber.org/protocol/muc#owner'><destroy/></query>`); !strings.Contains(r.Inner, "forbidden") {
		t.Fatalf("destroy by a participant: %v", r)
	}
	if r := iq(alice, "d1", "set", room, `<query xmlns='http://jabber.org/protocol/muc#owner'><destroy jid='new@groups.localhost'><reason>moved</reason></destroy></query>`); r.Attr("type") != "result" {
		t.Fatalf("destroy: %v", r)
	}
	d := bob.Expect("destroyed", func(x xmpptest.Elem) bool {
		return isPresenceFrom(room+"/"+nickOf(2))(x) && x.Attr("type") == "unavailable"
	})
	if !strings.Contains(d.Inner, `<destroy jid="new@groups.localhost"><reason>moved</reason>`) {
		t.Fatalf("destroy presence: %v", d)
	}
	if r := iq(carol, "i", "get", room, `<query xmlns='http://jabber.org/protocol/disco#info'/>`); !strings.Contains(r.Inner, "item-not-found") {
		t.Fatalf("destroyed room still there: %v", r)
	}
}

func TestDiscoAndMediatedInvitation(t *testing.T) {
	e := start(t, newMemStore(), nil)
	alice, _ := setup(t, e, map[string]string{"roomname": "Team", "publicroom": "1"})
	bob := e.login(2, "phone")
	items := iq(bob, "it", "get", "groups.localhost", `<query xmlns='http://jabber.org/protocol/disco#items'/>`)
	if !strings.Contains(items.Inner, `jid="`+room+`"`) {
		t.Fatalf("rooms: %v", items)
	}
	info := iq(bob, "in", "get", "groups.localhost", `<query xmlns='http://jabber.org/protocol/disco#info'/>`)
	if !strings.Contains(info.Inner, `category="conference"`) || !strings.Contains(info.Inner, `http://jabber.org/protocol/muc"`) {
		t.Fatalf("service info: %v", info)
	}
	alice.Send(`<message to='` + room + `'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='` + number(2) + `@localhost'><reason>join us</reason></invite></x></message>`)
	inv := bob.Expect("invitation", func(x xmpptest.Elem) bool { return x.XMLName.Local == "message" && x.Attr("from") == room })
	if !strings.Contains(inv.Inner, `<invite from="`+number(1)+`@localhost"><reason>join us</reason>`) {
		t.Fatalf("invitation: %v", inv)
	}
	alice.Send(`<message to='` + room + `'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='not-a-number@localhost'/></x></message>`)
	expectError(t, alice, "message", "item-not-found")
}

// A message the store could not take is archived when it can again.
func TestArchiveRetried(t *testing.T) {
	store := newMemStore()
	e := start(t, store, nil)
	alice, _ := setup(t, e, nil)
	store.mu.Lock()
	store.failArchive = 1
	store.mu.Unlock()
	groupchat(alice, "late")
	expectBody(t, alice, room+"/alice", "late")
	alice.Send(`<iq type='set' id='q' to='` + room + `'><query xmlns='urn:xmpp:mam:2'/></iq>`)
	r := alice.Expect("archived", func(x xmpptest.Elem) bool { return strings.Contains(x.Inner, "urn:xmpp:mam:2") })
	if !strings.Contains(r.Inner, "<body>late</body>") {
		t.Fatalf("archive: %v", r)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if store.failArchive != 0 || len(store.archive) != 1 {
		t.Fatalf("the store was not tried again: %d failures left, %d archived", store.failArchive, len(store.archive))
	}
}

// mamBodies runs a MAM query on the room's archive and returns the bodies
// of the results, or the error condition's element name.
func mamBodies(t *testing.T, c *xmpptest.Client, id, with string) string {
	t.Helper()
	c.Send(`<iq type='set' id='` + id + `' to='` + room + `'><query xmlns='urn:xmpp:mam:2' queryid='` + id + `'><x xmlns='jabber:x:data' type='submit'>` +
		`<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field><field var='with'><value>` + with + `</value></field></x></query></iq>`)
	var got []string
	for {
		x := c.Next()
		if x.XMLName.Local == "iq" && x.Attr("id") == id {
			if x.Attr("type") == "error" {
				return "error:" + regexp.MustCompile(`<(bad-request|forbidden|item-not-found)`).FindStringSubmatch(x.Inner)[1]
			}
			return strings.Join(got, ",")
		}
		if x.XMLName.Local == "message" && strings.Contains(x.Inner, `queryid="`+id+`"`) {
			got = append(got, regexp.MustCompile(`<body>(\w+)</body>`).FindStringSubmatch(x.Inner)[1])
		}
	}
}

// The archive's 'with' filter (XEP-0313 on a MUC): an occupant JID selects
// a nick; a real bare JID, for those who may see real JIDs, a user under
// any nick.
func TestArchiveWith(t *testing.T) {
	e := start(t, newMemStore(), nil)
	alice, cs := setup(t, e, nil, 2)
	bob := cs[0]
	bobNick := nickOf(2)
	groupchat(alice, "a1")
	expectBody(t, bob, room+"/alice", "a1")
	groupchat(bob, "b1")
	expectBody(t, alice, room+"/"+bobNick, "b1")
	join(bob, "bobby")
	alice.Expect("new nick", isPresenceFrom(room+"/bobby"))
	groupchat(bob, "b2")
	expectBody(t, alice, room+"/bobby", "b2")
	groupchat(alice, "a2")
	expectBody(t, bob, room+"/alice", "a2")

	bobJID := number(2) + "@localhost"
	for _, tc := range []struct {
		c          *xmpptest.Client
		with, want string
	}{
		{bob, room + "/alice", "a1,a2"},
		{bob, room + "/" + bobNick, "b1"},
		{bob, room + "/bobby", "b2"},
		{bob, room + "/nobody", ""},
		{bob, room, "a1,b1,b2,a2"},
		// Semi-anonymous: a participant may not filter by real JID, the
		// owner may.
		{bob, bobJID, "error:forbidden"},
		{alice, bobJID, "b1,b2"},
		{alice, bobJID + "/phone", "b1,b2"},
		{alice, number(1) + "@localhost", "a1,a2"},
		{alice, "@bad", "error:bad-request"},
	} {
		if got := mamBodies(t, tc.c, "w", tc.with); got != tc.want {
			t.Errorf("with %s: got %q, want %q", tc.with, got, tc.want)
		}
	}
	// Non-anonymous: anyone may.
	configure(t, alice, map[string]string{"whois": "anyone"})
	if got := mamBodies(t, bob, "w2", bobJID); got != "b1,b2" {
		t.Errorf("with a real JID in a non-anonymous group: %q", got)
	}
	// The field is in the form.
	if f := iq(bob, "f", "get", room, `<query xmlns='urn:xmpp:mam:2'/>`); !strings.Contains(f.Inner, `var="with"`) {
		t.Errorf("form: %v", f)
	}
}

// joinHistory joins the room as nick with the given <history/> attributes
// and returns the bodies of the history up to the subject, with the delay
// stamps.
func joinHistory(t *testing.T, c *xmpptest.Client, nick, attrs string) (bodies, stamps []string) {
	t.Helper()
	c.Send(`<presence to='` + room + `/` + nick + `'><x xmlns='http://jabber.org/protocol/muc'><history ` + attrs + `/></x></presence>`)
	for {
		x := c.Next()
		if strings.Contains(x.Inner, "<subject") {
			return bodies, stamps
		}
		if x.XMLName.Local != "message" {
			continue
		}
		st := regexp.MustCompile(`<delay xmlns="urn:xmpp:delay" stamp="([^"]+)"`).FindStringSubmatch(x.Inner)
		if st == nil {
			t.Fatalf("history without delay: %v", x)
		}
		bodies = append(bodies, regexp.MustCompile(`<body>(\w+)</body>`).FindStringSubmatch(x.Inner)[1])
		stamps = append(stamps, st[1])
	}
}

// Discussion history with since, seconds and maxchars (XEP-0045 §7.2.15):
// every limit given applies.
func TestHistoryLimits(t *testing.T) {
	e := start(t, newMemStore(), nil)
	alice, _ := setup(t, e, nil)
	var last xmpptest.Elem
	for _, b := range []string{"one", "two", "three", "four"} {
		groupchat(alice, b)
		last = expectBody(t, alice, room+"/alice", b)
	}
	c := e.login(2, "phone")
	all, stamps := joinHistory(t, c, "c", "")
	if strings.Join(all, ",") != "one,two,three,four" {
		t.Fatalf("full history: %v", all)
	}
	// since: the messages sent at or after the instant; a stamp as the
	// room gave it (milliseconds) selects its message and the later ones.
	var want []string
	for i, st := range stamps {
		if st >= stamps[1] {
			want = append(want, all[i])
		}
	}
	for _, tc := range []struct {
		attrs, want string
	}{
		{`since='` + stamps[1] + `'`, strings.Join(want, ",")},
		{`since='2000-01-01T00:00:00Z'`, "one,two,three,four"},
		{`since='2999-01-01T00:00:00Z'`, ""},
		{`since='2000-01-01T00:00:00Z' maxstanzas='1'`, "four"},
		{`since='2999-01-01T00:00:00Z' maxstanzas='10'`, ""},
		// seconds: the messages of the last so many seconds.
		{`seconds='0'`, ""},
		{`seconds='3600'`, "one,two,three,four"},
		{`seconds='3600' maxstanzas='2'`, "three,four"},
		{`seconds='0' since='2000-01-01T00:00:00Z'`, ""},
		{`seconds='3600' since='2999-01-01T00:00:00Z'`, ""},
		// maxchars counts whole stanzas: 0 (what clients with MAM ask)
		// and less than one stanza send none.
		{`maxchars='0'`, ""},
		{`maxchars='20'`, ""},
		{`maxchars='100000'`, "one,two,three,four"},
		{`maxchars='100000' maxstanzas='3' seconds='3600'`, "two,three,four"},
	} {
		c.Send(`<presence to='` + room + `/c' type='unavailable'/>`)
		c.Expect("left", func(x xmpptest.Elem) bool { return isPresenceFrom(room+"/c")(x) && x.Attr("type") == "unavailable" })
		if got, _ := joinHistory(t, c, "c", tc.attrs); strings.Join(got, ",") != tc.want {
			t.Errorf("history %s: got %v, want %s", tc.attrs, got, tc.want)
		}
	}
	// maxchars that fits one stanza (as sent, give or take the
	// serialisation) but not two sends the newest only.
	c.Send(`<presence to='` + room + `/c' type='unavailable'/>`)
	c.Expect("left", func(x xmpptest.Elem) bool { return isPresenceFrom(room+"/c")(x) && x.Attr("type") == "unavailable" })
	size := len(`<message></message>`) + len(last.Inner)
	for _, a := range last.Attrs {
		size += len(a.Name.Local) + len(a.Value) + 4
	}
	if got, _ := joinHistory(t, c, "c", fmt.Sprintf(`maxchars='%d'`, size*3/2)); strings.Join(got, ",") != "four" {
		t.Errorf("history maxchars=%d (one stanza ~%d): %v", size*3/2, size, got)
	}
}
