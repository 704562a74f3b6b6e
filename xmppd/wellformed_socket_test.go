package xmppd_test

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"mellium.im/sasl"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd"
	"dialtone/xmppd/internal/wellformedtest"
	"dialtone/xmppd/router"
)

// offlineRecorder is an offline store that keeps what it is given: a
// module that takes the messages no session took.
type offlineRecorder struct {
	mu     sync.Mutex
	stored []string
}

func (r *offlineRecorder) Register(h *router.Hooks) error {
	h.Hook(router.Undelivered, router.Messages, 0, func(ctx context.Context, ev *router.Event) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.stored = append(r.stored, string(ev.Stanza.Bytes()))
		return router.ErrHandled
	})
	return nil
}

func (r *offlineRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.stored...)
}

// loginDirectTLS logs in over the direct TLS port (XEP-0368), with
// headerAttrs on the stream headers.
func loginDirectTLS(t *testing.T, ts *testServer, user, pass, res, headerAttrs string) *xmpptest.Client {
	t.Helper()
	c := xmpptest.DialTLS(t, ts.directAddr)
	c.HeaderAttrs = headerAttrs
	c.Open("localhost")
	c.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" })
	if cond := c.Auth(sasl.ScramSha256, user, pass); cond != "" {
		t.Fatalf("login %s: %s", user, cond)
	}
	c.Bind(res)
	return c
}

func sortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Stanzas that are not namespace-well-formed end the sender's stream with
// not-well-formed and reach no one: neither an online receiver nor the
// offline store. Over STARTTLS and direct TLS alike.
func TestNotWellFormedNeverForwarded(t *testing.T) {
	rec := &offlineRecorder{}
	ts := startServerWith(t, []router.Module{rec})
	pa, pb := ts.account(t, alice), ts.account(t, bob)
	const carol = "+821055550000" // an account that stays offline
	ts.account(t, carol)
	b := xmpptest.Login(t, ts.addr, bob, pb, "laptop")
	b.Available()
	for i, name := range sortedNames(wellformedtest.NotWellFormed) {
		for _, to := range []string{bob + "@localhost/laptop", carol + "@localhost"} {
			var a *xmpptest.Client
			if i%2 == 0 {
				a = xmpptest.Login(t, ts.addr, alice, pa, "tcp")
			} else {
				a = loginDirectTLS(t, ts, alice, pa, "tls", "")
			}
			a.Send(fmt.Sprintf(wellformedtest.NotWellFormed[name], to))
			if cond := a.ExpectStreamError(); cond != "not-well-formed" {
				t.Errorf("%s to %s: stream error %q, want not-well-formed", name, to, cond)
			}
		}
	}
	a := loginDirectTLS(t, ts, alice, pa, "after", "")
	a.Send(`<message type='chat' id='good1' to='` + bob + `@localhost/laptop'><body>good</body></message>`)
	a.Send(`<message type='chat' id='good2' to='` + carol + `@localhost'><body>good</body></message>`)
	a.Sync()
	// The good message is the first thing bob gets: nothing bad came before it.
	if e := b.Next(); e.Attr("id") != "good1" {
		t.Fatalf("bob got %v before the good message", e)
	}
	stored := rec.all()
	if len(stored) != 1 || !strings.Contains(stored[0], `id="good2"`) {
		t.Fatalf("offline store holds %q", stored)
	}
}

// A prefix declared only on the sender's stream header is declared on the
// stanza as it is forwarded and stored: well-formed in any stream.
func TestHeaderPrefixCarried(t *testing.T) {
	rec := &offlineRecorder{}
	ts := startServerWith(t, []router.Module{rec})
	pa, pb := ts.account(t, alice), ts.account(t, bob)
	const carol = "+821055550000"
	ts.account(t, carol)
	b := xmpptest.Login(t, ts.addr, bob, pb, "laptop")
	b.Available()
	// The sender declares h on its stream headers, and uses it in stanzas.
	c := loginDirectTLS(t, ts, alice, pa, "h", "xmlns:h='urn:h'")
	c.Send(`<message type='chat' id='h1' to='` + bob + `@localhost/laptop' h:a='1'><body>h</body><h:x/></message>`)
	c.Send(`<message type='chat' id='h2' to='` + carol + `@localhost'><body>h</body><h:x/></message>`)
	c.Sync()
	m := b.Expect("h1", func(e xmpptest.Elem) bool { return e.Attr("id") == "h1" })
	declared := false
	for _, at := range m.Attrs {
		if at.Name.Space == "xmlns" && at.Name.Local == "h" && at.Value == "urn:h" {
			declared = true
		}
	}
	if !declared {
		t.Fatalf("forwarded without the declaration of h: %v", m)
	}
	stored := rec.all()
	if len(stored) != 1 || !strings.HasPrefix(stored[0], `<message `) || !strings.Contains(stored[0][:strings.IndexByte(stored[0], '>')], `xmlns:h="urn:h"`) {
		t.Fatalf("stored %q", stored)
	}
}

// RFC 6120 §4.7.5: a higher version is answered with 1.0, not refused.
func TestStreamVersionTwoAnsweredWithOne(t *testing.T) {
	ts := startServer(t)
	pa := ts.account(t, alice)
	c := xmpptest.DialTLS(t, ts.directAddr)
	c.Send(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='2.0'>`)
	if h := c.ReadHeader(); attrOf(h, "version") != "1.0" {
		t.Fatalf("answered version %q", attrOf(h, "version"))
	}
	c.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" })
	if cond := c.Auth(sasl.ScramSha256, alice, pa); cond != "" {
		t.Fatal(cond)
	}
	c.Send(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='2.0'>`)
	if h := c.ReadHeader(); attrOf(h, "version") != "1.0" {
		t.Fatalf("answered version %q after the restart", attrOf(h, "version"))
	}
}

// An XML declaration of another version or encoding, a stray end tag at
// the top level: stream errors, not a silent close or the end of the
// stream.
func TestStreamLevelErrors(t *testing.T) {
	ts := startServer(t)
	pa := ts.account(t, alice)
	const header = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`
	for _, tc := range []struct{ send, cond string }{
		{`<?xml version='1.1'?>` + header, "unsupported-version"},
		{`<?xml version='1.0' encoding='ISO-8859-1'?>` + header, "unsupported-encoding"},
		{`<?xml version='1.0' encoding='UTF-16'?>` + header, "unsupported-encoding"},
		{header + `</message>`, "not-well-formed"},
		{header + `</stream>`, "not-well-formed"},
		{`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' to='localhost' version='1.0'>`, "not-well-formed"},
		{`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:xml='urn:x' to='localhost' version='1.0'>`, "not-well-formed"},
	} {
		for _, direct := range []bool{false, true} {
			var c *xmpptest.Client
			if direct {
				c = xmpptest.DialTLS(t, ts.directAddr)
			} else {
				c = xmpptest.Dial(t, ts.addr)
			}
			c.Send(tc.send)
			c.ReadHeader()
			if got := c.ExpectStreamError(); got != tc.cond {
				t.Errorf("%s (direct TLS %v): got %q, want %q", tc.send, direct, got, tc.cond)
			}
		}
	}
	// After binding, on the restart after authentication.
	a := xmpptest.Login(t, ts.addr, alice, pa, "x")
	a.Send(`</message>`)
	if cond := a.ExpectStreamError(); cond != "not-well-formed" {
		t.Fatalf("stray end tag in a session: %q", cond)
	}
	c := xmpptest.DialTLS(t, ts.directAddr)
	c.Open("localhost")
	c.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" })
	if cond := c.Auth(sasl.ScramSha256, alice, pa); cond != "" {
		t.Fatal(cond)
	}
	c.Send(`<?xml version='1.1'?>` + header)
	c.ReadHeader()
	if cond := c.ExpectStreamError(); cond != "unsupported-version" {
		t.Fatalf("XML 1.1 on the restart: %q", cond)
	}
}

func TestS2SNotWellFormedNeverForwarded(t *testing.T) {
	ca := newTestCA(t)
	l := listen(t)
	a := startFedServer(t, "a.test", l, fedOpts{cert: ca.leaf(t, "a.test"), fed: xmppd.FederationConfig{RootCAs: ca.pool}})
	alice := a.login(t, "+821012345678", "phone")
	peer := func() *rawPeer {
		p := dialRawPeer(t, a.s2s, "evil.test", "a.test", ca.leaf(t, "evil.test"))
		p.expect("features")
		p.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>` + base64.StdEncoding.EncodeToString([]byte("evil.test")) + `</auth>`)
		p.expect("success")
		return p
	}
	// restart sends a stream header (after authentication) and reads the
	// server's.
	restart := func(p *rawPeer, header string) xml.StartElement {
		t.Helper()
		p.send(header)
		for range 10 {
			if se, ok := p.token().(xml.StartElement); ok && se.Name.Local == "stream" {
				return se
			}
		}
		t.Fatal("no stream header")
		return xml.StartElement{}
	}
	for _, name := range sortedNames(wellformedtest.NotWellFormed) {
		p := peer()
		p.open("evil.test", "a.test")
		p.expect("features")
		s := fmt.Sprintf(wellformedtest.NotWellFormed[name], "+821012345678@a.test")
		p.send(strings.Replace(s, "<message ", "<message from='eve@evil.test' ", 1))
		if inner := p.expect("error"); !strings.Contains(inner, "not-well-formed") {
			t.Errorf("%s: stream error %s", name, inner)
		}
	}
	for _, tc := range []struct{ prologue, cond string }{
		{`<?xml version='1.1'?>`, "unsupported-version"},
		{`<?xml version='1.0' encoding='ISO-8859-1'?>`, "unsupported-encoding"},
	} {
		p := peer()
		restart(p, tc.prologue+`<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='evil.test' to='a.test' version='1.0'>`)
		if inner := p.expect("error"); !strings.Contains(inner, tc.cond) {
			t.Errorf("%s: stream error %s", tc.prologue, inner)
		}
	}
	// A peer speaking a higher version is answered with 1.0 and served.
	p := peer()
	h := restart(p, `<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:h='urn:h' from='evil.test' to='a.test' version='2.0'>`)
	if v := attrOf(h, "version"); v != "1.0" {
		t.Fatalf("answered version %q", v)
	}
	p.expect("features")
	p.send(`<message from='eve@evil.test' to='+821012345678@a.test' type='chat' id='good'><body>good</body><h:x/></message>`)
	if e := alice.Next(); e.Attr("id") != "good" || !strings.Contains(e.Inner, "urn:h") && !hasDecl(e, "h", "urn:h") {
		t.Fatalf("alice got %v first", e)
	}
	p.send(`</x>`)
	if inner := p.expect("error"); !strings.Contains(inner, "not-well-formed") {
		t.Fatalf("stray end tag: stream error %s", inner)
	}
}

func hasDecl(e xmpptest.Elem, prefix, ns string) bool {
	for _, a := range e.Attrs {
		if a.Name.Space == "xmlns" && a.Name.Local == prefix && a.Value == ns {
			return true
		}
	}
	return false
}

func TestWebSocketNotWellFormedNeverForwarded(t *testing.T) {
	ts := startServer(t)
	pa, pb := ts.account(t, alice), ts.account(t, bob)
	b := xmpptest.Login(t, ts.addr, bob, pb, "laptop")
	b.Available()
	url, hc := startWS(t, ts, true)
	for _, name := range sortedNames(wellformedtest.NotWellFormed) {
		c := dialWS(t, url, hc)
		c.login(alice, pa, "web")
		c.send(fmt.Sprintf(wellformedtest.NotWellFormed[name], bob+"@localhost/laptop"))
		if cond := c.streamError(); cond != "not-well-formed" {
			t.Errorf("%s: stream error %q", name, cond)
		}
	}
	for _, tc := range []struct{ open, cond string }{
		{`<?xml version='1.1'?>` + wsOpen, "unsupported-version"},
		{`<?xml version='1.0' encoding='ISO-8859-1'?>` + wsOpen, "unsupported-encoding"},
		{`<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" to="localhost" version="1.0"/>`, "not-well-formed"},
	} {
		c := dialWS(t, url, hc)
		c.send(tc.open)
		c.next() // the server's <open/>
		if cond := c.streamError(); cond != tc.cond {
			t.Errorf("%s: stream error %q, want %q", tc.open, cond, tc.cond)
		}
	}
	// <open version='2.0'/> is answered with 1.0.
	c := dialWS(t, url, hc)
	c.send(`<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="2.0"/>`)
	if o, raw := c.next(); o.Attr("version") != "1.0" {
		t.Fatalf("answered %s", raw)
	}
	c = dialWS(t, url, hc)
	c.login(alice, pa, "web")
	c.send(`<message xmlns="jabber:client" type="chat" id="good" to="` + bob + `@localhost/laptop"><body>good</body></message>`)
	if e := b.Next(); e.Attr("id") != "good" {
		t.Fatalf("bob got %v before the good message", e)
	}
}
