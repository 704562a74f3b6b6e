package xmppd_test

import (
	"context"
	"strings"
	"testing"

	"dialtone/archive"
	"dialtone/internal/xmpptest"
	"dialtone/storage"
	"dialtone/xmppd"
	"dialtone/xmppd/mod/mam"
	"dialtone/xmppd/router"
)

// Messages to and from another server are archived for the local
// account; the local receiver's copy has its stanza-id, what leaves for
// the other server carries none of ours.
func TestArchiveOverFederation(t *testing.T) {
	db, err := storage.Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	la, lb := listen(t), listen(t)
	routes := map[string]string{"a.test": la.Addr().String(), "b.test": lb.Addr().String()}
	fed := xmppd.FederationConfig{Routes: routes, InsecureDomains: []string{"a.test", "b.test"}}
	a := startFedServer(t, "a.test", la, fedOpts{cert: selfSigned(t, "a.test"), fed: fed, mods: []router.Module{mam.New(mam.Config{Store: db})}})
	b := startFedServer(t, "b.test", lb, fedOpts{cert: selfSigned(t, "b.test"), fed: fed})
	const alice, bob = "+821012345678", "+821087654321"
	al := a.login(t, alice, "phone")
	bo := b.login(t, bob, "desk")

	bo.Send(`<message type='chat' to='` + alice + `@a.test' id='in'><body>from afar</body></message>`)
	e := al.Expect("message", func(e xmpptest.Elem) bool { return e.Attr("id") == "in" })
	if !strings.Contains(e.Inner, `<stanza-id xmlns="urn:xmpp:sid:0" by="`+alice+`@a.test"`) {
		t.Fatalf("incoming without alice's stanza-id: %s", e.Inner)
	}
	al.Send(`<message type='chat' to='` + bob + `@b.test' id='out'><body>to afar</body></message>`)
	e = bo.Expect("message", func(e xmpptest.Elem) bool { return e.Attr("id") == "out" })
	if strings.Contains(e.Inner, "urn:xmpp:sid:0") {
		t.Fatalf("outgoing carries a stanza-id: %s", e.Inner)
	}
	al.Send(`<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2'/></iq>`)
	al.Expect("fin", func(e xmpptest.Elem) bool { return e.Attr("id") == "q" })
	page, _, err := db.QueryArchive(context.Background(), archive.Query{Owner: alice, Max: 10})
	if err != nil || len(page) != 2 || page[0].With != bob+"@b.test" || page[1].With != bob+"@b.test" ||
		!strings.Contains(string(page[0].Stanza), "from afar") || !strings.Contains(string(page[1].Stanza), "to afar") {
		t.Fatalf("alice's archive: %+v %v", page, err)
	}
}
