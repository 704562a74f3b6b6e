package xmppd_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"mellium.im/sasl"

	"dialtone/auth"
	"dialtone/internal/tlscert"
	"dialtone/internal/xmpptest"
	"dialtone/xmppd"
	"dialtone/xmppd/internal/servertest"
	"dialtone/xmppd/router"
)

// testCA issues certificates for the federation tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "Dialtone test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert, key, pool}
}

// leaf issues a server certificate naming domain (DNS SAN).
func (ca *testCA) leaf(t testing.TB, domain string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: domain},
		DNSNames:     []string{domain},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// testLog writes the server's debug log to stderr when S2S_DEBUG is set.
func testLog(domain string) *slog.Logger {
	if os.Getenv("S2S_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("server", domain)
}

func selfSigned(t testing.TB, domain string) tls.Certificate {
	t.Helper()
	cert, err := tlscert.New(domain, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// fedServer is a server with federation on loopback.
type fedServer struct {
	*xmppd.Server
	fed      *xmppd.Federation
	domain   string
	c2s, s2s string
	accounts *memAccounts
	parser   *auth.NumberParser
	reg      *prometheus.Registry
}

type fedOpts struct {
	cert    tls.Certificate
	fed     xmppd.FederationConfig
	metrics *xmppd.Metrics  // nil: the server's own
	mods    []router.Module // loaded after servertest.Basic()
}

// startFedServer starts a server for domain whose s2s listener is l.
func startFedServer(t *testing.T, domain string, l net.Listener, o fedOpts) *fedServer {
	t.Helper()
	parser, err := auth.NewNumberParser("KR", nil)
	if err != nil {
		t.Fatal(err)
	}
	accounts := newMemAccounts()
	srv, err := xmppd.NewServer(xmppd.Config{
		Domain:   domain,
		TLS:      &tls.Config{Certificates: []tls.Certificate{o.cert}},
		SASL:     &auth.SASL{Parser: parser, Store: accounts, Lockout: auth.NewLockout(5), Domain: domain},
		Parser:   parser,
		Accounts: accounts,
		Log:      testLog(domain),
		Metrics:  o.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Load(append(servertest.Basic(), o.mods...)...); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	o.fed.Registerer = reg
	if o.fed.DialbackSecret == nil {
		o.fed.DialbackSecret = []byte("secret of " + domain)
	}
	if o.fed.ConnectTimeout == 0 {
		o.fed.ConnectTimeout = 5 * time.Second
	}
	fed, err := xmppd.NewFederation(srv, o.fed)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeC2S(cl)
	go fed.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := fed.Shutdown(ctx); err != nil {
			t.Errorf("federation shutdown: %v", err)
		}
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &fedServer{Server: srv, fed: fed, domain: domain, c2s: cl.Addr().String(), s2s: l.Addr().String(), accounts: accounts, parser: parser, reg: reg}
}

func (fs *fedServer) account(t testing.TB, number string) string {
	ts := &testServer{accounts: fs.accounts, parser: fs.parser}
	return ts.account(t, number)
}

func (fs *fedServer) login(t *testing.T, number, res string) *xmpptest.Client {
	t.Helper()
	pass := fs.account(t, number)
	c := xmpptest.Dial(t, fs.c2s)
	c.Domain = fs.domain
	c.Open(fs.domain)
	c.StartTLS()
	c.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" })
	if cond := c.Auth(sasl.ScramSha256, number, pass); cond != "" {
		t.Fatalf("login %s: %s", number, cond)
	}
	c.Bind(res)
	c.Available()
	return c
}

func (fs *fedServer) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := fs.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			if m.Counter != nil {
				sum += m.GetCounter().GetValue()
			} else if m.Gauge != nil {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// federatedPair starts a.test and b.test routed to each other.
func federatedPair(t *testing.T, certA, certB tls.Certificate, cfg func(*xmppd.FederationConfig)) (*fedServer, *fedServer) {
	t.Helper()
	la, lb := listen(t), listen(t)
	routes := map[string]string{"a.test": la.Addr().String(), "b.test": lb.Addr().String()}
	fa := xmppd.FederationConfig{Routes: routes}
	fb := xmppd.FederationConfig{Routes: routes}
	if cfg != nil {
		cfg(&fa)
		cfg(&fb)
	}
	a := startFedServer(t, "a.test", la, fedOpts{cert: certA, fed: fa})
	b := startFedServer(t, "b.test", lb, fedOpts{cert: certB, fed: fb})
	return a, b
}

func chat(t *testing.T, from *xmpptest.Client, to *xmpptest.Client, body string) {
	t.Helper()
	from.Send(`<message type='chat' id='m1' to='` + strings.Split(to.JID, "/")[0] + `'><body>` + body + `</body></message>`)
	e := to.Expect("message "+body, func(e xmpptest.Elem) bool { return e.XMLName.Local == "message" })
	if e.Attr("from") != from.JID || !strings.Contains(e.Inner, body) || e.Attr("type") == "error" {
		t.Fatalf("got %s, want a message from %s with %q", e, from.JID, body)
	}
}

func TestS2SDialbackWithSelfSignedCertificates(t *testing.T) {
	a, b := federatedPair(t, selfSigned(t, "a.test"), selfSigned(t, "b.test"), func(c *xmppd.FederationConfig) {
		c.InsecureDomains = []string{"a.test", "b.test"}
		c.DisableBidi = true
	})
	alice := a.login(t, "+821012345678", "phone")
	bob := b.login(t, "+821087654321", "desk")
	chat(t, alice, bob, "hello over dialback")
	chat(t, bob, alice, "and back")
	for _, fs := range []*fedServer{a, b} {
		if n := fs.metric(t, "xmppd_s2s_auth_total", "direction", "out", "method", "dialback", "result", "ok"); n != 1 {
			t.Errorf("%s: %v outgoing dialback authentications, want 1", fs.domain, n)
		}
		if n := fs.metric(t, "xmppd_s2s_auth_total", "direction", "in", "method", "dialback", "result", "ok"); n != 1 {
			t.Errorf("%s: %v incoming dialback authentications, want 1", fs.domain, n)
		}
		if n := fs.metric(t, "xmppd_s2s_auth_total", "method", "external"); n != 0 {
			t.Errorf("%s: EXTERNAL used (%v) with self-signed certificates", fs.domain, n)
		}
	}
	// The link is reused: more messages, no new authentication.
	chat(t, alice, bob, "again")
	if n := a.metric(t, "xmppd_s2s_auth_total", "direction", "out"); n != 1 {
		t.Errorf("a.test authenticated %v outgoing links, want 1", n)
	}
}

func TestS2SExternalWithValidCertificates(t *testing.T) {
	ca := newTestCA(t)
	a, b := federatedPair(t, ca.leaf(t, "a.test"), ca.leaf(t, "b.test"), func(c *xmppd.FederationConfig) {
		c.RootCAs = ca.pool
		c.DisableBidi = true
	})
	alice := a.login(t, "+821012345678", "phone")
	bob := b.login(t, "+821087654321", "desk")
	chat(t, alice, bob, "hello over EXTERNAL")
	chat(t, bob, alice, "and back")
	for _, fs := range []*fedServer{a, b} {
		for _, dir := range []string{"in", "out"} {
			if n := fs.metric(t, "xmppd_s2s_auth_total", "direction", dir, "method", "external", "result", "ok"); n != 1 {
				t.Errorf("%s: %v %s EXTERNAL authentications, want 1", fs.domain, n, dir)
			}
		}
		if n := fs.metric(t, "xmppd_s2s_auth_total", "method", "dialback"); n != 0 {
			t.Errorf("%s: dialback used (%v) with valid certificates", fs.domain, n)
		}
	}
}

func TestS2SBidiReusesOneLink(t *testing.T) {
	ca := newTestCA(t)
	a, b := federatedPair(t, ca.leaf(t, "a.test"), selfSigned(t, "b.test"), func(c *xmppd.FederationConfig) {
		c.RootCAs = ca.pool
		c.InsecureDomains = []string{"b.test"}
	})
	alice := a.login(t, "+821012345678", "phone")
	bob := b.login(t, "+821087654321", "desk")
	chat(t, alice, bob, "one link")
	chat(t, bob, alice, "both ways")
	if n := a.metric(t, "xmppd_s2s_links", "direction", "in"); n != 0 {
		t.Errorf("a.test has %v incoming links; with XEP-0288 b.test answers on a.test's link", n)
	}
	if n := b.metric(t, "xmppd_s2s_links", "direction", "out"); n != 0 {
		t.Errorf("b.test opened %v links of its own", n)
	}
	if n := b.metric(t, "xmppd_s2s_auth_total", "direction", "in", "method", "external"); n != 1 {
		t.Errorf("b.test: %v incoming EXTERNAL, want 1 (a.test's certificate is valid)", n)
	}
}

func TestS2SUnverifiableCertificateRefused(t *testing.T) {
	// b.test's self-signed certificate is not trusted by a.test.
	a, b := federatedPair(t, selfSigned(t, "a.test"), selfSigned(t, "b.test"), nil)
	alice := a.login(t, "+821012345678", "phone")
	_ = b
	alice.Send(`<message type='chat' id='x1' to='+821087654321@b.test'><body>hi</body></message>`)
	e := alice.Expect("error", func(e xmpptest.Elem) bool { return e.Attr("id") == "x1" })
	if e.Attr("type") != "error" || !strings.Contains(e.Inner, "remote-server-timeout") {
		t.Fatalf("got %s, want remote-server-timeout", e)
	}
}

func TestS2SUnreachableServer(t *testing.T) {
	dead := listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()
	l := listen(t)
	a := startFedServer(t, "a.test", l, fedOpts{cert: selfSigned(t, "a.test"), fed: xmppd.FederationConfig{
		Routes: map[string]string{"gone.test": deadAddr},
	}})
	alice := a.login(t, "+821012345678", "phone")
	start := time.Now()
	alice.Send(`<message type='chat' id='g1' to='someone@gone.test'><body>hi</body></message>`)
	e := alice.Expect("error", func(e xmpptest.Elem) bool { return e.Attr("id") == "g1" })
	if e.Attr("type") != "error" || !strings.Contains(e.Inner, "remote-server-not-found") || e.Attr("from") != "someone@gone.test" {
		t.Fatalf("got %s, want remote-server-not-found from someone@gone.test", e)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the error took %v", d)
	}
	// Within RetryAfter the answer comes at once, without a new attempt.
	alice.Send(`<message type='chat' id='g2' to='other@gone.test'><body>hi</body></message>`)
	e = alice.Expect("error", func(e xmpptest.Elem) bool { return e.Attr("id") == "g2" })
	if !strings.Contains(e.Inner, "remote-server-not-found") {
		t.Fatalf("got %s", e)
	}
}

func TestS2SSilentServerTimesOut(t *testing.T) {
	silent := listen(t)
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	t.Cleanup(func() { silent.Close() })
	l := listen(t)
	a := startFedServer(t, "a.test", l, fedOpts{cert: selfSigned(t, "a.test"), fed: xmppd.FederationConfig{
		Routes:         map[string]string{"slow.test": silent.Addr().String()},
		ConnectTimeout: 700 * time.Millisecond,
		QueueSize:      2,
	}})
	alice := a.login(t, "+821012345678", "phone")
	for _, id := range []string{"q1", "q2", "q3"} {
		alice.Send(`<message type='chat' id='` + id + `' to='x@slow.test'><body>hi</body></message>`)
	}
	// The queue holds two; the third is refused at once.
	got := map[string]string{}
	for len(got) < 3 {
		e := alice.Expect("errors", func(e xmpptest.Elem) bool { return e.Attr("type") == "error" })
		for _, c := range []string{"resource-constraint", "remote-server-timeout"} {
			if strings.Contains(e.Inner, c) {
				got[e.Attr("id")] = c
			}
		}
	}
	if got["q1"] != "remote-server-timeout" || got["q2"] != "remote-server-timeout" || got["q3"] != "resource-constraint" {
		t.Fatalf("errors %v", got)
	}
}

func TestS2SIdleLinkCloses(t *testing.T) {
	a, b := federatedPair(t, selfSigned(t, "a.test"), selfSigned(t, "b.test"), func(c *xmppd.FederationConfig) {
		c.InsecureDomains = []string{"a.test", "b.test"}
		c.IdleTimeout = 400 * time.Millisecond
	})
	alice := a.login(t, "+821012345678", "phone")
	bob := b.login(t, "+821087654321", "desk")
	chat(t, alice, bob, "brief")
	waitUntil(t, "the idle links to close", func() bool {
		return a.metric(t, "xmppd_s2s_links")+b.metric(t, "xmppd_s2s_links") == 0
	})
	// A new stanza brings a new link up.
	chat(t, alice, bob, "later")
}

// rawPeer is a hand-driven server-to-server stream, for misbehaving.
type rawPeer struct {
	t    *testing.T
	conn net.Conn
	dec  *xml.Decoder
	last xml.StartElement // the element expect returned
	id   string           // the id of the server's last stream header
}

func dialRawPeer(t *testing.T, addr, from, to string, cert tls.Certificate) *rawPeer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p := &rawPeer{t: t, conn: c}
	p.open(from, to)
	p.expect("features")
	p.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	p.expect("proceed")
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}, ServerName: to})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	p.conn = tc
	p.open(from, to)
	return p
}

func (p *rawPeer) open(from, to string) {
	p.send(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='` + from + `' to='` + to + `' version='1.0'>`)
	p.dec = xml.NewDecoder(bufio.NewReader(p.conn))
	for {
		tok := p.token()
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "stream" {
			p.id = attrOf(se, "id")
			return
		}
	}
}

func (p *rawPeer) token() xml.Token {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	tok, err := p.dec.Token()
	if err != nil {
		p.t.Fatalf("read: %v", err)
	}
	return tok
}

func (p *rawPeer) send(s string) {
	p.t.Helper()
	p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(p.conn, s); err != nil {
		p.t.Fatal(err)
	}
}

// expect reads top-level elements until one named local and returns its
// inner XML.
func (p *rawPeer) expect(local string) string {
	p.t.Helper()
	for i := 0; i < 10; i++ {
		tok := p.token()
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		var e struct {
			Inner string `xml:",innerxml"`
		}
		if err := p.dec.DecodeElement(&e, &se); err != nil {
			p.t.Fatal(err)
		}
		if se.Name.Local == local {
			p.last = se
			return e.Inner
		}
	}
	p.t.Fatalf("no <%s/>", local)
	return ""
}

func TestS2SSpoofedFromIsRejected(t *testing.T) {
	ca := newTestCA(t)
	l := listen(t)
	a := startFedServer(t, "a.test", l, fedOpts{cert: ca.leaf(t, "a.test"), fed: xmppd.FederationConfig{RootCAs: ca.pool}})
	alice := a.login(t, "+821012345678", "phone")
	// external is an evil.test link authenticated with SASL EXTERNAL.
	external := func(t *testing.T) *rawPeer {
		p := dialRawPeer(t, a.s2s, "evil.test", "a.test", ca.leaf(t, "evil.test"))
		f := p.expect("features")
		if !strings.Contains(f, "EXTERNAL") {
			t.Fatalf("EXTERNAL not offered for a valid client certificate: %s", f)
		}
		p.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>` + base64.StdEncoding.EncodeToString([]byte("evil.test")) + `</auth>`)
		p.expect("success")
		p.open("evil.test", "a.test")
		p.expect("features")
		return p
	}
	for _, tc := range []struct {
		name, stanza, cond string
	}{
		{"other domain", `<message from='mallory@other.test' to='+821012345678@a.test'><body>spoof</body></message>`, "invalid-from"},
		{"our own domain", `<message from='+821099999999@a.test' to='+821012345678@a.test'><body>spoof</body></message>`, "invalid-from"},
		{"no from", `<message to='+821012345678@a.test'><body>spoof</body></message>`, "improper-addressing"},
		{"wrong to", `<message from='eve@evil.test' to='x@elsewhere.test'><body>spoof</body></message>`, "host-unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := external(t)
			// A stanza from the authenticated domain is fine: it is the
			// next thing alice gets (nothing spoofed before came first).
			p.send(`<message from='eve@evil.test' to='+821012345678@a.test' type='chat'><body>legit</body></message>`)
			if e := alice.Next(); !strings.Contains(e.Inner, "legit") {
				t.Fatalf("alice got %v before the legitimate stanza", e)
			}
			p.send(tc.stanza)
			inner := p.expect("error")
			if !strings.Contains(inner, tc.cond) {
				t.Fatalf("stream error %s, want %s", inner, tc.cond)
			}
		})
	}
	// The server read each spoofed stanza before it wrote the stream error
	// that answered it, and routes synchronously: had one been routed, it
	// would have reached alice before a stanza sent after that error.
	p := external(t)
	p.send(`<message from='eve@evil.test' to='+821012345678@a.test' type='chat'><body>after</body></message>`)
	if e := alice.Next(); !strings.Contains(e.Inner, "after") {
		t.Fatalf("a spoofed stanza arrived: %v", e)
	}
	if n := a.metric(t, "xmppd_s2s_rejected_total"); n != 4 {
		t.Errorf("rejected_total = %v, want 4", n)
	}
}

func TestS2SExternalNeedsMatchingCertificate(t *testing.T) {
	ca := newTestCA(t)
	dead := listen(t)
	dead.Close()
	l := listen(t)
	a := startFedServer(t, "a.test", l, fedOpts{cert: ca.leaf(t, "a.test"), fed: xmppd.FederationConfig{
		RootCAs: ca.pool,
		Routes:  map[string]string{"b.test": dead.Addr().String()},
	}})
	// A valid certificate for evil.test claiming good.test.
	p := dialRawPeer(t, a.s2s, "evil.test", "a.test", ca.leaf(t, "evil.test"))
	p.expect("features")
	p.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>` + base64.StdEncoding.EncodeToString([]byte("good.test")) + `</auth>`)
	if inner := p.expect("failure"); !strings.Contains(inner, "invalid-authzid") {
		t.Fatalf("failure %s", inner)
	}
	// An untrusted certificate gets no EXTERNAL at all.
	p2 := dialRawPeer(t, a.s2s, "evil.test", "a.test", selfSigned(t, "evil.test"))
	if f := p2.expect("features"); strings.Contains(f, "EXTERNAL") || !strings.Contains(f, "dialback") {
		t.Fatalf("features for an untrusted certificate: %s", f)
	}
	// A stanza before authentication ends the stream.
	p2.send(`<message from='eve@evil.test' to='+821012345678@a.test'><body>x</body></message>`)
	if inner := p2.expect("error"); !strings.Contains(inner, "not-authorized") {
		t.Fatalf("stream error %s", inner)
	}
	// A dialback key that b.test's server cannot confirm (it is not
	// reachable) is refused.
	p3 := dialRawPeer(t, a.s2s, "b.test", "a.test", selfSigned(t, "b.test"))
	p3.expect("features")
	p3.send(`<db:result from='b.test' to='a.test'>0123456789abcdef</db:result>`)
	p3.expect("result")
	if typ := attrOf(p3.last, "type"); typ != "invalid" {
		t.Fatalf("dialback result %q, want invalid", typ)
	}
}

func attrOf(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value
		}
	}
	return ""
}

// The federation forgets remote domains it has nothing going on with:
// writing once to many domains does not grow its table for ever.
func TestS2SRemotesPruned(t *testing.T) {
	dead := listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()
	const n, more = 100, 50
	routes := map[string]string{}
	for i := range n + more {
		routes[fmt.Sprintf("d%d.test", i)] = deadAddr
	}
	a := startFedServer(t, "a.test", listen(t), fedOpts{cert: selfSigned(t, "a.test"), fed: xmppd.FederationConfig{
		Routes: routes, RetryAfter: 20 * time.Millisecond,
	}})
	alice := a.login(t, "+821012345678", "phone")
	for i := range n {
		alice.Send(fmt.Sprintf(`<message type='chat' id='d%d' to='x@d%d.test'><body>hi</body></message>`, i, i))
	}
	for i := range n {
		if e := alice.Next(); e.Attr("type") != "error" {
			t.Fatalf("answer %d: %v, want an error", i, e)
		}
	}
	// Once their failures are older than RetryAfter, a domain more prunes
	// them; polled with more domains, a few milliseconds apart (the last
	// few of which are kept while their failures are fresh).
	for i := n; ; i++ {
		if i == n+more {
			t.Fatalf("the federation keeps %d remote domains after writing once to %d, all failed", a.fed.RemoteDomains(), i)
		}
		id := fmt.Sprintf("d%d", i)
		alice.Send(`<message type='chat' id='` + id + `' to='x@` + id + `.test'><body>hi</body></message>`)
		alice.Expect("the error", func(e xmpptest.Elem) bool { return e.Attr("id") == id })
		if a.fed.RemoteDomains() < 20 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A peer that stops reading its link loses it once about 1 MiB waits for
// it (policy-violation); the link's queue never holds more than that and
// one stanza, and what follows for the domain goes another way (here: a
// new link that cannot be made, answered with an error).
func TestS2SNonReadingPeerBoundedInBytes(t *testing.T) {
	ca := newTestCA(t)
	dead := listen(t)
	deadAddr := dead.Addr().String()
	dead.Close()
	m := xmppd.NewMetrics(nil)
	a := startFedServer(t, "a.test", listen(t), fedOpts{cert: ca.leaf(t, "a.test"), metrics: m, fed: xmppd.FederationConfig{
		RootCAs: ca.pool,
		Routes:  map[string]string{"evil.test": deadAddr},
	}})
	alice := a.login(t, "+821012345678", "phone")
	// evil.test opens a bidirectional link, authenticates, and never reads.
	p := dialRawPeer(t, a.s2s, "evil.test", "a.test", ca.leaf(t, "evil.test"))
	p.expect("features")
	p.conn.(*tls.Conn).NetConn().(*net.TCPConn).SetReadBuffer(4096)
	p.send(`<bidi xmlns='urn:xmpp:bidi'/><auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>` + base64.StdEncoding.EncodeToString([]byte("evil.test")) + `</auth>`)
	p.expect("success")
	p.open("evil.test", "a.test")
	p.expect("features")
	p.send(`<message from='eve@evil.test' to='+821012345678@a.test' type='chat'><body>ready</body></message>`)
	alice.Expect("ready", func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "ready") })

	body := strings.Repeat("z", 200_000)
	const most = 150
	for i := 0; ; i++ {
		if i == most {
			t.Fatalf("%d messages of 200 KB to a peer that does not read, and its link still takes them", most)
		}
		id := fmt.Sprintf("z%d", i)
		alice.Send(`<message type='chat' id='` + id + `' to='eve@evil.test'><body>` + body + `</body></message>`)
		alice.Send(`<iq type='get' id='s` + id + `' to='a.test'><ping xmlns='urn:xmpp:ping'/></iq>`)
		e := alice.Expect("an answer", func(e xmpptest.Elem) bool { return e.Attr("id") == id || e.Attr("id") == "s"+id })
		if e.Attr("id") == id { // the link is gone: a new one cannot be made
			if !strings.Contains(e.Inner, "remote-server-not-found") {
				t.Fatalf("after the link closed: %v", e)
			}
			t.Logf("the link closed after %d messages", i)
			break
		}
	}
	peak := gaugeValue(m.WriteQueuePeak)
	if peak > 1<<20+200_000+1024 || peak < 1<<20 {
		t.Errorf("the link's queue held at most %.0f bytes, want 1 MiB to 1 MiB and one stanza", peak)
	}
}
