package mam_test

import (
	"context"
	"encoding/xml"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/archive"
	"dialtone/internal/xmpptest"
	"dialtone/storage"
	"dialtone/xmppd/internal/servertest"
	"dialtone/xmppd/mod/carbons"
	"dialtone/xmppd/mod/mam"
	"dialtone/xmppd/router"
)

const (
	alice    = "+821012345678"
	bob      = "+821087654321"
	aliceJID = alice + "@" + servertest.Domain
	bobJID   = bob + "@" + servertest.Domain
)

// sqlite opens a new embedded store, closed after the test (and after the
// server, whose cleanup runs first).
func sqlite(t *testing.T) *storage.DB {
	t.Helper()
	db, err := storage.Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

type fixture struct {
	ts     *servertest.Server
	mod    *mam.Module
	db     *storage.DB
	passes map[string]string
}

func start(t *testing.T, cfg mam.Config, mods ...router.Module) *fixture {
	t.Helper()
	db := sqlite(t)
	cfg.Store = db
	m := mam.New(cfg)
	ts := servertest.Start(t, servertest.With(append([]router.Module{m}, mods...)...))
	return &fixture{ts: ts, mod: m, db: db}
}

func (f *fixture) login(t *testing.T, number, res string) *xmpptest.Client {
	t.Helper()
	c := xmpptest.Login(t, f.ts.Addr, number, f.pass(t, number), res)
	c.Available()
	return c
}

// pass makes the account on first use and returns its password.
func (f *fixture) pass(t *testing.T, number string) string {
	t.Helper()
	if f.passes == nil {
		f.passes = map[string]string{}
	}
	if p, ok := f.passes[number]; ok {
		return p
	}
	p := f.ts.Account(t, number)
	f.passes[number] = p
	return p
}

// result is one archived message as a MAM client decodes it.
type result struct {
	QueryID string `xml:"queryid,attr"`
	ID      string `xml:"id,attr"`
	Fwd     struct {
		Delay struct {
			Stamp string `xml:"stamp,attr"`
		} `xml:"urn:xmpp:delay delay"`
		Message struct {
			From     string `xml:"from,attr"`
			To       string `xml:"to,attr"`
			Body     string `xml:"jabber:client body"`
			StanzaID []struct {
				By string `xml:"by,attr"`
				ID string `xml:"id,attr"`
			} `xml:"urn:xmpp:sid:0 stanza-id"`
		} `xml:"jabber:client message"`
	} `xml:"urn:xmpp:forward:0 forwarded"`
}

type fin struct {
	Complete string `xml:"complete,attr"`
	First    string `xml:"http://jabber.org/protocol/rsm set>first"`
	Last     string `xml:"http://jabber.org/protocol/rsm set>last"`
}

// query sends a MAM query (form fields and RSM set as XML) and returns the
// results and the <fin/>.
func query(t *testing.T, c *xmpptest.Client, id, fields, set string) ([]result, fin) {
	t.Helper()
	form := ""
	if fields != "" {
		form = `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>` + fields + `</x>`
	}
	c.Send(`<iq type='set' id='` + id + `'><query xmlns='urn:xmpp:mam:2' queryid='q-` + id + `'>` + form + set + `</query></iq>`)
	var out []result
	for i := 0; i < 300; i++ {
		e := c.Next()
		if e.XMLName.Local == "iq" && e.Attr("id") == id {
			if e.Attr("type") != "result" {
				t.Fatalf("query %s: %v", id, e)
			}
			var f fin
			if err := xml.Unmarshal([]byte(e.Inner), &f); err != nil {
				t.Fatalf("fin %v: %v", e, err)
			}
			return out, f
		}
		if e.XMLName.Local != "message" || !strings.Contains(e.Inner, "urn:xmpp:mam:2") {
			continue
		}
		var r result
		if err := xml.Unmarshal([]byte(e.Inner), &r); err != nil {
			t.Fatalf("result %v: %v", e, err)
		}
		if r.QueryID != "q-"+id {
			t.Fatalf("result of query %q in answer to %q", r.QueryID, id)
		}
		out = append(out, r)
	}
	t.Fatalf("query %s: no end", id)
	return nil, fin{}
}

func bodies(rs []result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Fwd.Message.Body
	}
	return out
}

func ids(rs []result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

// stanzaID returns the id of the stanza-id by 'by' in a received
// message's children, "" when none.
func stanzaID(t *testing.T, inner, by string) string {
	t.Helper()
	var m struct {
		IDs []struct {
			By string `xml:"by,attr"`
			ID string `xml:"id,attr"`
		} `xml:"urn:xmpp:sid:0 stanza-id"`
	}
	if err := xml.Unmarshal([]byte("<m xmlns='jabber:client'>"+inner+"</m>"), &m); err != nil {
		t.Fatalf("message %s: %v", inner, err)
	}
	found := ""
	for _, s := range m.IDs {
		if s.By == by {
			if found != "" {
				t.Fatalf("two stanza-ids by %s: %s", by, inner)
			}
			found = s.ID
		}
	}
	return found
}

// Messages with a body are archived for both accounts, the receiver's
// copy carries its stanza-id, which is the archive id; a query sees what
// was just routed; receipts and chat states pass untouched and are not
// archived; the newest page comes with <before/> and pages link up.
func TestArchiveAndQuery(t *testing.T) {
	f := start(t, mam.Config{})
	a := f.login(t, alice, "phone")
	b := f.login(t, bob, "phone")

	var got []string // stanza-ids bob received
	for i := range 5 {
		a.Send(fmt.Sprintf(`<message type='chat' to='%s' id='m%d'><body>hello %d</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`, bobJID, i, i))
		e := b.Expect("message", func(e xmpptest.Elem) bool { return e.Attr("id") == fmt.Sprintf("m%d", i) })
		id := stanzaID(t, e.Inner, bobJID)
		if id == "" || stanzaID(t, e.Inner, aliceJID) != "" {
			t.Fatalf("message to bob: %s", e.Inner)
		}
		got = append(got, id)
	}
	// Chat states and receipts: delivered byte for byte, not archived.
	for _, inner := range []string{
		`<composing xmlns='http://jabber.org/protocol/chatstates'/>`,
		`<received xmlns='urn:xmpp:receipts' id='m4'/>`,
	} {
		a.Send(`<message type='chat' to='` + bobJID + `' id='x'>` + inner + `</message>`)
		e := b.Expect("chat state", func(e xmpptest.Elem) bool { return e.Attr("id") == "x" })
		if e.Inner != inner {
			t.Fatalf("changed in passing: %q, sent %q", e.Inner, inner)
		}
	}

	// Alice queries at once: the write-behind queue is flushed first.
	rs, fn := query(t, a, "a1", "", "")
	if want := []string{"hello 0", "hello 1", "hello 2", "hello 3", "hello 4"}; !slices.Equal(bodies(rs), want) || fn.Complete != "true" {
		t.Fatalf("alice's archive %v complete=%s", bodies(rs), fn.Complete)
	}
	if rs[0].Fwd.Message.From != aliceJID+"/phone" || rs[0].Fwd.Message.To != bobJID || rs[0].Fwd.Delay.Stamp == "" {
		t.Fatalf("alice's first result %+v", rs[0])
	}
	rs, fn = query(t, b, "b1", "", "")
	if !slices.Equal(ids(rs), got) || fn.First != got[0] || fn.Last != got[4] {
		t.Fatalf("bob's archive ids %v fin %+v, received stanza-ids %v", ids(rs), fn, got)
	}

	// The newest page, then the one before it, then the last.
	rs, fn = query(t, b, "b2", "", `<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set>`)
	if !slices.Equal(ids(rs), got[3:]) || fn.Complete != "false" {
		t.Fatalf("newest page %v complete=%s", ids(rs), fn.Complete)
	}
	rs, fn = query(t, b, "b3", "", `<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before>`+fn.First+`</before></set>`)
	if !slices.Equal(ids(rs), got[1:3]) || fn.Complete != "false" {
		t.Fatalf("page before %v complete=%s", ids(rs), fn.Complete)
	}
	rs, fn = query(t, b, "b4", "", `<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before>`+fn.First+`</before></set>`)
	if !slices.Equal(ids(rs), got[:1]) || fn.Complete != "true" {
		t.Fatalf("oldest page %v complete=%s", ids(rs), fn.Complete)
	}
	// Forward with after.
	rs, fn = query(t, b, "b5", "", `<set xmlns='http://jabber.org/protocol/rsm'><max>3</max><after>`+got[0]+`</after></set>`)
	if !slices.Equal(ids(rs), got[1:4]) || fn.Complete != "false" {
		t.Fatalf("page after %v complete=%s", ids(rs), fn.Complete)
	}
	// #extended: after-id/before-id and ids.
	rs, _ = query(t, b, "b6", `<field var='after-id'><value>`+got[1]+`</value></field><field var='before-id'><value>`+got[4]+`</value></field>`, "")
	if !slices.Equal(ids(rs), got[2:4]) {
		t.Fatalf("after-id/before-id %v", ids(rs))
	}
	rs, _ = query(t, b, "b7", `<field var='ids'><value>`+got[4]+`</value><value>`+got[0]+`</value></field>`, "")
	if !slices.Equal(ids(rs), []string{got[0], got[4]}) {
		t.Fatalf("ids %v", ids(rs))
	}
	// flip-page: the same page, newest message first.
	b.Send(`<iq type='set' id='fp'><query xmlns='urn:xmpp:mam:2' queryid='q-fp'><flip-page/><set xmlns='http://jabber.org/protocol/rsm'><max>3</max></set></query></iq>`)
	var flipped []string
	for len(flipped) < 3 {
		e := b.Next()
		var r result
		if e.XMLName.Local == "message" && xml.Unmarshal([]byte(e.Inner), &r) == nil && r.QueryID == "q-fp" {
			flipped = append(flipped, r.ID)
		}
	}
	b.Expect("fin", func(e xmpptest.Elem) bool { return e.Attr("id") == "fp" })
	if !slices.Equal(flipped, []string{got[2], got[1], got[0]}) {
		t.Fatalf("flip-page %v", flipped)
	}
	// with: bob's messages with alice, none with someone else.
	rs, _ = query(t, b, "b8", `<field var='with'><value>`+aliceJID+`</value></field>`, "")
	if len(rs) != 5 {
		t.Fatalf("with alice: %d", len(rs))
	}
	rs, fn = query(t, b, "b9", `<field var='with'><value>+821055556666@localhost</value></field>`, "")
	if len(rs) != 0 || fn.Complete != "true" {
		t.Fatalf("with someone else: %d, complete=%s", len(rs), fn.Complete)
	}
	// start/end: everything is between a minute ago and now; nothing after.
	now := time.Now().UTC()
	rs, _ = query(t, b, "b10", `<field var='start'><value>`+now.Add(-time.Minute).Format(time.RFC3339)+`</value></field><field var='end'><value>`+now.Add(time.Minute).Format(time.RFC3339)+`</value></field>`, "")
	if len(rs) != 5 {
		t.Fatalf("start/end: %d", len(rs))
	}
	rs, _ = query(t, b, "b11", `<field var='start'><value>`+now.Add(time.Minute).Format(time.RFC3339)+`</value></field>`, "")
	if len(rs) != 0 {
		t.Fatalf("start in the future: %d", len(rs))
	}
}

// Errors: another's archive, a form not of type submit, unknown fields
// and ids.
func TestQueryErrors(t *testing.T) {
	f := start(t, mam.Config{})
	a := f.login(t, alice, "phone")
	f.pass(t, bob)
	for _, tc := range []struct{ iq, cond string }{
		{`<iq type='set' id='e1' to='` + bobJID + `'><query xmlns='urn:xmpp:mam:2'/></iq>`, "forbidden"},
		{`<iq type='set' id='e2'><query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='form'/></query></iq>`, "bad-request"},
		{`<iq type='set' id='e3'><query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='color'><value>red</value></field></x></query></iq>`, "bad-request"},
		{`<iq type='set' id='e4'><query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><after>nope</after></set></query></iq>`, "item-not-found"},
		{`<iq type='set' id='e5'><query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='start'><value>yesterday</value></field></x></query></iq>`, "bad-request"},
		{`<iq type='set' id='e6'><prefs xmlns='urn:xmpp:mam:2' default='sometimes'/></iq>`, "bad-request"},
	} {
		a.Send(tc.iq)
		id := tc.iq[strings.Index(tc.iq, "id='")+4:]
		id = id[:strings.IndexByte(id, '\'')]
		e := a.Expect(id, func(e xmpptest.Elem) bool { return e.Attr("id") == id })
		if e.Attr("type") != "error" || !strings.Contains(e.Inner, tc.cond) {
			t.Errorf("%s: %v, want %s", id, e, tc.cond)
		}
	}
	// A get returns the form.
	a.Send(`<iq type='get' id='g1'><query xmlns='urn:xmpp:mam:2'/></iq>`)
	e := a.Expect("form", func(e xmpptest.Elem) bool { return e.Attr("id") == "g1" })
	for _, v := range []string{"with", "start", "end", "before-id", "after-id", "ids"} {
		if !strings.Contains(e.Inner, `var="`+v+`"`) {
			t.Errorf("form lacks %s: %s", v, e.Inner)
		}
	}
}

// A stanza-id that claims to be by one of our JIDs is removed before the
// receiver sees it; one by another entity passes.
func TestForgedStanzaIDStripped(t *testing.T) {
	f := start(t, mam.Config{})
	a := f.login(t, alice, "phone")
	b := f.login(t, bob, "phone")
	a.Send(`<message type='chat' to='` + bobJID + `' id='f1'><body>hi</body>` +
		`<stanza-id xmlns='urn:xmpp:sid:0' by='` + bobJID + `' id='forged'/>` +
		`<stanza-id xmlns='urn:xmpp:sid:0' by='localhost' id='forged2'/>` +
		`<stanza-id xmlns='urn:xmpp:sid:0' by='muc.example.org' id='theirs'/></message>`)
	e := b.Expect("message", func(e xmpptest.Elem) bool { return e.Attr("id") == "f1" })
	if id := stanzaID(t, e.Inner, bobJID); id == "forged" || id == "" {
		t.Fatalf("bob's stanza-id %q: %s", id, e.Inner)
	}
	if stanzaID(t, e.Inner, "localhost") != "" || stanzaID(t, e.Inner, "muc.example.org") != "theirs" {
		t.Fatalf("forged ids kept or foreign one lost: %s", e.Inner)
	}
	// The same for a message without a body (not archived).
	a.Send(`<message type='chat' to='` + bobJID + `' id='f2'><stanza-id xmlns='urn:xmpp:sid:0' by='` + bobJID + `' id='forged'/><paused xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	e = b.Expect("message", func(e xmpptest.Elem) bool { return e.Attr("id") == "f2" })
	if e.Inner != `<paused xmlns='http://jabber.org/protocol/chatstates'/>` {
		t.Fatalf("chat state with a forged id: %q", e.Inner)
	}
}

// Carbons: the <sent/> copy carries the sender's stanza-id (and the
// receiver never sees it), the <received/> copy the receiver's.
func TestCarbonsCarryStanzaID(t *testing.T) {
	f := start(t, mam.Config{}, carbons.New())
	a1 := f.login(t, alice, "one")
	a2 := f.login(t, alice, "two")
	b1 := f.login(t, bob, "one")
	b2 := f.login(t, bob, "two")
	for i, c := range []*xmpptest.Client{a2, b2} {
		c.Send(fmt.Sprintf(`<iq type='set' id='c%d'><enable xmlns='urn:xmpp:carbons:2'/></iq>`, i))
		c.Expect("enabled", func(e xmpptest.Elem) bool { return e.Attr("id") == fmt.Sprintf("c%d", i) })
	}
	a1.Send(`<message type='chat' to='` + bobJID + `/one' id='k1'><body>carbon</body></message>`)
	e := b1.Expect("message", func(e xmpptest.Elem) bool { return e.Attr("id") == "k1" })
	bobID := stanzaID(t, e.Inner, bobJID)
	if bobID == "" || stanzaID(t, e.Inner, aliceJID) != "" {
		t.Fatalf("bob got %s", e.Inner)
	}
	sent := a2.Expect("sent carbon", func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "urn:xmpp:carbons:2") })
	received := b2.Expect("received carbon", func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "urn:xmpp:carbons:2") })
	inner := func(e xmpptest.Elem) string {
		i := strings.Index(e.Inner, "<body>")
		return e.Inner[i:strings.LastIndex(e.Inner, "</message>")]
	}
	aliceID := stanzaID(t, inner(sent), aliceJID)
	if aliceID == "" || stanzaID(t, inner(received), bobJID) != bobID {
		t.Fatalf("sent carbon %s\nreceived carbon %s", sent.Inner, received.Inner)
	}
	rs, _ := query(t, a1, "a", "", "")
	if len(rs) != 1 || rs[0].ID != aliceID {
		t.Fatalf("alice's archive %v, sent carbon id %s", ids(rs), aliceID)
	}
}

// Preferences: stored, read back, and a 'never' JID is not archived.
func TestPrefs(t *testing.T) {
	f := start(t, mam.Config{})
	a := f.login(t, alice, "phone")
	b := f.login(t, bob, "phone")
	b.Send(`<iq type='get' id='p0'><prefs xmlns='urn:xmpp:mam:2'/></iq>`)
	if e := b.Expect("prefs", func(e xmpptest.Elem) bool { return e.Attr("id") == "p0" }); !strings.Contains(e.Inner, `default="always"`) {
		t.Fatalf("default prefs %v", e)
	}
	b.Send(`<iq type='set' id='p1'><prefs xmlns='urn:xmpp:mam:2' default='always'><always/><never><jid>` + aliceJID + `</jid></never></prefs></iq>`)
	if e := b.Expect("prefs", func(e xmpptest.Elem) bool { return e.Attr("id") == "p1" }); e.Attr("type") != "result" || !strings.Contains(e.Inner, aliceJID) {
		t.Fatalf("set prefs %v", e)
	}
	a.Send(`<message type='chat' to='` + bobJID + `' id='n1'><body>not for bob's archive</body></message>`)
	e := b.Expect("message", func(e xmpptest.Elem) bool { return e.Attr("id") == "n1" })
	if stanzaID(t, e.Inner, bobJID) != "" {
		t.Fatalf("not archived, yet a stanza-id: %s", e.Inner)
	}
	if rs, _ := query(t, b, "q", "", ""); len(rs) != 0 {
		t.Fatalf("bob archived %v", bodies(rs))
	}
	if rs, _ := query(t, a, "q", "", ""); len(rs) != 1 {
		t.Fatalf("alice archived %v", bodies(rs))
	}
	b.Send(`<iq type='get' id='p2'><prefs xmlns='urn:xmpp:mam:2'/></iq>`)
	if e := b.Expect("prefs", func(e xmpptest.Elem) bool { return e.Attr("id") == "p2" }); !strings.Contains(e.Inner, "<never><jid>"+aliceJID+"</jid></never>") {
		t.Fatalf("stored prefs %v", e)
	}
}

// Archived is true for a message archived for the session's account once
// that session queried the archive.
func TestArchived(t *testing.T) {
	f := start(t, mam.Config{})
	a := f.login(t, alice, "phone")
	b := f.login(t, bob, "phone")
	a.Send(`<message type='chat' to='` + bobJID + `' id='s1'><body>x</body></message>`)
	e := b.Expect("message", func(e xmpptest.Elem) bool { return e.Attr("id") == "s1" })
	bobJ, _ := f.ts.Router().Normalize(mustJID(t, bobJID+"/phone"))
	sess := f.ts.Router().Session(bobJ)
	if sess == nil {
		t.Fatal("no session")
	}
	st := &router.Stanza{Kind: router.KindMessage, Inner: []byte(e.Inner)}
	if f.mod.Archived(sess, st) {
		t.Fatal("archived before any query")
	}
	query(t, b, "q", "", "")
	if !f.mod.Archived(sess, st) {
		t.Fatal("not archived after a query")
	}
	if f.mod.Archived(sess, &router.Stanza{Kind: router.KindMessage, Inner: []byte(`<body>x</body>`)}) {
		t.Fatal("a message without stanza-id archived")
	}
	asess := f.ts.Router().Session(mustJID(t, aliceJID+"/phone"))
	if f.mod.Archived(asess, st) {
		t.Fatal("bob's id counts for alice")
	}
	// Disco: on the domain and on accounts.
	for _, sc := range []router.Scope{router.ScopeServer, router.ScopeAccount} {
		feats := f.ts.Router().Hooks().DiscoFeatures(sc)
		for _, want := range []string{mam.NS, mam.NSExtended, mam.NSSID} {
			if !slices.Contains(feats, want) {
				t.Errorf("scope %d lacks %s: %v", sc, want, feats)
			}
		}
	}
}

// The retention sweep removes what is older than the retention.
func TestRetention(t *testing.T) {
	f := start(t, mam.Config{Retention: time.Hour})
	a := f.login(t, alice, "phone")
	b := f.login(t, bob, "phone")
	a.Send(`<message type='chat' to='` + bobJID + `' id='r1'><body>old soon</body></message>`)
	b.Expect("message", func(e xmpptest.Elem) bool { return e.Attr("id") == "r1" })
	if rs, _ := query(t, b, "q1", "", ""); len(rs) != 1 {
		t.Fatalf("archived %d", len(rs))
	}
	f.mod.Sweep(t.Context(), time.Now().Add(59*time.Minute))
	if rs, _ := query(t, b, "q2", "", ""); len(rs) != 1 {
		t.Fatalf("removed before its time: %d left", len(rs))
	}
	f.mod.Sweep(t.Context(), time.Now().Add(61*time.Minute))
	if rs, _ := query(t, b, "q3", "", ""); len(rs) != 0 {
		t.Fatalf("kept past retention: %d", len(rs))
	}
	if last, err := f.db.LastArchiveID(t.Context()); err != nil || last != 0 {
		t.Fatalf("last id %d %v", last, err)
	}
}

func mustJID(t *testing.T, s string) jid.JID {
	t.Helper()
	j, err := jid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// The writer leaves out what the routing path could not decide without
// the store: a receiver without an account, and the preferences of an
// account that is not online (not cached). Routing never waits for them.
func TestWriterChecks(t *testing.T) {
	f := start(t, mam.Config{})
	a := f.login(t, alice, "phone")
	f.pass(t, bob) // an account, never online
	const latent = "+821055556666"
	if err := f.db.SetArchivePrefs(t.Context(), bob, archive.Prefs{Default: archive.Never}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{bobJID, latent + "@localhost"} {
		a.Send(`<message type='chat' to='` + to + `' id='w'><body>to someone offline</body></message>`)
		// Nobody takes it here (no offline module): the bounce shows it
		// was routed.
		a.Expect("bounce", func(e xmpptest.Elem) bool { return e.Attr("id") == "w" && e.Attr("type") == "error" })
	}
	if rs, _ := query(t, a, "q", "", ""); len(rs) != 2 {
		t.Fatalf("alice's archive: %v", bodies(rs))
	}
	for _, owner := range []string{bob, latent} {
		page, _, err := f.db.QueryArchive(t.Context(), archive.Query{Owner: owner, Max: 10})
		if err != nil || len(page) != 0 {
			t.Fatalf("archive of %s: %d messages, %v", owner, len(page), err)
		}
	}
}

// The sender's copy of a message to an account here is stored with the
// receiver's bytes by the Inbound hook: stored even when the receiver's
// preferences leave the receiver's copy out, not stored when the message
// is refused before that hook, and a refused message's copy never turns up
// with a later one.
func TestSenderCopyWithReceiverCopy(t *testing.T) {
	refuse := router.ModuleFunc(func(h *router.Hooks) error {
		h.Hook(router.Inbound, router.Messages, mam.Priority+5, func(_ context.Context, ev *router.Event) error {
			if ev.Stanza.ID == "refused" {
				return router.ErrHandled
			}
			return nil
		})
		return nil
	})
	f := start(t, mam.Config{}, refuse)
	a := f.login(t, alice, "phone")
	b := f.login(t, bob, "phone")
	a.Send(`<message type='chat' to='` + bobJID + `' id='refused'><body>refused</body></message>`)
	for i := range 2 {
		a.Send(fmt.Sprintf(`<message type='chat' to='%s' id='m%d'><body>hello %d</body></message>`, bobJID, i, i))
		b.Expect("message", func(e xmpptest.Elem) bool { return e.Attr("id") == fmt.Sprintf("m%d", i) })
		if i == 0 {
			// Bob stops archiving alice: her copies go on.
			b.Send(`<iq type='set' id='p'><prefs xmlns='urn:xmpp:mam:2' default='always'><always/><never><jid>` + aliceJID + `</jid></never></prefs></iq>`)
			b.Expect("prefs result", func(e xmpptest.Elem) bool { return e.Attr("id") == "p" })
			// What was routed before is in bob's archive.
			if rs, _ := query(t, b, "b0", "", ""); !slices.Equal(bodies(rs), []string{"hello 0"}) {
				t.Fatalf("bob's archive %v, want [hello 0]", bodies(rs))
			}
		}
	}
	rs, _ := query(t, a, "a1", "", "")
	if want := []string{"hello 0", "hello 1"}; !slices.Equal(bodies(rs), want) {
		t.Fatalf("alice's archive %v, want %v", bodies(rs), want)
	}
	if rs[1].Fwd.Message.From != aliceJID+"/phone" || rs[1].Fwd.Message.To != bobJID {
		t.Fatalf("alice's copy %+v", rs[1])
	}
	rs, _ = query(t, b, "b1", "", "")
	if want := []string{"hello 0"}; !slices.Equal(bodies(rs), want) {
		t.Fatalf("bob's archive %v, want %v", bodies(rs), want)
	}
}

// TestReroutedKeepsStanzaID: a message the server routes again (a node of
// the cluster died before its session acknowledged it) is the stanza of
// its first routing: the same id, origin-id and stanza-id, which clients
// dedupe by, and it is not archived a second time.
func TestReroutedKeepsStanzaID(t *testing.T) {
	f := start(t, mam.Config{})
	a := f.login(t, alice, "phone")
	b := f.login(t, bob, "phone")
	a.Send(`<message type='chat' to='` + bobJID + `' id='r1'><body>once</body><origin-id xmlns='urn:xmpp:sid:0' id='o1'/></message>`)
	first := b.Expect("message", func(e xmpptest.Elem) bool { return e.Attr("id") == "r1" })
	sid := stanzaID(t, first.Inner, bobJID)
	if sid == "" {
		t.Fatalf("no stanza-id: %s", first.Inner)
	}

	st := &router.Stanza{Kind: router.KindMessage, Type: "chat", ID: "r1",
		From: jid.MustParse(a.JID), To: jid.MustParse(bobJID), Inner: []byte(first.Inner)}
	f.ts.Router().Route(router.Rerouted(context.Background()), st)
	again := b.Expect("the message again", func(e xmpptest.Elem) bool { return e.Attr("id") == "r1" })
	if again.Inner != first.Inner {
		t.Fatalf("routed again it changed:\n%s\nfirst:\n%s", again.Inner, first.Inner)
	}
	res, _ := query(t, b, "q", "", "")
	if len(res) != 1 || res[0].ID != sid {
		t.Fatalf("bob's archive: %+v, want the one message %s", res, sid)
	}
}
