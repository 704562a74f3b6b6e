package xmppd_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd"
)

// scriptedPeer is the receiving server of links our server opens: it
// accepts on its listener and plays one script per connection, so a test
// can drive what a real peer would do and see what arrives.
type scriptedPeer struct {
	t     *testing.T
	l     net.Listener
	conns chan *peerConn
}

func newScriptedPeer(t *testing.T) *scriptedPeer {
	t.Helper()
	p := &scriptedPeer{t: t, l: listen(t), conns: make(chan *peerConn, 8)}
	t.Cleanup(func() { p.l.Close() })
	go func() {
		for {
			c, err := p.l.Accept()
			if err != nil {
				close(p.conns)
				return
			}
			t.Cleanup(func() { c.Close() })
			p.conns <- &peerConn{t: t, conn: c}
		}
	}()
	return p
}

func (p *scriptedPeer) addr() string { return p.l.Addr().String() }

// next returns the next connection our server opened to the peer.
func (p *scriptedPeer) next(within time.Duration) *peerConn {
	p.t.Helper()
	select {
	case c, ok := <-p.conns:
		if !ok {
			p.t.Fatal("the peer's listener closed")
		}
		return c
	case <-time.After(within):
		p.t.Fatalf("no connection to the peer within %v", within)
		return nil
	}
}

// peerConn is one connection as the receiving server sees it.
type peerConn struct {
	t    *testing.T
	conn net.Conn
	dec  *xml.Decoder
	id   string // the stream id we gave
}

func (c *peerConn) send(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatal(err)
	}
}

// readHeader reads the initiating server's stream header (a new decoder:
// after TLS the stream starts again) and returns it.
func (c *peerConn) readHeader() xml.StartElement {
	c.t.Helper()
	c.dec = xml.NewDecoder(bufio.NewReader(c.conn))
	for {
		tok := c.token(5 * time.Second)
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			return se
		}
	}
}

func (c *peerConn) token(within time.Duration) xml.Token {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(within))
	tok, err := c.dec.Token()
	if err != nil {
		c.t.Fatalf("peer read: %v", err)
	}
	return tok
}

// element reads the next top-level element and returns its start and
// inner XML.
func (c *peerConn) element(within time.Duration) (xml.StartElement, string) {
	c.t.Helper()
	for {
		if se, ok := c.token(within).(xml.StartElement); ok {
			var e struct {
				Inner string `xml:",innerxml"`
			}
			if err := c.dec.DecodeElement(&e, &se); err != nil {
				c.t.Fatal(err)
			}
			return se, e.Inner
		}
	}
}

// openAs answers the header with ours (from domain) and features.
func (c *peerConn) openAs(domain, features string) {
	c.t.Helper()
	c.id = "peer-" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "")
	c.send(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='` +
		domain + `' id='` + c.id + `' version='1.0'><stream:features>` + features + `</stream:features>`)
}

// acceptDialback plays a receiving server that offers STARTTLS, then
// dialback without bidi (as Prosody 0.12 does), takes the key on trust
// and says it is valid. It returns when the link is up.
func (c *peerConn) acceptDialback(domain string, cert tls.Certificate) {
	c.t.Helper()
	c.readHeader()
	c.openAs(domain, `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>`)
	if se, _ := c.element(5 * time.Second); se.Name.Local != "starttls" {
		c.t.Fatalf("want starttls, got %v", se.Name)
	}
	c.send(`<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	tc := tls.Server(c.conn, &tls.Config{Certificates: []tls.Certificate{cert}})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	tc.SetDeadline(time.Time{})
	c.conn = tc
	c.readHeader()
	c.openAs(domain, `<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>`)
	se, _ := c.element(5 * time.Second)
	if se.Name.Local != "result" {
		c.t.Fatalf("want db:result, got %v", se.Name)
	}
	c.send(`<db:result from='` + domain + `' to='` + attrOf(se, "from") + `' type='valid'/>`)
}

// waitClosed reads until our server ends the stream (</stream:stream> or
// EOF) and returns how long that took; it fails after within.
func (c *peerConn) waitClosed(within time.Duration) time.Duration {
	c.t.Helper()
	start := time.Now()
	c.conn.SetReadDeadline(start.Add(within))
	for {
		tok, err := c.dec.Token()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			c.t.Fatalf("the link was still open %v after it went quiet", within)
		case err != nil:
			return time.Since(start)
		}
		if ee, ok := tok.(xml.EndElement); ok && ee.Name.Local == "stream" {
			return time.Since(start)
		}
	}
}

// startWithScriptedPeer starts a.test with its links to b.test going to a
// scripted peer (b.test's self-signed certificate accepted).
func startWithScriptedPeer(t *testing.T, idle time.Duration) (*fedServer, *scriptedPeer) {
	t.Helper()
	peer := newScriptedPeer(t)
	a := startFedServer(t, "a.test", listen(t), fedOpts{cert: selfSigned(t, "a.test"), fed: xmppd.FederationConfig{
		Routes:          map[string]string{"b.test": peer.addr()},
		InsecureDomains: []string{"b.test"},
		IdleTimeout:     idle,
	}})
	return a, peer
}

// An outgoing link whose peer never authenticated to us (no bidi, as with
// Prosody 0.12) is closed once it carried no stanza for the idle timeout,
// and the next stanza opens a new one (SPEC.md XMPPD_S2S_IDLE_TIMEOUT:
// every federation link, incoming or outgoing).
func TestS2SIdleOutgoingLinkCloses(t *testing.T) {
	const idle = 300 * time.Millisecond
	a, peer := startWithScriptedPeer(t, idle)
	alice := a.login(t, "+821012345678", "phone")
	bCert := selfSigned(t, "b.test")

	alice.Send(`<message type='chat' id='o1' to='bob@b.test'><body>first</body></message>`)
	c := peer.next(5 * time.Second)
	c.acceptDialback("b.test", bCert)
	if se, inner := c.element(5 * time.Second); se.Name.Local != "message" || !strings.Contains(inner, "first") {
		t.Fatalf("want the message, got %v %s", se.Name, inner)
	}
	if n := a.metric(t, "xmppd_s2s_links", "direction", "out"); n != 1 {
		t.Fatalf("%v outgoing links up, want 1", n)
	}
	took := c.waitClosed(20 * idle)
	if took > 10*idle {
		t.Errorf("the idle link closed after %v (idle timeout %v)", took, idle)
	}
	waitUntil(t, "the closed link to be uncounted", func() bool { return a.metric(t, "xmppd_s2s_links", "direction", "out") == 0 })

	alice.Send(`<message type='chat' id='o2' to='bob@b.test'><body>second</body></message>`)
	c2 := peer.next(5 * time.Second)
	c2.acceptDialback("b.test", bCert)
	if se, inner := c2.element(5 * time.Second); se.Name.Local != "message" || !strings.Contains(inner, "second") {
		t.Fatalf("want the second message on a new link, got %v %s", se.Name, inner)
	}
	// Nothing came back to alice: the next thing she gets is the answer
	// to a ping sent now.
	alice.Send(`<iq type='get' id='after' to='a.test'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if e := alice.Next(); e.Attr("id") != "after" {
		t.Errorf("alice got %v", e)
	}
}

// A link that stays busy is not closed: stanzas either way keep it up.
// (The margins are wide, a stanza every eighth of the idle timeout, so
// that a loaded machine does not make a gap of a whole timeout.)
func TestS2SBusyOutgoingLinkStays(t *testing.T) {
	const idle = 2 * time.Second
	a, peer := startWithScriptedPeer(t, idle)
	alice := a.login(t, "+821012345678", "phone")
	alice.Send(`<message type='chat' to='bob@b.test'><body>0</body></message>`)
	c := peer.next(5 * time.Second)
	c.acceptDialback("b.test", selfSigned(t, "b.test"))
	c.element(5 * time.Second)
	// One and a half idle periods with a stanza every idle/8: the same
	// link carries all.
	for i := 1; i <= 12; i++ {
		time.Sleep(idle / 8)
		alice.Send(`<message type='chat' to='bob@b.test'><body>` + string(rune('a'+i)) + `</body></message>`)
		if se, _ := c.element(5 * time.Second); se.Name.Local != "message" {
			t.Fatalf("message %d: got %v", i, se.Name)
		}
	}
	select {
	case extra := <-peer.conns:
		t.Fatalf("a second link was opened: %v", extra.conn.RemoteAddr())
	default:
	}
}

// dialbackKeyFor is the XEP-0185 key a server with secret makes for the
// stream id from originating to receiving (as xmppd makes it).
func dialbackKeyFor(secret, receiving, originating, id string) string {
	h := sha256.Sum256([]byte(secret))
	mac := hmac.New(sha256.New, []byte(hex.EncodeToString(h[:])))
	mac.Write([]byte(receiving + " " + originating + " " + id))
	return hex.EncodeToString(mac.Sum(nil))
}

// A peer whose certificate is not valid and whose domain is not in
// XMPPD_S2S_INSECURE_DOMAINS cannot authenticate by dialback either, even
// with a key its own server confirms; listed, it can.
func TestS2SInvalidCertificateNoDialback(t *testing.T) {
	for _, tc := range []struct {
		name     string
		insecure []string
		want     string
	}{
		{"unlisted", nil, "invalid"},
		{"listed", []string{"b.test"}, "valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			la, lb := listen(t), listen(t)
			routes := map[string]string{"a.test": la.Addr().String(), "b.test": lb.Addr().String()}
			bCert := selfSigned(t, "b.test")
			a := startFedServer(t, "a.test", la, fedOpts{cert: selfSigned(t, "a.test"), fed: xmppd.FederationConfig{
				Routes: routes, InsecureDomains: tc.insecure, DisableBidi: true,
			}})
			startFedServer(t, "b.test", lb, fedOpts{cert: bCert, fed: xmppd.FederationConfig{
				Routes: routes, InsecureDomains: []string{"a.test"}, DialbackSecret: []byte("b secret"), DisableBidi: true,
			}})
			p := dialRawPeer(t, a.s2s, "b.test", "a.test", bCert)
			p.expect("features")
			key := dialbackKeyFor("b secret", "a.test", "b.test", p.id)
			p.send(`<db:result from='b.test' to='a.test'>` + key + `</db:result>`)
			p.expect("result")
			if typ := attrOf(p.last, "type"); typ != tc.want {
				t.Fatalf("dialback result %q, want %q", typ, tc.want)
			}
		})
	}
}

// With XMPPD_S2S_REQUIRE_TLS an incoming peer that does not use the
// STARTTLS offered gets nothing done: a stanza, a dialback request or a
// dialback verification before TLS ends the stream with policy-violation.
// Without it, the verification is answered.
func TestS2SRequireTLSRefusesPlaintextPeer(t *testing.T) {
	for _, tc := range []struct {
		name, send string
		plaintext  bool
		want       string // stream error condition, or the element answered
	}{
		{"stanza", `<message from='eve@evil.test' to='+821012345678@a.test'><body>x</body></message>`, false, "policy-violation"},
		{"dialback", `<db:result from='evil.test' to='a.test'>0123456789abcdef</db:result>`, false, "policy-violation"},
		{"verify", `<db:verify from='evil.test' to='a.test' id='x1'>0123456789abcdef</db:verify>`, false, "policy-violation"},
		{"verify allowed", `<db:verify from='evil.test' to='a.test' id='x1'>0123456789abcdef</db:verify>`, true, "verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startFedServer(t, "a.test", listen(t), fedOpts{cert: selfSigned(t, "a.test"), fed: xmppd.FederationConfig{AllowPlaintext: tc.plaintext}})
			c, err := net.Dial("tcp", a.s2s)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			p := &rawPeer{t: t, conn: c}
			p.open("evil.test", "a.test")
			p.expect("features")
			p.send(tc.send)
			if tc.want == "verify" {
				p.expect("verify")
				if typ := attrOf(p.last, "type"); typ != "invalid" {
					t.Errorf("verify answered %q", typ)
				}
				return
			}
			if inner := p.expect("error"); !strings.Contains(inner, tc.want) {
				t.Fatalf("stream error %s, want %s", inner, tc.want)
			}
		})
	}
}

// A remote server that cannot be reached (here: its name does not even
// resolve in time) is remote-server-not-found, type cancel; one whose
// link fails the TLS rules (no STARTTLS offered while TLS is required) is
// remote-server-timeout, type wait (SPEC.md "SMS texts").
func TestS2SErrorConditions(t *testing.T) {
	// A DNS server that never answers: the SRV lookups run into the
	// connect timeout.
	dns, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", dns.LocalAddr().String())
	}}
	peer := newScriptedPeer(t)
	a := startFedServer(t, "a.test", listen(t), fedOpts{cert: selfSigned(t, "a.test"), fed: xmppd.FederationConfig{
		Routes:         map[string]string{"notls.test": peer.addr()},
		Resolver:       resolver,
		ConnectTimeout: 700 * time.Millisecond,
	}})
	alice := a.login(t, "+821012345678", "phone")

	errorOf := func(id string) (typ, cond string) {
		t.Helper()
		e := alice.Expect("error "+id, func(e xmpptest.Elem) bool { return e.Attr("id") == id })
		var x struct {
			Error struct {
				Type string                       `xml:"type,attr"`
				Any  []struct{ XMLName xml.Name } `xml:",any"`
			} `xml:"error"`
		}
		if err := xml.Unmarshal([]byte("<x>"+e.Inner+"</x>"), &x); err != nil || e.Attr("type") != "error" {
			t.Fatalf("not an error: %v (%v)", e, err)
		}
		for _, a := range x.Error.Any {
			if a.XMLName.Local != "text" {
				cond = a.XMLName.Local
			}
		}
		return x.Error.Type, cond
	}

	alice.Send(`<message type='chat' id='e1' to='x@unresolvable.test'><body>hi</body></message>`)
	if typ, cond := errorOf("e1"); typ != "cancel" || cond != "remote-server-not-found" {
		t.Errorf("unreachable: %s/%s, want cancel/remote-server-not-found", typ, cond)
	}

	alice.Send(`<message type='chat' id='e2' to='x@notls.test'><body>hi</body></message>`)
	c := peer.next(5 * time.Second)
	c.readHeader()
	c.openAs("notls.test", `<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>`)
	if typ, cond := errorOf("e2"); typ != "wait" || cond != "remote-server-timeout" {
		t.Errorf("no TLS: %s/%s, want wait/remote-server-timeout", typ, cond)
	}
}
