package csi_test

import (
	"context"
	"encoding/xml"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd/internal/servertest"
	"dialtone/xmppd/mod/csi"
	"dialtone/xmppd/mod/sm"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

type sink struct {
	mu  sync.Mutex
	got []string
}

func (s *sink) Send(b []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, string(b))
	return true
}
func (s *sink) Close(string, string) {}

func (s *sink) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.got
	s.got = nil
	return g
}

func state(t *testing.T, h *router.Hooks, s *router.Session, name string) {
	t.Helper()
	fn := h.Nonza(router.SessionBound, csi.NS)
	if fn == nil {
		t.Fatal("no nonza handler")
	}
	el := wire.Element{Name: xml.Name{Space: csi.NS, Local: name}, Start: xml.StartElement{Name: xml.Name{Local: name}}}
	if _, err := fn(context.Background(), router.ConnInfo{Session: s}, el); err != nil {
		t.Fatal(err)
	}
}

const (
	presA1   = `<presence from="+821011111111@example.net/a"><show>away</show></presence>`
	presA2   = `<presence from="+821011111111@example.net/a"/>`
	presB    = `<presence from="+821022222222@example.net/b"/>`
	subReq   = `<presence from="+821022222222@example.net" type="subscribe"/>`
	typing   = `<message from="+821011111111@example.net/a" type="chat"><composing xmlns="http://jabber.org/protocol/chatstates"/></message>`
	paused   = `<message from="+821011111111@example.net/a" type="chat"><paused xmlns="http://jabber.org/protocol/chatstates"/></message>`
	typingB  = `<message from="+821022222222@example.net/b" type="chat"><composing xmlns="http://jabber.org/protocol/chatstates"/></message>`
	withBody = `<message from="+821011111111@example.net/a" type="chat"><body>hi</body><active xmlns="http://jabber.org/protocol/chatstates"/></message>`
	receipt  = `<message from="+821011111111@example.net/a"><received xmlns="urn:xmpp:receipts" id="x"/></message>`
	carbonCS = `<message from="+821033333333@example.net" type="chat"><received xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client" from="+821011111111@example.net/a" to="+821033333333@example.net/c" type="chat"><composing xmlns="http://jabber.org/protocol/chatstates"/></message></forwarded></received></message>`
	carbonMs = `<message from="+821033333333@example.net" type="chat"><received xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client" from="+821011111111@example.net/a" to="+821033333333@example.net/c" type="chat"><body>x</body></message></forwarded></received></message>`
	iqPing   = `<iq type="get" id="p" from="example.net"><ping xmlns="urn:xmpp:ping"/></iq>`
)

// TestHold: while inactive, the latest presence per contact resource and
// chat state per conversation wait, in order, until something urgent or
// <active/>; nothing else waits.
func TestHold(t *testing.T) {
	h := router.NewHooks()
	if err := csi.New().Register(h); err != nil {
		t.Fatal(err)
	}
	if f := string(h.Features(router.PostAuth, router.ConnInfo{})); !strings.Contains(f, csi.NS) {
		t.Fatalf("features %s", f)
	}
	out := &sink{}
	s := router.NewSession(context.Background(), jid.MustParse("+821033333333@example.net/c"), out)
	s.Send([]byte(presA1))
	if got := out.take(); len(got) != 1 || csi.Inactive(s) {
		t.Fatalf("active: %v", got)
	}
	state(t, h, s, "inactive")
	for _, b := range []string{presA1, typing, presB, carbonCS, presA2, paused, typingB} {
		s.Send([]byte(b))
	}
	if got := out.take(); len(got) != 0 || !csi.Inactive(s) {
		t.Fatalf("sent while inactive: %v", got)
	}
	s.Send([]byte(withBody)) // urgent: what waits goes first
	want := []string{presA2, paused, presB, carbonCS, typingB, withBody}
	if got := out.take(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("flushed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, urgent := range []string{subReq, receipt, carbonMs, iqPing} {
		s.Send([]byte(presB))
		s.Send([]byte(urgent))
		if got := out.take(); len(got) != 2 || got[0] != presB || got[1] != urgent {
			t.Fatalf("%s: %v", urgent, got)
		}
	}
	s.Send([]byte(typing))
	state(t, h, s, "active")
	if got := out.take(); len(got) != 1 || got[0] != typing {
		t.Fatalf("on active: %v", got)
	}
	s.Send([]byte(presA1))
	if got := out.take(); len(got) != 1 {
		t.Fatalf("active again: %v", got)
	}
}

// TestMaxHeld: beyond MaxHeld keys, what is held is sent.
func TestMaxHeld(t *testing.T) {
	h := router.NewHooks()
	csi.New().Register(h)
	out := &sink{}
	s := router.NewSession(context.Background(), jid.MustParse("+821033333333@example.net/c"), out)
	state(t, h, s, "inactive")
	for i := 0; i <= csi.MaxHeld; i++ {
		s.Send([]byte(`<presence from="u` + string(rune('a'+i%26)) + `@x/` + strings.Repeat("r", i) + `"/>`))
	}
	if got := out.take(); len(got) != csi.MaxHeld {
		t.Fatalf("sent %d", len(got))
	}
}

// TestSocket: over a real stream, a superseded chat state never arrives
// and the latest one comes before the message with a body.
func TestSocket(t *testing.T) {
	const alice, bob = "+821012345678", "+821087654321"
	ts := servertest.Start(t, servertest.With(csi.New()))
	pa, pb := ts.Account(t, alice), ts.Account(t, bob)
	a := xmpptest.Login(t, ts.Addr, alice, pa, "phone")
	b := xmpptest.Login(t, ts.Addr, bob, pb, "b")
	a.Send(`<inactive xmlns='urn:xmpp:csi:0'/>`)
	a.Sync()
	for _, st := range []string{"composing", "paused"} {
		b.Send(`<message type='chat' to='` + a.JID + `' id='` + st + `'><` + st + ` xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	}
	b.Send(`<message type='chat' to='` + a.JID + `' id='body'><body>hi</body></message>`)
	var ids []string
	for len(ids) < 2 {
		if e := a.Next(); e.XMLName.Local == "message" {
			ids = append(ids, e.Attr("id"))
		}
	}
	if strings.Join(ids, ",") != "paused,body" {
		t.Fatalf("got %v", ids)
	}
	b.Send(`<message type='chat' to='` + a.JID + `' id='c2'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	b.Sync()
	a.Send(`<active xmlns='urn:xmpp:csi:0'/>`)
	if e := a.Expect("c2", func(e xmpptest.Elem) bool { return e.XMLName.Local == "message" }); e.Attr("id") != "c2" {
		t.Fatalf("got %v", e)
	}
}

// TestResumedIsActive: a stream resumed (XEP-0198) starts active: what
// was held comes, and what follows is not held.
func TestResumedIsActive(t *testing.T) {
	const alice, bob = "+821012345678", "+821087654321"
	ts := servertest.Start(t, servertest.With(&sm.Module{ResumeTimeout: time.Minute}, csi.New()))
	pa, pb := ts.Account(t, alice), ts.Account(t, bob)
	a := xmpptest.Login(t, ts.Addr, alice, pa, "phone")
	a.Send(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	id := a.Expect("enabled", func(e xmpptest.Elem) bool { return e.XMLName.Local == "enabled" }).Attr("id")
	a.Send(`<inactive xmlns='urn:xmpp:csi:0'/>`)
	a.Sync() // the client counts 1 stanza: the sync's answer
	b := xmpptest.Login(t, ts.Addr, bob, pb, "b")
	b.Send(`<message type='chat' to='` + a.JID + `' id='held'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	b.Sync()
	a.Conn.Close()
	c := xmpptest.Dial(t, ts.Addr)
	c.Authenticate(alice, pa)
	c.Send(`<resume xmlns='urn:xmpp:sm:3' previd='` + id + `' h='1'/>`)
	c.Expect("resumed", func(e xmpptest.Elem) bool { return e.XMLName.Local == "resumed" })
	c.Expect("the held chat state", func(e xmpptest.Elem) bool { return e.Attr("id") == "held" })
	b.Send(`<message type='chat' to='` + a.JID + `' id='live'><paused xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	c.Expect("the next chat state, at once", func(e xmpptest.Elem) bool { return e.Attr("id") == "live" })
}
