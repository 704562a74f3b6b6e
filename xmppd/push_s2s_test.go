package xmppd_test

import (
	"context"
	"encoding/xml"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/internal/xmpptest"
	"dialtone/storage"
	"dialtone/xmppd"
	"dialtone/xmppd/mod/push"
	"dialtone/xmppd/router"
)

// appServer plays a XEP-0357 app server on its own domain: it takes the
// publishes that come over the s2s link, hands them to the test, and
// answers with a result or, when failing is set, an error.
type appServer struct {
	got     chan publish
	failing atomic.Bool
}

type publish struct {
	From, Node string
	Fields     map[string]string
	Options    map[string]string
}

func (a *appServer) Register(h *router.Hooks) error {
	h.HandleIQ(router.ScopeServer, router.IQSet, xml.Name{Space: push.NSPubsub, Local: "pubsub"}, func(_ context.Context, iq *router.Stanza) ([]byte, error) {
		var p struct {
			Publish struct {
				Node   string `xml:"node,attr"`
				Fields []struct {
					Var   string `xml:"var,attr"`
					Value string `xml:"value"`
				} `xml:"item>notification>x>field"`
			} `xml:"publish"`
			Options []struct {
				Var   string `xml:"var,attr"`
				Value string `xml:"value"`
			} `xml:"publish-options>x>field"`
		}
		if err := iq.DecodePayload(&p); err != nil {
			return nil, err
		}
		pub := publish{From: iq.From.String(), Node: p.Publish.Node, Fields: map[string]string{}, Options: map[string]string{}}
		for _, f := range p.Publish.Fields {
			pub.Fields[f.Var] = f.Value
		}
		for _, f := range p.Options {
			pub.Options[f.Var] = f.Value
		}
		// The answer is decided before the test hears of the publish: the
		// test turns failing on right after it got one, which must not
		// change that one's answer.
		fail := a.failing.Load()
		a.got <- pub
		if fail {
			return nil, router.NewError(stanza.Cancel, stanza.ItemNotFound, "")
		}
		return nil, nil
	})
	return nil
}

func (a *appServer) next(t *testing.T) publish {
	t.Helper()
	select {
	case p := <-a.got:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no publish reached the app server")
		return publish{}
	}
}

// XEP-0357 over a real s2s link: a.test has the push module, b.test is the
// app server. An account with push on and no active session has each
// message announced with the summary form (the body only with
// include-body); online, nothing is pushed; an app server that keeps
// answering with errors loses the registration.
func TestPushOverFederation(t *testing.T) {
	db, err := storage.Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	app := &appServer{got: make(chan publish, 16)}
	la, lb := listen(t), listen(t)
	routes := map[string]string{"a.test": la.Addr().String(), "b.test": lb.Addr().String()}
	a := startFedServer(t, "a.test", la, fedOpts{cert: selfSigned(t, "a.test"), fed: xmppd.FederationConfig{Routes: routes, InsecureDomains: []string{"a.test", "b.test"}},
		mods: []router.Module{push.New(push.Config{Store: db})}})
	startFedServer(t, "b.test", lb, fedOpts{cert: selfSigned(t, "b.test"), fed: xmppd.FederationConfig{Routes: routes, InsecureDomains: []string{"a.test", "b.test"}}, mods: []router.Module{app}})

	const alice, bob = "+821012345678", "+821087654321"
	aliceJID := alice + "@a.test"
	al := a.login(t, alice, "phone")
	for _, bad := range []string{
		`<enable xmlns='urn:xmpp:push:0' node='n1'/>`,
		`<enable xmlns='urn:xmpp:push:0' jid='b.test' node='n1'><x xmlns='jabber:x:data' type='form'/></enable>`,
	} {
		al.Send(`<iq type='set' id='bad'>` + bad + `</iq>`)
		if e := al.Expect("error", func(e xmpptest.Elem) bool { return e.Attr("id") == "bad" }); e.Attr("type") != "error" || !strings.Contains(e.Inner, "bad-request") {
			t.Fatalf("%s: %v", bad, e)
		}
	}
	al.Send(`<iq type='set' id='en'><enable xmlns='urn:xmpp:push:0' jid='b.test' node='n1'><x xmlns='jabber:x:data' type='submit'>` +
		`<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>` +
		`<field var='secret'><value>s3cret</value></field><field var='include-body'><value>true</value></field></x></enable></iq>`)
	if e := al.Expect("enabled", func(e xmpptest.Elem) bool { return e.Attr("id") == "en" }); e.Attr("type") != "result" {
		t.Fatalf("enable: %v", e)
	}
	b := a.login(t, bob, "phone")

	// Online: nothing is pushed (the later publish shows count 1).
	b.Send(`<message type='chat' to='` + aliceJID + `' id='m0'><body>online</body></message>`)
	al.Expect("message", func(e xmpptest.Elem) bool { return e.Attr("id") == "m0" })
	al.Conn.Close()
	waitUntil(t, "alice's session to end", func() bool { return len(a.Router().Sessions(jid.MustParse(aliceJID))) == 0 })

	for i, body := range []string{"first", "second"} {
		b.Send(`<message type='chat' to='` + aliceJID + `' id='m` + body + `'><body>` + body + `</body></message>`)
		p := app.next(t)
		if p.From != aliceJID || p.Node != "n1" || p.Fields["FORM_TYPE"] != push.NSSummary ||
			p.Fields["message-count"] != string(rune('1'+i)) || p.Fields["last-message-sender"] != bob+"@a.test/phone" ||
			p.Fields["last-message-body"] != body || p.Options["secret"] != "s3cret" {
			t.Fatalf("publish %d: %+v", i, p)
		}
	}
	// Chat states are not announced: the next publish is the message after.
	b.Send(`<message type='chat' to='` + aliceJID + `' id='cs'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`)

	// A failing app server: three errors in a row drop the registration.
	app.failing.Store(true)
	for i := range push.DefaultMaxErrors {
		b.Send(`<message type='chat' to='` + aliceJID + `' id='f'><body>fail</body></message>`)
		if p := app.next(t); p.Fields["message-count"] != string(rune('3'+i)) {
			t.Fatalf("publish %+v", p)
		}
	}
	// The third error comes back over the s2s link and the removal is a
	// store write: give a loaded race run more than waitUntil's 5 s.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		regs, err := db.PushRegistrations(context.Background(), alice)
		if err == nil && len(regs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the registration was not dropped after %d errors: %+v %v", push.DefaultMaxErrors, regs, err)
		}
	}
	app.failing.Store(false)
	b.Send(`<message type='chat' to='` + aliceJID + `' id='after'><body>after</body></message>`)
	// Alice registers again (from another session): the next publish is
	// for the message after that, on the new node; a publish for 'after'
	// would have come first on the same link.
	al2 := a.login(t, alice, "tablet")
	al2.Send(`<iq type='set' id='en2'><enable xmlns='urn:xmpp:push:0' jid='b.test' node='n2'/></iq>`)
	al2.Expect("enabled", func(e xmpptest.Elem) bool { return e.Attr("id") == "en2" })
	al2.Send(`<presence type='unavailable'/>`)
	al2.Sync()
	b.Send(`<message type='chat' to='` + aliceJID + `' id='later'><body>later</body></message>`)
	if p := app.next(t); p.Node != "n2" || p.Fields["message-count"] != "1" || p.Fields["last-message-body"] != "" {
		t.Fatalf("after re-enabling: %+v", p)
	}
	// disable without a node removes every node of the app server.
	al2.Send(`<iq type='set' id='dis'><disable xmlns='urn:xmpp:push:0' jid='b.test'/></iq>`)
	if e := al2.Expect("disabled", func(e xmpptest.Elem) bool { return e.Attr("id") == "dis" }); e.Attr("type") != "result" {
		t.Fatalf("disable: %v", e)
	}
	if regs, err := db.PushRegistrations(context.Background(), alice); err != nil || len(regs) != 0 {
		t.Fatalf("after disable: %+v %v", regs, err)
	}
}
