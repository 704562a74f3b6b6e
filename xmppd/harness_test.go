package xmppd_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp/jid"

	"dialtone/auth"
	"dialtone/internal/tlscert"
	"dialtone/xmppd"
)

// memAccounts is an in-memory auth.Accounts for the core's tests.
type memAccounts struct {
	mu sync.Mutex
	m  map[auth.Number]auth.Account
}

func newMemAccounts() *memAccounts { return &memAccounts{m: map[auth.Number]auth.Account{}} }

func (a *memAccounts) Account(ctx context.Context, n auth.Number) (auth.Account, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acc, ok := a.m[n]
	if !ok {
		return auth.Account{}, auth.ErrNotFound
	}
	return acc, nil
}

func (a *memAccounts) SetCredentials(ctx context.Context, n auth.Number, c auth.Credentials) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acc, ok := a.m[n]
	if !ok {
		acc = auth.Account{Number: n, State: auth.StateUnclaimed, Created: time.Now()}
	}
	acc.Credentials = c
	acc.Generation++
	a.m[n] = acc
	return !ok, nil
}

func (a *memAccounts) RecordLogin(ctx context.Context, n auth.Number, t time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	acc, ok := a.m[n]
	if !ok {
		return auth.ErrNotFound
	}
	acc.State, acc.LastLogin = auth.StateActive, t
	a.m[n] = acc
	return nil
}

func (a *memAccounts) DeleteAccount(ctx context.Context, n auth.Number) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.m[n]; !ok {
		return auth.ErrNotFound
	}
	delete(a.m, n)
	return nil
}

func (a *memAccounts) ListAccounts(ctx context.Context, st auth.State) ([]auth.Account, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []auth.Account
	for _, acc := range a.m {
		if st == "" || acc.State == st {
			out = append(out, acc)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out, nil
}

// testServer is a running server on loopback.
type testServer struct {
	*xmppd.Server
	addr, directAddr string
	accounts         *memAccounts
	parser           *auth.NumberParser
}

type serverOpt func(*xmppd.Config)

func startServer(t testing.TB, opts ...serverOpt) *testServer {
	t.Helper()
	certPEM, keyPEM, err := tlscert.Generate("localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	parser, err := auth.NewNumberParser("KR", nil)
	if err != nil {
		t.Fatal(err)
	}
	accounts := newMemAccounts()
	cfg := xmppd.Config{
		Domain:   "localhost",
		TLS:      &tls.Config{Certificates: []tls.Certificate{cert}},
		SASL:     &auth.SASL{Parser: parser, Store: accounts, Lockout: auth.NewLockout(5), Domain: "localhost"},
		Parser:   parser,
		Accounts: accounts,
		Mux:      &xmppd.Mux{},
	}
	cfg.Mux.HandleIQ(xmppd.ScopeServer|xmppd.ScopeAccount, xml.Name{Space: "urn:xmpp:ping", Local: "ping"},
		func(ctx context.Context, iq *xmppd.Stanza) ([]byte, error) { return nil, nil })
	srvRef := new(*xmppd.Server)
	cfg.Mux.HandlePresence(&selfPresence{srv: srvRef})
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := xmppd.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	*srvRef = srv
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeC2S(l)
	go srv.ServeDirectTLS(dl)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &testServer{Server: srv, addr: l.Addr().String(), directAddr: dl.Addr().String(), accounts: accounts, parser: parser}
}

// account makes an account with a password and returns the password.
func (ts *testServer) account(t testing.TB, number string) string {
	t.Helper()
	n, err := ts.parser.Parse(number)
	if err != nil {
		t.Fatal(err)
	}
	pass, err := auth.GeneratePassword(12)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := auth.NewCredentials(pass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.accounts.SetCredentials(context.Background(), n, creds); err != nil {
		t.Fatal(err)
	}
	return pass
}

// elem is a top-level element as a test client sees it.
type elem struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Inner   string     `xml:",innerxml"`
}

func (e elem) attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name && (a.Name.Space == "" || name == "lang") {
			return a.Value
		}
	}
	return ""
}

func (e elem) String() string {
	return fmt.Sprintf("<%s %v>%s", e.XMLName.Local, e.Attrs, e.Inner)
}

// client is a deliberately plain XMPP client for the tests: it writes what
// it is told and reads elements back, so tests can also misbehave.
type client struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
	dec  *xml.Decoder
	jid  string
}

func dialClient(t testing.TB, addr string) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &client{t: t, conn: conn}
	c.br = bufio.NewReader(conn)
	return c
}

func (c *client) send(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// open sends a stream header and reads the server's header.
func (c *client) open(to string) {
	c.t.Helper()
	c.send(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='` + to + `' version='1.0'>`)
	c.readHeader()
}

func (c *client) readHeader() xml.StartElement {
	c.t.Helper()
	c.dec = xml.NewDecoder(c.br)
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		tok, err := c.dec.Token()
		if err != nil {
			c.t.Fatalf("reading stream header: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "stream" {
				c.t.Fatalf("expected stream header, got %v", se.Name)
			}
			return se
		}
	}
}

// next reads the next top-level element; it fails the test on timeout.
func (c *client) next() elem {
	c.t.Helper()
	e, err := c.tryNext(5 * time.Second)
	if err != nil {
		c.t.Fatalf("%s: reading: %v", c.jid, err)
	}
	return e
}

var errStreamEnd = errors.New("stream ended")

func (c *client) tryNext(d time.Duration) (elem, error) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return elem{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			var e elem
			if err := c.dec.DecodeElement(&e, &t); err != nil {
				return elem{}, err
			}
			return e, nil
		case xml.EndElement:
			return elem{}, errStreamEnd
		}
	}
}

// expect reads until an element satisfying f arrives (skipping others, at most 20).
func (c *client) expect(what string, f func(elem) bool) elem {
	c.t.Helper()
	for i := 0; i < 20; i++ {
		e := c.next()
		if f(e) {
			return e
		}
	}
	c.t.Fatalf("%s: never got %s", c.jid, what)
	return elem{}
}

// expectStreamError reads until a stream error and returns its condition.
func (c *client) expectStreamError() string {
	c.t.Helper()
	for i := 0; i < 20; i++ {
		e, err := c.tryNext(5 * time.Second)
		if err != nil {
			c.t.Fatalf("expected a stream error, got %v", err)
		}
		if e.XMLName.Local == "error" && e.XMLName.Space == "http://etherx.jabber.org/streams" {
			var body struct {
				Any []struct{ XMLName xml.Name } `xml:",any"`
			}
			xml.Unmarshal([]byte("<e>"+e.Inner+"</e>"), &body)
			for _, a := range body.Any {
				if a.XMLName.Local != "text" {
					return a.XMLName.Local
				}
			}
			return ""
		}
	}
	c.t.Fatal("no stream error")
	return ""
}

func (c *client) startTLS() {
	c.t.Helper()
	c.expect("features", func(e elem) bool { return e.XMLName.Local == "features" })
	c.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	c.expect("proceed", func(e elem) bool { return e.XMLName.Local == "proceed" })
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS: %v", err)
	}
	tc.SetDeadline(time.Time{})
	c.conn = tc
	c.br = bufio.NewReader(tc)
	c.open("localhost")
}

// auth runs SASL with mellium's client mechanisms and reports the outcome:
// "" for success, else the failure condition.
func (c *client) auth(mech sasl.Mechanism, user, pass string) string {
	c.t.Helper()
	neg := sasl.NewClient(mech, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(user), []byte(pass), nil
	}))
	_, resp, err := neg.Step(nil)
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='` + mech.Name + `'>` + b64(resp) + `</auth>`)
	for i := 0; i < 5; i++ {
		e := c.next()
		data, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(e.Inner))
		switch e.XMLName.Local {
		case "challenge":
			_, resp, err := neg.Step(data)
			if err != nil {
				c.t.Fatalf("SASL step: %v", err)
			}
			c.send(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>` + b64(resp) + `</response>`)
		case "success":
			if strings.HasPrefix(mech.Name, "SCRAM") {
				if _, _, err := neg.Step(data); err != nil {
					c.t.Fatalf("server signature: %v", err)
				}
			}
			return ""
		case "failure":
			var f struct {
				Any []struct{ XMLName xml.Name } `xml:",any"`
			}
			xml.Unmarshal([]byte("<f>"+e.Inner+"</f>"), &f)
			if len(f.Any) == 0 {
				return "?"
			}
			return f.Any[0].XMLName.Local
		default:
			c.t.Fatalf("unexpected %v during SASL", e)
		}
	}
	c.t.Fatal("SASL did not end")
	return ""
}

func b64(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}

// bind restarts the stream and binds res ("" lets the server choose).
func (c *client) bind(res string) string {
	c.t.Helper()
	c.open("localhost")
	c.expect("features", func(e elem) bool { return e.XMLName.Local == "features" })
	req := `<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>`
	if res != "" {
		req = `<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>` + res + `</resource></bind>`
	}
	c.send(`<iq type='set' id='bind1'>` + req + `</iq>`)
	e := c.expect("bind result", func(e elem) bool { return e.attr("id") == "bind1" })
	if e.attr("type") != "result" {
		c.t.Fatalf("bind failed: %v", e)
	}
	var r struct {
		JID string `xml:"bind>jid"`
	}
	xml.Unmarshal([]byte("<r>"+e.Inner+"</r>"), &r)
	c.jid = r.JID
	return r.JID
}

// login connects, secures, authenticates with SCRAM-SHA-256 and binds.
func login(t testing.TB, ts *testServer, user, pass, res string) *client {
	t.Helper()
	c := dialClient(t, ts.addr)
	c.open("localhost")
	c.startTLS()
	c.expect("features", func(e elem) bool { return e.XMLName.Local == "features" })
	if cond := c.auth(sasl.ScramSha256, user, pass); cond != "" {
		t.Fatalf("login %s: %s", user, cond)
	}
	c.bind(res)
	return c
}

// available sends initial presence and waits until the server has taken it
// (a ping round trip orders it).
func (c *client) available() {
	c.t.Helper()
	c.send(`<presence/>`)
	c.sync()
}

// sync waits for a ping round trip to the server, so that everything sent
// before it has been processed.
func (c *client) sync() {
	c.t.Helper()
	c.send(`<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	c.expect("sync reply", func(e elem) bool { return e.attr("id") == "sync" })
}

func tlsDial(t testing.TB, c *client) *tls.Conn {
	t.Helper()
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS: %v", err)
	}
	tc.SetDeadline(time.Time{})
	return tc
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

func mustJID(s string) jid.JID { return jid.MustParse(s) }

// selfPresence is the least presence handling the core's tests need:
// a session's own broadcast presence is recorded so that it counts as
// available. (Package im does the real RFC 6121 work.)
type selfPresence struct{ srv **xmppd.Server }

func (p *selfPresence) OutboundPresence(ctx context.Context, st *xmppd.Stanza) {
	if !st.To.Equal(jid.JID{}) {
		return
	}
	if st.Type == "unavailable" {
		(*p.srv).SetPresence(st.From, nil)
	} else if st.Type == "" {
		(*p.srv).SetPresence(st.From, st)
	}
}
func (p *selfPresence) InboundPresence(ctx context.Context, st *xmppd.Stanza)     {}
func (p *selfPresence) SessionClosed(ctx context.Context, info xmppd.SessionInfo) {}
