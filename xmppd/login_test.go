package xmppd_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"mellium.im/sasl"

	"dialtone/auth"
	"dialtone/internal/forwarded"
	"dialtone/internal/scramtest"
	"dialtone/internal/xmpptest"
	"dialtone/storage"
	"dialtone/xmppd"
	"dialtone/xmppd/mod/carbons"
	"dialtone/xmppd/mod/sm"
	"dialtone/xmppd/router"
)

// scram2 is a SASL2 request for a SCRAM client.
func scram2(c *scramtest.Client) xmpptest.SASL2Request {
	return xmpptest.SASL2Request{Mechanism: c.Mechanism, Initial: c.First(), Step: c.Final}
}

func withSHA512(c *xmppd.Config) { c.SASL.SHA512 = func() bool { return true } }

// TestModernLogin runs the SASL2 client over real TLS on both client
// listeners: the -PLUS offer and its XEP-0440 types, SCRAM-*-PLUS with
// either binding type, Bind2 with a tag-derived resource and inline
// carbons, SASL2 without Bind2, and the failures: a wrong password, a
// binding to other TLS data, a "y" where -PLUS was offered, and a
// mechanism list a man in the middle stripped (XEP-0474's d= tells).
func TestModernLogin(t *testing.T) {
	ts := startServerWith(t, []router.Module{carbons.New()}, withSHA512)
	pass := ts.account(t, alice)
	dial := map[string]func(t *testing.T) (*xmpptest.Client, xmpptest.Features){
		"starttls": func(t *testing.T) (*xmpptest.Client, xmpptest.Features) {
			c := xmpptest.Dial(t, ts.addr)
			return c, c.SecureFeatures()
		},
		"direct": func(t *testing.T) (*xmpptest.Client, xmpptest.Features) {
			c := xmpptest.DialTLS(t, ts.directAddr)
			c.Open(c.Domain)
			return c, xmpptest.ParseFeatures(c.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" }))
		},
	}
	for name, open := range dial {
		t.Run(name, func(t *testing.T) {
			c, f := open(t)
			wantMechs := []string{"SCRAM-SHA-512-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"}
			if !slices.Equal(f.Mechanisms, wantMechs) || f.SASL2 == nil || !slices.Equal(f.SASL2.Mechanisms, wantMechs) {
				t.Fatalf("mechanisms %v, SASL2 %+v", f.Mechanisms, f.SASL2)
			}
			if got := f.Types(); !slices.Equal(got, []string{"tls-exporter", "tls-server-end-point"}) {
				t.Fatalf("XEP-0440 types %v", got)
			}
			if b := f.SASL2.Inline.Bind; b == nil || !slices.ContainsFunc(b.Features, func(x struct {
				Var string `xml:"var,attr"`
			}) bool {
				return x.Var == carbons.NS
			}) {
				t.Fatalf("Bind2 inline features %+v", f.SASL2.Inline.Bind)
			}

			// A wrong password, then a binding to other TLS data: each
			// fails, the stream stays for another try. A "y" where -PLUS
			// was offered fails too (on a stream of its own: a stream
			// gets few tries).
			bad := &scramtest.Client{Mechanism: "SCRAM-SHA-256-PLUS", User: alice, Password: pass + "x", BindingType: "tls-exporter", BindingData: c.Exporter()}
			if r := c.Authenticate2(scram2(bad)); r.Failure != "not-authorized" {
				t.Fatalf("wrong password: %+v", r)
			}
			other := xmpptest.DialTLS(t, ts.directAddr).Exporter()
			mitm := &scramtest.Client{Mechanism: "SCRAM-SHA-256-PLUS", User: alice, Password: pass, BindingType: "tls-exporter", BindingData: other}
			if r := c.Authenticate2(scram2(mitm)); r.Failure != "not-authorized" {
				t.Fatalf("binding to another connection: %+v", r)
			}
			c3, _ := open(t)
			down := &scramtest.Client{Mechanism: "SCRAM-SHA-256", User: alice, Password: pass, Flag: "y"}
			if r := c3.Authenticate2(scram2(down)); r.Failure != "not-authorized" {
				t.Fatalf("y where -PLUS was offered: %+v", r)
			}

			// The real thing: -PLUS with tls-exporter, Bind2, carbons.
			good := &scramtest.Client{Mechanism: "SCRAM-SHA-512-PLUS", User: alice, Password: pass, BindingType: "tls-exporter", BindingData: c.Exporter()}
			r := c.Authenticate2(xmpptest.SASL2Request{Mechanism: good.Mechanism, Initial: good.First(), Step: good.Final,
				UserAgent: "d4565fa7-4d72-4749-b3d3-740edbf87770", Bind: true, Tag: "Phone",
				BindInline: `<enable xmlns='urn:xmpp:carbons:2'/>`})
			if r.Failure != "" {
				t.Fatalf("SCRAM-SHA-512-PLUS: %s", r.Failure)
			}
			if err := good.Verify(r.Additional); err != nil {
				t.Fatal(err)
			}
			if !good.DowngradeOK(f.Mechanisms, f.Types()) {
				t.Fatal("d= does not match the offer the client saw")
			}
			if good.DowngradeOK(wantMechs[3:], nil) {
				t.Fatal("d= matched an offer stripped of -PLUS and XEP-0440")
			}
			if !strings.HasPrefix(r.Identifier, alice+"@localhost/Phone~") {
				t.Fatalf("authorization identifier %q", r.Identifier)
			}
			if !strings.Contains(r.Success.Inner, "bound") || !strings.Contains(r.Success.Inner, "enabled") {
				t.Fatalf("success without <bound><enabled/>: %s", r.Success.Inner)
			}
			c.Sync() // bound: stanzas flow with no further negotiation

			// Carbons are on for it: a message to another resource of
			// alice is copied to it.
			other2 := xmpptest.Login(t, ts.addr, alice, pass, "laptop-"+name)
			sender := xmpptest.Login(t, ts.addr, bob, ts.account(t, bob), "b")
			sender.Send(`<message type='chat' id='m1' to='` + other2.JID + `'><body>hi</body></message>`)
			other2.Expect("message", func(e xmpptest.Elem) bool { return e.Attr("id") == "m1" })
			c.Expect("carbon", func(e xmpptest.Elem) bool {
				return e.XMLName.Local == "message" && strings.Contains(e.Inner, "urn:xmpp:carbons:2")
			})

			// tls-server-end-point, SASL2 without Bind2: the features
			// follow and RFC 6120 binding works.
			c2, _ := open(t)
			ep := &scramtest.Client{Mechanism: "SCRAM-SHA-256-PLUS", User: alice, Password: pass, BindingType: "tls-server-end-point", BindingData: c2.EndPoint()}
			r = c2.Authenticate2(scram2(ep))
			if r.Failure != "" || ep.Verify(r.Additional) != nil || r.Identifier != alice+"@localhost" {
				t.Fatalf("tls-server-end-point: %+v", r)
			}
			c2.Expect("features", func(e xmpptest.Elem) bool {
				return e.XMLName.Local == "features" && strings.Contains(e.Inner, "urn:ietf:params:xml:ns:xmpp-bind")
			})
			if j := c2.BindResource("rfc6120"); j != alice+"@localhost/rfc6120" {
				t.Fatalf("bind after SASL2: %q", j)
			}
		})
	}
}

// TestPlusOverSASL1 logs in with mellium's SCRAM-SHA-256-PLUS client, an
// independent implementation (tls-exporter on TLS 1.3), over RFC 6120 SASL.
func TestPlusOverSASL1(t *testing.T) {
	ts := startServer(t)
	pass := ts.account(t, alice)
	c := xmpptest.Dial(t, ts.addr)
	f := c.SecureFeatures()
	neg := sasl.NewClient(sasl.ScramSha256Plus, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(alice), []byte(pass), nil
	}), sasl.TLSState(c.TLSState()), sasl.RemoteMechanisms(f.Mechanisms...))
	if cond := c.AuthWith(neg, sasl.ScramSha256Plus.Name); cond != "" {
		t.Fatalf("SCRAM-SHA-256-PLUS: %s", cond)
	}
	c.Bind("plus")
	c.Sync()
}

// TestPlusOnlyWhereTLSEndsHere: WebSocket over TLS this server terminates
// offers -PLUS (tls-exporter); WebSocket behind a trusted TLS-terminating
// proxy offers PLAIN (the client's link is https) but never -PLUS, which
// would bind to the proxy's TLS.
func TestPlusOnlyWhereTLSEndsHere(t *testing.T) {
	ts := startServer(t)
	surl, shc := startWS(t, ts, true)
	_, f := dialWS(t, surl, shc).open()
	if !strings.Contains(f.Inner, "SCRAM-SHA-256-PLUS") || !strings.Contains(f.Inner, "tls-exporter") || strings.Contains(f.Inner, "tls-server-end-point") {
		t.Fatalf("wss features: %s", f.Inner)
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	hs := httptest.NewServer(forwarded.Handler(trusted, http.HandlerFunc(ts.ServeWebSocket)))
	t.Cleanup(hs.Close)
	ctx, cancel := context.WithTimeout(context.Background(), xmpptest.Timeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/xmpp-websocket", &websocket.DialOptions{
		Subprotocols: []string{"xmpp"},
		HTTPHeader:   http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-For": {"192.0.2.7"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	_, f = (&wsClient{t: t, ws: ws}).open()
	if !strings.Contains(f.Inner, ">PLAIN<") || strings.Contains(f.Inner, "-PLUS") || strings.Contains(f.Inner, "sasl-channel-binding") {
		t.Fatalf("features behind a TLS-terminating proxy: %s", f.Inner)
	}
}

// fastClient computes HT-SHA-256 messages as the draft specifies, from
// the token the server gave.
func fastInitial(user, token string, cb []byte) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write(append([]byte("Initiator"), cb...))
	return append([]byte(user+"\x00"), m.Sum(nil)...)
}

func fastResponder(token string, cb []byte) []byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write(append([]byte("Responder"), cb...))
	return m.Sum(nil)
}

// tokenOf returns the token attribute of a success's <token/>.
func tokenOf(t *testing.T, r xmpptest.SASL2Result) string {
	t.Helper()
	var s struct {
		Token struct {
			Token  string `xml:"token,attr"`
			Expiry string `xml:"expiry,attr"`
		} `xml:"urn:xmpp:fast:0 token"`
	}
	xml.Unmarshal([]byte("<s>"+r.Success.Inner+"</s>"), &s)
	if s.Token.Token == "" || s.Token.Expiry == "" {
		t.Fatalf("no FAST token in %s", r.Success.Inner)
	}
	return s.Token.Token
}

// TestFAST: a password login asks for a token; the token logs in (with
// tls-exporter binding and without), is rotated at each use, works only
// for the client it was given to, fails with a wrong binding, counts as a
// failed login when wrong, and is void after a password change.
func TestFAST(t *testing.T) {
	db, err := storage.Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ts := startServer(t, func(c *xmppd.Config) { c.SASL.Fast = db })
	pass := ts.account(t, alice)
	const ua = "c0ffee00-4d72-4749-b3d3-740edbf87770"

	c := xmpptest.Dial(t, ts.addr)
	f := c.SecureFeatures()
	if f.SASL2.Inline.FAST == nil || !slices.Equal(f.SASL2.Inline.FAST.Mechanisms, []string{"HT-SHA-256-EXPR", "HT-SHA-256-ENDP", "HT-SHA-256-NONE"}) {
		t.Fatalf("FAST offer %+v", f.SASL2.Inline.FAST)
	}
	sc := &scramtest.Client{Mechanism: "SCRAM-SHA-256-PLUS", User: alice, Password: pass, BindingType: "tls-exporter", BindingData: c.Exporter()}
	r := c.Authenticate2(xmpptest.SASL2Request{Mechanism: sc.Mechanism, Initial: sc.First(), Step: sc.Final, UserAgent: ua,
		Inline: `<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-EXPR'/>`})
	if r.Failure != "" {
		t.Fatal(r.Failure)
	}
	token := tokenOf(t, r)

	// fast logs in with tok on a new connection; it returns the result.
	fast := func(mech, tok, agent string, cb func(*xmpptest.Client) []byte) (xmpptest.SASL2Result, []byte) {
		c := xmpptest.Dial(t, ts.addr)
		c.SecureFeatures()
		data := cb(c)
		return c.Authenticate2(xmpptest.SASL2Request{Mechanism: mech, Initial: fastInitial(alice, tok, data), UserAgent: agent,
			Inline: `<fast xmlns='urn:xmpp:fast:0'/>`, Bind: true, Tag: "fast"}), data
	}
	exporter := func(c *xmpptest.Client) []byte { return c.Exporter() }
	none := func(*xmpptest.Client) []byte { return nil }

	r, cb := fast("HT-SHA-256-EXPR", token, ua, exporter)
	if r.Failure != "" || !bytes.Equal(r.Additional, fastResponder(token, cb)) {
		t.Fatalf("FAST login: %+v", r)
	}
	rotated := tokenOf(t, r)
	if rotated == token {
		t.Fatal("the token was not rotated")
	}
	// The rotated token works (and then the first one is gone).
	if r, _ = fast("HT-SHA-256-NONE", rotated, ua, none); r.Failure != "" {
		t.Fatalf("rotated token: %s", r.Failure)
	}
	third := tokenOf(t, r)
	if r, _ = fast("HT-SHA-256-NONE", token, ua, none); r.Failure != "not-authorized" {
		t.Fatalf("the first token after its successor was used: %+v", r)
	}
	// Bound to the client it was given to, and to this connection's TLS.
	if r, _ = fast("HT-SHA-256-NONE", third, "another-client", none); r.Failure != "not-authorized" {
		t.Fatalf("token of another client: %+v", r)
	}
	other := func(*xmpptest.Client) []byte { return xmpptest.DialTLS(t, ts.directAddr).Exporter() }
	if r, _ = fast("HT-SHA-256-EXPR", third, ua, other); r.Failure != "not-authorized" {
		t.Fatalf("token bound to another connection: %+v", r)
	}
	// A new password voids it.
	ts.account(t, alice)
	if r, _ = fast("HT-SHA-256-NONE", third, ua, none); r.Failure != "not-authorized" {
		t.Fatalf("token after a password change: %+v", r)
	}
	// Wrong tokens count as failed logins: the fifth locks the number
	// (servertest's lockout), and then even the password is refused.
	if r, _ = fast("HT-SHA-256-NONE", "guessed", ua, none); r.Failure != "not-authorized" {
		t.Fatalf("guessed token: %+v", r)
	}
	c = xmpptest.Dial(t, ts.addr)
	c.SecureFeatures()
	if cond := c.Auth(sasl.ScramSha256, alice, pass); cond != "temporary-auth-failure" {
		t.Fatalf("after five wrong tokens: %q; want the lockout", cond)
	}
}

// Bind2 with an inline XEP-0198 <enable/>: the stream is managed from its
// first stanza, the <enabled/> comes inside <bound/>, and acks work.
func TestBind2InlineStreamManagement(t *testing.T) {
	ts := startServerWith(t, []router.Module{&sm.Module{ResumeTimeout: time.Minute}})
	pass := ts.account(t, alice)
	c := xmpptest.DialTLS(t, ts.directAddr)
	c.Open(c.Domain)
	f := xmpptest.ParseFeatures(c.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" }))
	if b := f.SASL2.Inline.Bind; b == nil || !slices.ContainsFunc(b.Features, func(x struct {
		Var string `xml:"var,attr"`
	}) bool {
		return x.Var == sm.NS
	}) {
		t.Fatalf("Bind2 inline features %+v", f.SASL2.Inline.Bind)
	}
	cl := &scramtest.Client{Mechanism: "SCRAM-SHA-256-PLUS", User: alice, Password: pass, BindingType: "tls-exporter", BindingData: c.Exporter()}
	r := c.Authenticate2(xmpptest.SASL2Request{Mechanism: cl.Mechanism, Initial: cl.First(), Step: cl.Final,
		UserAgent: "0b9e8f4c-5a7d-4f7e-9a52-3c0f5d1e2a11", Bind: true, Tag: "Phone",
		BindInline: `<enable xmlns='urn:xmpp:sm:3' resume='true'/>`})
	if r.Failure != "" {
		t.Fatalf("login: %s", r.Failure)
	}
	if !strings.Contains(r.Success.Inner, "bound") || !strings.Contains(r.Success.Inner, `<enabled xmlns="urn:xmpp:sm:3"`) ||
		!strings.Contains(r.Success.Inner, `resume="true"`) {
		t.Fatalf("success without <bound><enabled resume/>: %s", r.Success.Inner)
	}
	c.Send(`<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>`)
	c.Send(`<r xmlns='urn:xmpp:sm:3'/>`)
	a := c.Expect("an ack", func(e xmpptest.Elem) bool { return e.XMLName.Local == "a" })
	if a.Attr("h") != "1" {
		t.Fatalf("ack %v, want h=1 after one stanza", a)
	}
	id := regexp.MustCompile(`<enabled xmlns="urn:xmpp:sm:3" id="([^"]+)"`).FindStringSubmatch(r.Success.Inner)
	if id == nil {
		t.Fatalf("no stream id in %s", r.Success.Inner)
	}

	// A message the session never acknowledges, then the network drops.
	sender := xmpptest.Login(t, ts.addr, bob, ts.account(t, bob), "b")
	sender.Send(`<message type='chat' id='lost' to='` + r.Identifier + `'><body>resend me</body></message>`)
	c.Expect("the message", func(e xmpptest.Elem) bool { return e.XMLName.Local == "message" && e.Attr("id") == "lost" })
	c.Conn.Close()

	// SASL2 with an inline <resume/> (and a Bind2 request, which the
	// resumption makes moot): authenticated and resumed in one exchange.
	c2 := xmpptest.DialTLS(t, ts.directAddr)
	c2.Open(c2.Domain)
	f2 := xmpptest.ParseFeatures(c2.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" }))
	if f2.SASL2 == nil || f2.SASL2.Inline.SM == nil {
		t.Fatalf("SASL2 inline features do not offer <sm/>: %+v", f2.SASL2)
	}
	cl2 := &scramtest.Client{Mechanism: "SCRAM-SHA-256-PLUS", User: alice, Password: pass, BindingType: "tls-exporter", BindingData: c2.Exporter()}
	r2 := c2.Authenticate2(xmpptest.SASL2Request{Mechanism: cl2.Mechanism, Initial: cl2.First(), Step: cl2.Final,
		UserAgent: "0b9e8f4c-5a7d-4f7e-9a52-3c0f5d1e2a11", Bind: true, Tag: "Phone",
		Inline: `<resume xmlns='urn:xmpp:sm:3' previd='` + id[1] + `' h='1'/>`})
	if r2.Failure != "" {
		t.Fatalf("resume: %s", r2.Failure)
	}
	if !strings.Contains(r2.Success.Inner, `<resumed xmlns="urn:xmpp:sm:3"`) || strings.Contains(r2.Success.Inner, "bound") {
		t.Fatalf("success without <resumed/> (or with a new binding): %s", r2.Success.Inner)
	}
	if r2.Identifier != r.Identifier {
		t.Fatalf("resumed as %q, want the old session %q", r2.Identifier, r.Identifier)
	}
	c2.Expect("the unacknowledged message again", func(e xmpptest.Elem) bool {
		return e.XMLName.Local == "message" && e.Attr("id") == "lost"
	})
}

// An active account's login within loginStampEvery (10 minutes) of its
// last stamp writes none; a first login, and one after a stale stamp,
// do (SCRAM and PLAIN alike).
func TestLoginStampThrottled(t *testing.T) {
	ts := startServer(t)
	pass := ts.account(t, alice)
	n := auth.Number(alice)
	stamp := func() (auth.State, time.Time) {
		t.Helper()
		a, err := ts.accounts.Account(context.Background(), n)
		if err != nil {
			t.Fatal(err)
		}
		return a.State, a.LastLogin
	}
	before := time.Now()
	xmpptest.Login(t, ts.addr, alice, pass, "first")
	state, first := stamp()
	if state != auth.StateActive || first.Before(before) {
		t.Fatalf("after the first login: %s, last login %v (want active, after %v)", state, first, before)
	}
	xmpptest.Login(t, ts.addr, alice, pass, "second")
	plain := xmpptest.DialTLS(t, ts.directAddr)
	plain.Open("localhost")
	plain.Next()
	if cond := plain.Auth(sasl.Plain, alice, pass); cond != "" {
		t.Fatalf("PLAIN: %s", cond)
	}
	if _, again := stamp(); !again.Equal(first) {
		t.Errorf("logins right after the first moved the stamp %v -> %v", first, again)
	}
	for _, mech := range []sasl.Mechanism{sasl.ScramSha256, sasl.Plain} {
		stale := time.Now().Add(-11 * time.Minute)
		if err := ts.accounts.RecordLogin(context.Background(), n, stale); err != nil {
			t.Fatal(err)
		}
		c := xmpptest.DialTLS(t, ts.directAddr)
		c.Open("localhost")
		c.Next()
		if cond := c.Auth(mech, alice, pass); cond != "" {
			t.Fatalf("%s: %s", mech.Name, cond)
		}
		if _, got := stamp(); !got.After(stale.Add(10 * time.Minute)) {
			t.Errorf("%s after a stamp 11 minutes old: last login %v", mech.Name, got)
		}
	}
}
