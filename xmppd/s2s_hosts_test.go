package xmppd_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/xml"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd"
	"dialtone/xmppd/router"
)

const nsHostTest = "urn:dialtone:test:host"

// hostModule serves a component host (as groups.DOMAIN does): an IQ get
// in nsHostTest is answered from the host and reported on seen.
func hostModule(host string, seen chan<- string) router.Module {
	return router.ModuleFunc(func(h *router.Hooks) error {
		sc := h.AddHost(host)
		h.HandleIQ(sc, router.IQGet, xml.Name{Space: nsHostTest, Local: "ping"}, func(ctx context.Context, iq *router.Stanza) ([]byte, error) {
			if seen != nil {
				select {
				case seen <- iq.From.String():
				default:
				}
			}
			return []byte(`<pong xmlns='` + nsHostTest + `'/>`), nil
		})
		return nil
	})
}

// leafFor issues a certificate naming every one of names (DNS SANs).
func (ca *testCA) leafFor(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
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

// hostPair starts a.test, which serves the component host groups.a.test,
// and b.test, routed to each other.
func hostPair(t *testing.T, certA, certB tls.Certificate, cfg func(*xmppd.FederationConfig)) (*fedServer, *fedServer) {
	t.Helper()
	la, lb := listen(t), listen(t)
	routes := map[string]string{"a.test": la.Addr().String(), "groups.a.test": la.Addr().String(), "b.test": lb.Addr().String()}
	fa := xmppd.FederationConfig{Routes: routes, DisableBidi: true}
	fb := xmppd.FederationConfig{Routes: routes, DisableBidi: true}
	cfg(&fa)
	cfg(&fb)
	a := startFedServer(t, "a.test", la, fedOpts{cert: certA, fed: fa, mods: []router.Module{hostModule("groups.a.test", nil)}})
	b := startFedServer(t, "b.test", lb, fedOpts{cert: certB, fed: fb})
	return a, b
}

// pingHost has c ask groups.a.test and checks that the answer comes back
// from it.
func pingHost(t *testing.T, c *xmpptest.Client, id string) {
	t.Helper()
	c.Send(`<iq type='get' id='` + id + `' to='groups.a.test'><ping xmlns='` + nsHostTest + `'/></iq>`)
	e := c.Expect("the host's answer", func(e xmpptest.Elem) bool { return e.Attr("id") == id })
	if e.Attr("type") != "result" || e.Attr("from") != "groups.a.test" || !strings.Contains(e.Inner, "pong") {
		t.Fatalf("got %s, want a result from groups.a.test", e)
	}
}

// A user of another server reaches a component host, and its answer goes
// back on a link authenticated for that host: dialback for each pair of
// domains, one link per pair.
func TestS2SComponentHostDialback(t *testing.T) {
	a, b := hostPair(t, selfSigned(t, "a.test"), selfSigned(t, "b.test"), func(c *xmppd.FederationConfig) {
		c.InsecureDomains = []string{"a.test", "groups.a.test", "b.test"}
	})
	bob := b.login(t, "+821087654321", "desk")
	pingHost(t, bob, "h1")
	// b.test -> groups.a.test and groups.a.test -> b.test, each by dialback.
	for _, dir := range []string{"in", "out"} {
		if n := a.metric(t, "xmppd_s2s_auth_total", "direction", dir, "method", "dialback", "result", "ok"); n != 1 {
			t.Errorf("a.test: %v %s dialback authentications, want 1", n, dir)
		}
	}
	// The domain's own pair is another link, not the host's.
	alice := a.login(t, "+821012345678", "phone")
	chat(t, alice, bob, "from the domain")
	chat(t, bob, alice, "to the domain")
	pingHost(t, bob, "h2")
	for _, dir := range []string{"in", "out"} {
		if n := a.metric(t, "xmppd_s2s_auth_total", "direction", dir, "method", "dialback", "result", "ok"); n != 2 {
			t.Errorf("a.test: %v %s dialback authentications, want 2 (one per pair)", n, dir)
		}
	}
	if n := a.metric(t, "xmppd_s2s_links", "direction", "out"); n != 2 {
		t.Errorf("a.test: %v outgoing links, want 2 (from a.test and from groups.a.test)", n)
	}
}

// A certificate that names the component host too gets SASL EXTERNAL
// for it; one that does not is refused for the host by a peer that does
// not list it as insecure (SPEC: XMPPD_S2S_INSECURE_DOMAINS).
func TestS2SComponentHostCertificate(t *testing.T) {
	t.Run("covered", func(t *testing.T) {
		ca := newTestCA(t)
		a, b := hostPair(t, ca.leafFor(t, "a.test", "groups.a.test"), ca.leaf(t, "b.test"), func(c *xmppd.FederationConfig) {
			c.RootCAs = ca.pool
		})
		bob := b.login(t, "+821087654321", "desk")
		pingHost(t, bob, "c1")
		for _, dir := range []string{"in", "out"} {
			if n := a.metric(t, "xmppd_s2s_auth_total", "direction", dir, "method", "external", "result", "ok"); n != 1 {
				t.Errorf("a.test: %v %s EXTERNAL authentications, want 1", n, dir)
			}
		}
		if n := a.metric(t, "xmppd_s2s_auth_total", "method", "dialback"); n != 0 {
			t.Errorf("a.test: dialback used (%v) with a certificate that names the host", n)
		}
	})
	t.Run("not covered", func(t *testing.T) {
		ca := newTestCA(t)
		_, b := hostPair(t, ca.leaf(t, "a.test"), ca.leaf(t, "b.test"), func(c *xmppd.FederationConfig) {
			c.RootCAs = ca.pool
		})
		bob := b.login(t, "+821087654321", "desk")
		bob.Send(`<iq type='get' id='c2' to='groups.a.test'><ping xmlns='` + nsHostTest + `'/></iq>`)
		e := bob.Expect("the error", func(e xmpptest.Elem) bool { return e.Attr("id") == "c2" })
		if e.Attr("type") != "error" || !strings.Contains(e.Inner, "remote-server-timeout") {
			t.Fatalf("got %s, want remote-server-timeout (groups.a.test's certificate is not valid for it)", e)
		}
	})
}

// Several domain pairs on one incoming stream (XEP-0220 §2.4): each
// db:result authenticates one pair, a stanza is accepted only for a pair
// authenticated, and domains not served here or served here as 'from'
// are refused.
func TestS2SMultiplexedDialback(t *testing.T) {
	ca := newTestCA(t)
	seen := make(chan string, 4)
	a := startFedServer(t, "a.test", listen(t), fedOpts{
		cert: ca.leaf(t, "a.test"),
		fed:  xmppd.FederationConfig{RootCAs: ca.pool, DisableBidi: true},
		mods: []router.Module{hostModule("groups.a.test", seen)},
	})
	alice := a.login(t, "+821012345678", "phone")
	// b.test's certificate is valid: its dialback keys are confirmed by it
	// (XEP-0344) without a verification stream.
	result := func(p *rawPeer, from, to, want string) {
		t.Helper()
		p.send(`<db:result from='` + from + `' to='` + to + `'>0123456789abcdef</db:result>`)
		p.expect("result")
		if typ := attrOf(p.last, "type"); typ != want || attrOf(p.last, "from") != to {
			t.Fatalf("db:result %s -> %s: type %q from %q, want %q from %s", from, to, typ, attrOf(p.last, "from"), want, to)
		}
	}
	ping := `<iq type='get' id='m1' from='bob@b.test/x' to='groups.a.test'><ping xmlns='` + nsHostTest + `'/></iq>`

	t.Run("pair by pair", func(t *testing.T) {
		p := dialRawPeer(t, a.s2s, "b.test", "a.test", ca.leaf(t, "b.test"))
		p.expect("features")
		result(p, "b.test", "a.test", "valid")
		p.send(`<message from='bob@b.test' to='+821012345678@a.test' type='chat'><body>one</body></message>`)
		if e := alice.Next(); !strings.Contains(e.Inner, "one") {
			t.Fatalf("alice got %v", e)
		}
		result(p, "b.test", "groups.a.test", "valid")
		p.send(ping)
		select {
		case from := <-seen:
			if from != "bob@b.test/x" {
				t.Fatalf("the host got an IQ from %s", from)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the IQ to groups.a.test was not handled")
		}
	})
	t.Run("pair not authenticated", func(t *testing.T) {
		p := dialRawPeer(t, a.s2s, "b.test", "a.test", ca.leaf(t, "b.test"))
		p.expect("features")
		result(p, "b.test", "a.test", "valid")
		p.send(ping)
		if inner := p.expect("error"); !strings.Contains(inner, "invalid-from") {
			t.Fatalf("stream error %s, want invalid-from", inner)
		}
	})
	t.Run("not served here", func(t *testing.T) {
		p := dialRawPeer(t, a.s2s, "b.test", "a.test", ca.leaf(t, "b.test"))
		p.expect("features")
		p.send(`<db:result from='b.test' to='elsewhere.test'>0123456789abcdef</db:result>`)
		if inner := p.expect("result"); attrOf(p.last, "type") != "error" || !strings.Contains(inner, "item-not-found") {
			t.Fatalf("db:result to elsewhere.test: %v %s, want an item-not-found error", p.last, inner)
		}
	})
	t.Run("our own host as from", func(t *testing.T) {
		p := dialRawPeer(t, a.s2s, "b.test", "a.test", ca.leaf(t, "b.test"))
		p.expect("features")
		p.send(`<db:result from='groups.a.test' to='a.test'>0123456789abcdef</db:result>`)
		if inner := p.expect("error"); !strings.Contains(inner, "invalid-from") {
			t.Fatalf("stream error %s, want invalid-from", inner)
		}
	})
	t.Run("stream to a host", func(t *testing.T) {
		// The stream itself may be opened to the host.
		p := dialRawPeer(t, a.s2s, "b.test", "groups.a.test", ca.leaf(t, "b.test"))
		p.expect("features")
		result(p, "b.test", "groups.a.test", "valid")
	})
	t.Run("stream to an unknown domain", func(t *testing.T) {
		c, err := net.Dial("tcp", a.s2s)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		p := &rawPeer{t: t, conn: c}
		p.open("b.test", "elsewhere.test")
		if inner := p.expect("error"); !strings.Contains(inner, "host-unknown") {
			t.Fatalf("stream error %s, want host-unknown", inner)
		}
	})
}
