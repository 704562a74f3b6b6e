package carbons_test

import (
	"encoding/xml"
	"slices"
	"strings"
	"testing"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd/internal/servertest"
	"dialtone/xmppd/mod/carbons"
	"dialtone/xmppd/router"
)

// carbon is a carbon copy as a client decodes it.
type carbon struct {
	Received *forwarded `xml:"urn:xmpp:carbons:2 received"`
	Sent     *forwarded `xml:"urn:xmpp:carbons:2 sent"`
}

type forwarded struct {
	Forwarded struct {
		Message struct {
			From string `xml:"from,attr"`
			To   string `xml:"to,attr"`
			ID   string `xml:"id,attr"`
			Type string `xml:"type,attr"`
			Body string `xml:"jabber:client body"`
		} `xml:"jabber:client message"`
	} `xml:"urn:xmpp:forward:0 forwarded"`
}

func decodeCarbon(t *testing.T, e xmpptest.Elem) carbon {
	t.Helper()
	var c carbon
	if err := xml.Unmarshal([]byte("<x>"+e.Inner+"</x>"), &c); err != nil {
		t.Fatalf("carbon %v: %v", e, err)
	}
	return c
}

// isCarbonOf reports whether e is a carbon whose forwarded message has id.
func isCarbonOf(id string) func(xmpptest.Elem) bool {
	return func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "message" && strings.Contains(e.Inner, "urn:xmpp:carbons:2") &&
			strings.Contains(e.Inner, `id="`+id+`"`)
	}
}

// noneOf fails when c receives any element carrying one of the ids (or a
// carbon of it) before a ping round trip ends.
func noneOf(t *testing.T, c *xmpptest.Client, ids ...string) {
	t.Helper()
	c.Send(`<iq type='get' id='none' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	for {
		e := c.Next()
		if e.Attr("id") == "none" {
			return
		}
		for _, id := range ids {
			if e.Attr("id") == id || strings.Contains(e.Inner, `id="`+id+`"`) {
				t.Fatalf("%s got %v", c.JID, e)
			}
		}
	}
}

func enableCarbons(t *testing.T, c *xmpptest.Client, to, what string) {
	t.Helper()
	attr := ""
	if to != "" {
		attr = ` to='` + to + `'`
	}
	c.Send(`<iq type='set' id='carbons'` + attr + `><` + what + ` xmlns='urn:xmpp:carbons:2'/></iq>`)
	r := c.Expect("carbons reply", func(e xmpptest.Elem) bool { return e.Attr("id") == "carbons" })
	if r.Attr("type") != "result" {
		t.Fatalf("%s: %s: %v", c.JID, what, r)
	}
}

const (
	alice = "+821012345678"
	bob   = "+821087654321"
)

func startServer(t *testing.T) *servertest.Server {
	return servertest.Start(t, servertest.With(carbons.New()))
}

func TestCarbons(t *testing.T) {
	ts := startServer(t)
	if feats := ts.Router().Hooks().DiscoFeatures(router.ScopeServer); !slices.Contains(feats, "urn:xmpp:carbons:2") {
		t.Errorf("carbons not advertised: %v", feats)
	}
	pa, pb := ts.Account(t, alice), ts.Account(t, bob)
	a1 := xmpptest.Login(t, ts.Addr, alice, pa, "a1")
	a2 := xmpptest.Login(t, ts.Addr, alice, pa, "a2")
	a3 := xmpptest.Login(t, ts.Addr, alice, pa, "a3") // never enables
	b := xmpptest.Login(t, ts.Addr, bob, pb, "b")
	for _, c := range []*xmpptest.Client{a1, a2, a3, b} {
		c.Available()
	}
	aBare := alice + "@localhost"
	enableCarbons(t, a1, "", "enable")
	enableCarbons(t, a2, "localhost", "enable")
	enableCarbons(t, a2, aBare, "enable") // twice is fine

	// only set is accepted
	a1.Send(`<iq type='get' id='g'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
	if r := a1.Expect("get", func(e xmpptest.Elem) bool { return e.Attr("id") == "g" }); r.Attr("type") != "error" || !strings.Contains(r.Inner, "bad-request") {
		t.Errorf("get enable: %v", r)
	}

	// B to A/a1: a2 gets a received carbon
	b.Send(`<message type='chat' id='r1' to='` + aBare + `/a1'><body>to a1</body></message>`)
	a1.Expect("r1", func(e xmpptest.Elem) bool { return e.Attr("id") == "r1" })
	e := a2.Expect("received carbon", isCarbonOf("r1"))
	if e.Attr("from") != aBare || e.Attr("to") != aBare+"/a2" || e.Attr("type") != "chat" {
		t.Errorf("carbon addressing: %v", e)
	}
	c := decodeCarbon(t, e)
	if c.Received == nil || c.Sent != nil {
		t.Fatalf("not a received carbon: %v", e)
	}
	if m := c.Received.Forwarded.Message; m.From != bob+"@localhost/b" || m.To != aBare+"/a1" || m.Body != "to a1" {
		t.Errorf("forwarded message %+v", m)
	}

	// A/a1 to B: a2 gets a sent carbon
	a1.Send(`<message type='chat' id='s1' to='` + bob + `@localhost'><body>to b</body></message>`)
	b.Expect("s1", func(e xmpptest.Elem) bool { return e.Attr("id") == "s1" })
	e = a2.Expect("sent carbon", isCarbonOf("s1"))
	if e.Attr("from") != aBare || e.Attr("to") != aBare+"/a2" {
		t.Errorf("carbon addressing: %v", e)
	}
	c = decodeCarbon(t, e)
	if c.Sent == nil || c.Received != nil {
		t.Fatalf("not a sent carbon: %v", e)
	}
	if m := c.Sent.Forwarded.Message; m.From != aBare+"/a1" || m.To != bob+"@localhost" || m.Body != "to b" {
		t.Errorf("forwarded message %+v", m)
	}

	// normal with a body is copied too
	b.Send(`<message id='n1' to='` + aBare + `/a1'><body>normal</body></message>`)
	a1.Expect("n1", func(e xmpptest.Elem) bool { return e.Attr("id") == "n1" })
	a2.Expect("normal carbon", isCarbonOf("n1"))

	// not copied: private, no-copy, headline, normal without body, and
	// what is already a carbon
	b.Send(`<message type='chat' id='p1' to='` + aBare + `/a1'><body>private</body><private xmlns='urn:xmpp:carbons:2'/></message>`)
	a1.Send(`<message type='chat' id='p2' to='` + bob + `@localhost'><body>no copy</body><no-copy xmlns='urn:xmpp:hints'/></message>`)
	b.Send(`<message type='headline' id='p3' to='` + aBare + `/a1'><body>news</body></message>`)
	b.Send(`<message id='p4' to='` + aBare + `/a1'><x xmlns='urn:x'/></message>`)
	b.Send(`<message type='chat' id='p5' to='` + aBare + `/a1'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' id='p5x'/></forwarded></received></message>`)
	b.Sync()
	a1.Expect("p5", func(e xmpptest.Elem) bool { return e.Attr("id") == "p5" })
	noneOf(t, a2, "p1", "p2", "p3", "p4", "p5", "p5x")

	// a chat to the bare JID reaches every available resource itself: no
	// carbon on top
	b.Send(`<message type='chat' id='bare1' to='` + aBare + `'><body>all</body></message>`)
	a2.Expect("bare1", func(e xmpptest.Elem) bool { return e.Attr("id") == "bare1" })
	noneOf(t, a2, "bare1")

	// a2 disables: nothing more
	enableCarbons(t, a2, "", "disable")
	b.Send(`<message type='chat' id='d1' to='` + aBare + `/a1'><body>after disable</body></message>`)
	a1.Send(`<message type='chat' id='d2' to='` + bob + `@localhost'><body>after disable</body></message>`)
	a1.Expect("d1", func(e xmpptest.Elem) bool { return e.Attr("id") == "d1" })
	a1.Sync()
	b.Sync()
	noneOf(t, a2, "d1", "d2")

	// a1 is still enabled: a message to a2 is copied to it, and one a2
	// sends too
	b.Send(`<message type='chat' id='x1' to='` + aBare + `/a2'><body>to a2</body></message>`)
	a1.Expect("carbon of x1", isCarbonOf("x1"))
	a2.Send(`<message type='chat' id='x2' to='` + bob + `@localhost/b'><body>from a2</body></message>`)
	a1.Expect("carbon of x2", isCarbonOf("x2"))

	// a3 never enabled and got no carbon at all (only its bare-JID chat)
	a3.Send(`<iq type='get' id='end' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	for {
		e := a3.Next()
		if e.Attr("id") == "end" {
			break
		}
		if strings.Contains(e.Inner, "urn:xmpp:carbons:2") || (e.XMLName.Local == "message" && e.Attr("id") != "bare1") {
			t.Fatalf("a3 got %v", e)
		}
	}
}

// A session that closes with carbons on is forgotten: a new session with
// the same resource does not inherit them.
func TestCarbonsNotInherited(t *testing.T) {
	ts := startServer(t)
	pa, pb := ts.Account(t, alice), ts.Account(t, bob)
	aBare := alice + "@localhost"
	a1 := xmpptest.Login(t, ts.Addr, alice, pa, "a1")
	a2 := xmpptest.Login(t, ts.Addr, alice, pa, "a2")
	b := xmpptest.Login(t, ts.Addr, bob, pb, "b")
	a1.Available()
	a2.Available()
	enableCarbons(t, a2, "", "enable")
	a2.Conn.Close()
	a2 = xmpptest.Login(t, ts.Addr, alice, pa, "a2")
	a2.Available()
	b.Send(`<message type='chat' id='r1' to='` + aBare + `/a1'><body>x</body></message>`)
	a1.Expect("r1", func(e xmpptest.Elem) bool { return e.Attr("id") == "r1" })
	b.Sync()
	noneOf(t, a2, "r1")
}
