package push_test

import (
	"context"
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"dialtone/internal/xmpptest"
	"dialtone/storage"
	"dialtone/xmppd/internal/servertest"
	"dialtone/xmppd/mod/push"
	"dialtone/xmppd/router"
)

// appHost is an app server on a component host of the same server: it
// records what is published to it.
type appHost struct{ got chan string }

func (a appHost) Register(h *router.Hooks) error {
	sc := h.AddHost("push.localhost")
	h.HandleIQ(sc, router.IQSet, xml.Name{Space: push.NSPubsub, Local: "pubsub"}, func(_ context.Context, iq *router.Stanza) ([]byte, error) {
		a.got <- iq.FromString() + " " + string(iq.Inner)
		return nil, nil
	})
	return nil
}

// Enable is checked and stored; a message for an account whose only
// session is not available is announced without its body unless
// include-body was asked for; an available session stops the
// announcements and resets the count.
func TestEnableAndAnnounce(t *testing.T) {
	db, err := storage.Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	app := appHost{got: make(chan string, 8)}
	ts := servertest.Start(t, servertest.With(push.New(push.Config{Store: db}), app))
	const alice, bob = "+821012345678", "+821087654321"
	al := xmpptest.Login(t, ts.Addr, alice, ts.Account(t, alice), "phone") // bound, never available
	bo := xmpptest.Login(t, ts.Addr, bob, ts.Account(t, bob), "desk")
	for _, tc := range []struct{ payload, cond string }{
		{`<enable xmlns='urn:xmpp:push:0' node='n'/>`, "bad-request"},
		{`<enable xmlns='urn:xmpp:push:0' jid='push.localhost' node='n'><x xmlns='jabber:x:data' type='result'/></enable>`, "bad-request"},
		{`<disable xmlns='urn:xmpp:push:0'/>`, "bad-request"},
	} {
		al.Send(`<iq type='set' id='e'>` + tc.payload + `</iq>`)
		if e := al.Expect("error", func(e xmpptest.Elem) bool { return e.Attr("id") == "e" }); e.Attr("type") != "error" || !strings.Contains(e.Inner, tc.cond) {
			t.Fatalf("%s: %v", tc.payload, e)
		}
	}
	bo.Send(`<iq type='set' id='o' to='` + alice + `@localhost'><enable xmlns='urn:xmpp:push:0' jid='push.localhost' node='n'/></iq>`)
	if e := bo.Expect("forbidden", func(e xmpptest.Elem) bool { return e.Attr("id") == "o" }); !strings.Contains(e.Inner, "forbidden") {
		t.Fatalf("enable for another account: %v", e)
	}
	al.Send(`<iq type='set' id='ok'><enable xmlns='urn:xmpp:push:0' jid='push.localhost' node='n'/></iq>`)
	if e := al.Expect("result", func(e xmpptest.Elem) bool { return e.Attr("id") == "ok" }); e.Attr("type") != "result" {
		t.Fatalf("enable: %v", e)
	}
	next := func() string {
		t.Helper()
		select {
		case s := <-app.got:
			return s
		case <-time.After(5 * time.Second):
			t.Fatal("nothing published")
			return ""
		}
	}
	bo.Send(`<message type='chat' to='` + alice + `@localhost' id='m1'><body>secret text</body></message>`)
	p := next()
	if !strings.HasPrefix(p, alice+"@localhost ") || !strings.Contains(p, `node="n"`) || !strings.Contains(p, push.NSSummary) ||
		!strings.Contains(p, `<field var="message-count"><value>1</value></field>`) ||
		!strings.Contains(p, `<field var="last-message-sender"><value>`+bob+`@localhost/desk</value></field>`) ||
		strings.Contains(p, "secret text") || strings.Contains(p, "publish-options") {
		t.Fatalf("publish %s", p)
	}
	// With include-body the body is announced (and tells the messages
	// apart). Available: no announcement; the count starts again after.
	al.Send(`<iq type='set' id='ok2'><enable xmlns='urn:xmpp:push:0' jid='push.localhost' node='n'><x xmlns='jabber:x:data' type='submit'>` +
		`<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='include-body'><value>1</value></field></x></enable></iq>`)
	al.Expect("result", func(e xmpptest.Elem) bool { return e.Attr("id") == "ok2" })
	al.Available()
	bo.Send(`<message type='chat' to='` + alice + `@localhost' id='m2'><body>live</body></message>`)
	al.Expect("message", func(e xmpptest.Elem) bool { return e.Attr("id") == "m2" })
	al.Send(`<presence type='unavailable'/>`)
	al.Sync()
	bo.Send(`<message type='chat' to='` + alice + `@localhost' id='m3'><body>later</body></message>`)
	if p := next(); !strings.Contains(p, `<field var="message-count"><value>1</value></field>`) ||
		!strings.Contains(p, `<field var="last-message-body"><value>later</value></field>`) || !strings.Contains(p, "<publish-options>") {
		t.Fatalf("after being online: %s", p)
	}
}
