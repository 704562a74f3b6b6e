package daemon_test

import (
	"strings"
	"testing"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd/mod/disco"

	"mellium.im/xmpp/disco/info"
)

const (
	nsPubsub  = "http://jabber.org/protocol/pubsub"
	nsPSErr   = "{http://jabber.org/protocol/pubsub#errors}"
	nodeNick  = "http://jabber.org/protocol/nick"
	nodeOMEMO = "eu.siacs.conversations.axolotl.devicelist"
	nodeBM2   = "urn:xmpp:bookmarks:1"
)

// capsOnline logs u in with XEP-0115 caps announcing +notify for nodes,
// and answers the server's disco#info query for them.
func (s *daemonUnderTest) capsOnline(t *testing.T, u user, res string, nodes ...string) *xmpptest.Client {
	t.Helper()
	c := s.login(t, u, res)
	r, _ := iq(c, "get", "", `<query xmlns='jabber:iq:roster'/>`)
	mustResult(t, r)
	ids := []info.Identity{{Category: "client", Type: "phone", Name: "test"}}
	feats := []string{nsDiscoInf, nsCaps}
	for _, n := range nodes {
		feats = append(feats, n+"+notify")
	}
	ver := disco.CapsVer(ids, feats)
	c.Send(`<presence><c xmlns='` + nsCaps + `' hash='sha-1' node='https://test.example' ver='` + ver + `'/></presence>`)
	q, _ := until(c, "disco#info query", func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "iq" && e.Attr("type") == "get" && strings.Contains(e.Inner, nsDiscoInf)
	})
	var b strings.Builder
	b.WriteString(`<iq type='result' id='` + q.Attr("id") + `' to='` + q.Attr("from") + `'><query xmlns='` + nsDiscoInf + `' node='https://test.example#` + ver + `'>`)
	b.WriteString(`<identity category='client' type='phone' name='test'/>`)
	for _, f := range feats {
		b.WriteString(`<feature var='` + f + `'/>`)
	}
	b.WriteString(`</query></iq>`)
	c.Send(b.String())
	return c
}

func publish(c *xmpptest.Client, node, id, item, options string) xmpptest.Elem {
	c.T.Helper()
	if options != "" {
		options = `<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>` + options + `</x></publish-options>`
	}
	e, _ := iq(c, "set", "", `<pubsub xmlns='`+nsPubsub+`'><publish node='`+node+`'><item id='`+id+`'>`+item+`</item></publish>`+options+`</pubsub>`)
	return e
}

func field(name, value string) string {
	return `<field var='` + name + `'><value>` + value + `</value></field>`
}

func items(c *xmpptest.Client, owner, node, extra string) xmpptest.Elem {
	c.T.Helper()
	e, _ := iq(c, "get", owner, `<pubsub xmlns='`+nsPubsub+`'><items node='`+node+`'`+extra+`/></pubsub>`)
	return e
}

// isEvent matches a PEP notification from owner that contains what.
func isEvent(owner, what string) func(xmpptest.Elem) bool {
	return func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "message" && e.Attr("from") == owner && e.Attr("type") == "headline" &&
			strings.Contains(e.Inner, nsPubsub+"#event") && strings.Contains(e.Inner, what)
	}
}

func wantApp(t *testing.T, e xmpptest.Elem, typ, cond, app string) {
	t.Helper()
	se := wantError(t, e, typ, cond)
	if len(se.App) != 1 || se.App[0] != nsPSErr+app {
		t.Errorf("application condition %v, want %s", se.App, app)
	}
}

// PEP between two contacts and a stranger: notifications go only to the
// resources whose caps ask for them, the last item to a resource coming
// online, access models and publish-options are enforced, and bad input
// gets XEP-0060's errors.
func testPEP(t *testing.T, s *daemonUnderTest) {
	a, b, stranger := s.newUser(t), s.newUser(t), s.newUser(t)
	a0, b0 := s.online(t, a, "setup"), s.online(t, b, "setup")
	befriend(t, a0, b0)
	c := s.online(t, stranger, "c")

	info, _ := iq(a0, "get", a.bare(), `<query xmlns='`+nsDiscoInf+`'/>`)
	for _, want := range []string{`category="pubsub" type="pep"`, nsPubsub + `#publish-options`, nsPubsub + `#access-whitelist`, nsPubsub + `#config-node-max`} {
		if !strings.Contains(info.Inner, want) {
			t.Errorf("account disco#info lacks %s: %v", want, info)
		}
	}

	mustResult(t, publish(a0, nodeNick, "current", `<nick xmlns='`+nodeNick+`'>Alice</nick>`, ""))
	// Resources coming online with +notify get the last item: b's of its
	// contact, a's of its own account.
	b1 := s.capsOnline(t, b, "phone", nodeNick, nodeOMEMO)
	until(b1, "a's nick on login", isEvent(a.bare(), "Alice"))
	a1 := s.capsOnline(t, a, "phone", nodeNick)
	until(a1, "own nick on login", isEvent(a.bare(), "Alice"))

	mustResult(t, publish(a0, nodeNick, "current", `<nick xmlns='`+nodeNick+`'>Alice Two</nick>`, ""))
	until(b1, "nick notification", isEvent(a.bare(), "Alice Two"))
	until(a1, "own nick notification", isEvent(a.bare(), "Alice Two"))
	got := items(b1, a.bare(), nodeNick, "")
	mustResult(t, got)
	if !strings.Contains(got.Inner, "Alice Two") || strings.Count(got.Inner, "<item ") != 1 {
		t.Errorf("b reads a's nick: %v", got)
	}
	wantApp(t, items(c, a.bare(), nodeNick, ""), "auth", "not-authorized", "presence-subscription-required")

	// OMEMO: open access through publish-options; a stranger reads it.
	devices := `<list xmlns='eu.siacs.conversations.axolotl'><device id='12345'/></list>`
	mustResult(t, publish(a0, nodeOMEMO, "current", devices, field("pubsub#access_model", "open")))
	until(b1, "device list notification", isEvent(a.bare(), "12345"))
	if got := items(c, a.bare(), nodeOMEMO, ""); got.Attr("type") != "result" || !strings.Contains(got.Inner, "12345") {
		t.Errorf("stranger reads the open device list: %v", got)
	}
	wantApp(t, publish(a0, nodeOMEMO, "current", devices, field("pubsub#access_model", "presence")), "cancel", "conflict", "precondition-not-met")

	// Bookmarks (XEP-0402): whitelist, the owner alone reads them.
	conf := `<conference xmlns='urn:xmpp:bookmarks:1' name='Team' autojoin='true'/>`
	mustResult(t, publish(a0, nodeBM2, "team@groups.example", conf,
		field("pubsub#persist_items", "true")+field("pubsub#max_items", "max")+field("pubsub#send_last_published_item", "never")+field("pubsub#access_model", "whitelist")))
	wantApp(t, items(b1, a.bare(), nodeBM2, ""), "cancel", "not-allowed", "closed-node")
	if got := items(a0, "", nodeBM2, ""); !strings.Contains(got.Inner, "team@groups.example") {
		t.Errorf("own bookmarks: %v", got)
	}

	// Bad input.
	big := `<nick xmlns='` + nodeNick + `'>` + strings.Repeat("x", 70000) + `</nick>`
	wantApp(t, publish(a0, nodeNick, "big", big, ""), "modify", "not-acceptable", "payload-too-big")
	wantError(t, items(a0, "", "urn:x:nothing", ""), "cancel", "item-not-found")
	e, _ := iq(b1, "set", a.bare(), `<pubsub xmlns='`+nsPubsub+`'><publish node='`+nodeNick+`'><item><nick xmlns='`+nodeNick+`'>B</nick></item></publish></pubsub>`)
	wantError(t, e, "auth", "forbidden")
	e, _ = iq(a0, "set", "", `<pubsub xmlns='`+nsPubsub+`'><publish><item><nick xmlns='`+nodeNick+`'>B</nick></item></publish></pubsub>`)
	wantApp(t, e, "modify", "bad-request", "nodeid-required")

	// max_items is clamped to XMPPD_PEP_MAX_ITEMS.
	e, _ = iq(a0, "set", "", `<pubsub xmlns='`+nsPubsub+`#owner'><configure node='`+nodeNick+`'><x xmlns='jabber:x:data' type='submit'>`+field("pubsub#max_items", "1000")+`</x></configure></pubsub>`)
	mustResult(t, e)
	e, _ = iq(a0, "get", "", `<pubsub xmlns='`+nsPubsub+`#owner'><configure node='`+nodeNick+`'/></pubsub>`)
	if !strings.Contains(e.Inner, `<field var="pubsub#max_items" type="text-single"><value>256</value>`) {
		t.Errorf("configuration: %v", e)
	}

	// Retract with notify, then delete the node.
	e, _ = iq(a0, "set", "", `<pubsub xmlns='`+nsPubsub+`'><retract node='`+nodeNick+`' notify='true'><item id='current'/></retract></pubsub>`)
	mustResult(t, e)
	until(b1, "retraction", isEvent(a.bare(), `<retract id="current"`))
	e, _ = iq(a0, "set", "", `<pubsub xmlns='`+nsPubsub+`#owner'><delete node='`+nodeNick+`'/></pubsub>`)
	mustResult(t, e)
	until(b1, "deletion", isEvent(a.bare(), `<delete node="`+nodeNick+`"`))
	wantError(t, items(b1, a.bare(), nodeNick, ""), "cancel", "item-not-found")

	// Resources that announced no interest got nothing at all.
	for _, cl := range []*xmpptest.Client{b0, c} {
		for _, e := range drain(cl) {
			if e.XMLName.Local == "message" {
				t.Errorf("%s got a notification it did not ask for: %v", cl.JID, e)
			}
		}
	}
}
