package xmppd_test

import (
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd/mod/sm"
	"dialtone/xmppd/router"
)

// TestWebSocketResume: a XEP-0198 session over WebSocket whose
// connection drops is resumed on a new WebSocket, and gets what it did
// not count, once, then what came meanwhile.
func TestWebSocketResume(t *testing.T) {
	ts := startServerWith(t, []router.Module{&sm.Module{ResumeTimeout: time.Minute}})
	url, hc := startWS(t, ts, false)
	pa, pb := ts.account(t, alice), ts.account(t, bob)

	w := dialWS(t, url, hc)
	w.login(alice, pa, "browser")
	w.send(`<enable xmlns="urn:xmpp:sm:3" resume="true"/>`)
	en, raw := w.expect("enabled", func(e xmpptest.Elem) bool { return e.XMLName.Local == "enabled" })
	if en.Attr("id") == "" || en.Attr("resume") != "true" {
		t.Fatalf("enabled: %s", raw)
	}
	w.send(`<presence xmlns="jabber:client"/>`) // the client's stanza 1
	b := xmpptest.Login(t, ts.addr, bob, pb, "laptop")
	for _, id := range []string{"m0", "m1"} {
		b.Send(`<message type='chat' id='` + id + `' to='` + w.JID + `'><body>` + id + `</body></message>`)
	}
	b.Sync()
	w.expect("m0", func(e xmpptest.Elem) bool { return e.Attr("id") == "m0" }) // h = 1
	w.ws.CloseNow()                                                            // no <close/>: the connection is lost
	b.Send(`<message type='chat' id='m2' to='` + w.JID + `'><body>m2</body></message>`)
	b.Sync()

	w2 := dialWS(t, url, hc)
	_, f := w2.open()
	if !strings.Contains(f.Inner, "SCRAM-SHA-256") {
		t.Fatalf("features: %s", f.Inner)
	}
	if r := w2.auth(sasl.ScramSha256, alice, pa); r != "" {
		t.Fatalf("auth: %s", r)
	}
	if _, f = w2.open(); !strings.Contains(f.Inner, sm.NS) {
		t.Fatalf("no sm after auth: %s", f.Inner)
	}
	w2.send(`<resume xmlns="urn:xmpp:sm:3" previd="` + en.Attr("id") + `" h="1"/>`)
	e, raw := w2.next()
	if e.XMLName.Local != "resumed" || e.Attr("h") != "1" {
		t.Fatalf("resume: %s", raw)
	}
	var got []string
	for len(got) < 2 {
		e, _ := w2.next()
		if e.XMLName.Local == "message" {
			got = append(got, e.Attr("id"))
		}
	}
	if strings.Join(got, ",") != "m1,m2" {
		t.Fatalf("after resuming: %v", got)
	}
	w2.send(`<iq xmlns="jabber:client" type="get" id="p1" to="localhost"><ping xmlns="urn:xmpp:ping"/></iq>`)
	w2.expect("ping reply", func(e xmpptest.Elem) bool {
		if e.XMLName.Local == "message" {
			t.Fatalf("a message again: %v", e)
		}
		return e.Attr("id") == "p1"
	})
}
