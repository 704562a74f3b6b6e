// Package xmpptest is a deliberately plain XMPP client for tests: it writes
// exactly what it is told and reads top-level elements back, so that a test
// can also misbehave (send malformed XML, spoof a 'from', stop reading).
// It is used by the core's tests (package xmppd) and by the end-to-end
// tests of the whole daemon (package daemon).
//
// Every read has a deadline (five seconds unless told otherwise) and every
// failure fails the test at once: a test never hangs on a silent server.
package xmpptest

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"
)

// Timeout is how long Next (and everything built on it) waits for an element.
const Timeout = 5 * time.Second

// ErrStreamEnd is returned by TryNext when the server closed its stream.
var ErrStreamEnd = errors.New("stream ended")

// Elem is a top-level element as the client sees it: its name, its
// attributes and its content as raw XML.
type Elem struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Inner   string     `xml:",innerxml"`
}

// Attr returns the value of the attribute name without namespace ("lang"
// also matches xml:lang), or "".
func (e Elem) Attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Local == name && (a.Name.Space == "" || name == "lang") {
			return a.Value
		}
	}
	return ""
}

// String shows the element in test failures.
func (e Elem) String() string {
	return fmt.Sprintf("<%s %v>%s", e.XMLName.Local, e.Attrs, e.Inner)
}

// Client is one connection to the server. Conn is the current connection
// (the TLS one after StartTLS), exposed so that tests can write raw bytes
// or tune the socket.
type Client struct {
	T      testing.TB
	Conn   net.Conn
	Domain string // the server's domain, "localhost" by default
	JID    string // the bound full JID, once Bind succeeded
	// HeaderAttrs are more attributes (namespace declarations, say) for
	// every stream header Open sends.
	HeaderAttrs string

	br  *bufio.Reader
	dec *xml.Decoder
}

// Dial connects to addr without TLS (for STARTTLS); the connection is
// closed when the test ends.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	return DialFrom(t, "", addr)
}

// DialFrom is Dial from the local address local ("127.0.0.2": another
// client IP on loopback; "" any).
func DialFrom(t testing.TB, local, addr string) *Client {
	t.Helper()
	d := net.Dialer{Timeout: Timeout}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &Client{T: t, Conn: conn, Domain: "localhost", br: bufio.NewReader(conn)}
}

// DialTLS connects to a direct TLS port (XEP-0368) and completes the TLS
// handshake; the server's certificate is not verified.
func DialTLS(t testing.TB, addr string) *Client {
	t.Helper()
	c := Dial(t, addr)
	c.setConn(c.handshake())
	return c
}

func (c *Client) setConn(conn net.Conn) {
	c.Conn = conn
	c.br = bufio.NewReader(conn)
}

func (c *Client) handshake() *tls.Conn {
	c.T.Helper()
	tc := tls.Client(c.Conn, &tls.Config{InsecureSkipVerify: true, ServerName: c.Domain})
	tc.SetDeadline(time.Now().Add(Timeout))
	if err := tc.Handshake(); err != nil {
		c.T.Fatalf("TLS: %v", err)
	}
	tc.SetDeadline(time.Time{})
	return tc
}

// Send writes s as it is.
func (c *Client) Send(s string) {
	c.T.Helper()
	c.Conn.SetWriteDeadline(time.Now().Add(Timeout))
	if _, err := io.WriteString(c.Conn, s); err != nil {
		c.T.Fatalf("write: %v", err)
	}
}

// Open sends a stream header to the domain to and reads the server's header.
func (c *Client) Open(to string) {
	c.T.Helper()
	c.Send(`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' ` + c.HeaderAttrs + ` to='` + to + `' version='1.0'>`)
	c.ReadHeader()
}

// ReadHeader starts reading a new stream and returns the server's header.
func (c *Client) ReadHeader() xml.StartElement {
	c.T.Helper()
	c.dec = xml.NewDecoder(c.br)
	c.Conn.SetReadDeadline(time.Now().Add(Timeout))
	for {
		tok, err := c.dec.Token()
		if err != nil {
			c.T.Fatalf("reading stream header: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "stream" {
				c.T.Fatalf("expected stream header, got %v", se.Name)
			}
			return se
		}
	}
}

// Next reads the next top-level element; it fails the test on timeout or
// when the stream ends.
func (c *Client) Next() Elem {
	c.T.Helper()
	e, err := c.TryNext(Timeout)
	if err != nil {
		c.T.Fatalf("%s: reading: %v", c.JID, err)
	}
	return e
}

// TryNext reads the next top-level element, waiting at most d. The error
// is ErrStreamEnd when the server closed the stream.
func (c *Client) TryNext(d time.Duration) (Elem, error) {
	c.Conn.SetReadDeadline(time.Now().Add(d))
	for {
		tok, err := c.dec.Token()
		if err != nil {
			return Elem{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			var e Elem
			if err := c.dec.DecodeElement(&e, &t); err != nil {
				return Elem{}, err
			}
			return e, nil
		case xml.EndElement:
			return Elem{}, ErrStreamEnd
		}
	}
}

// Expect reads until an element satisfying f arrives, skipping others (at
// most 20), and returns it.
func (c *Client) Expect(what string, f func(Elem) bool) Elem {
	c.T.Helper()
	for i := 0; i < 20; i++ {
		e := c.Next()
		if f(e) {
			return e
		}
	}
	c.T.Fatalf("%s: never got %s", c.JID, what)
	return Elem{}
}

// ExpectStreamError reads until a stream error and returns its condition.
func (c *Client) ExpectStreamError() string {
	c.T.Helper()
	for i := 0; i < 20; i++ {
		e, err := c.TryNext(Timeout)
		if err != nil {
			c.T.Fatalf("expected a stream error, got %v", err)
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
	c.T.Fatal("no stream error")
	return ""
}

// StartTLS waits for the stream features, asks for STARTTLS, runs the
// handshake and opens the new stream.
func (c *Client) StartTLS() {
	c.T.Helper()
	c.Expect("features", func(e Elem) bool { return e.XMLName.Local == "features" })
	c.Send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	c.Expect("proceed", func(e Elem) bool { return e.XMLName.Local == "proceed" })
	c.setConn(c.handshake())
	c.Open(c.Domain)
}

// Auth runs SASL with mellium's client mechanisms and reports the outcome:
// "" for success, else the failure condition.
func (c *Client) Auth(mech sasl.Mechanism, user, pass string) string {
	c.T.Helper()
	return c.AuthWith(sasl.NewClient(mech, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(user), []byte(pass), nil
	})), mech.Name)
}

// AuthWith runs SASL with the client neg of mechanism mech (for options
// such as sasl.TLSState) and reports the outcome as Auth does.
func (c *Client) AuthWith(neg *sasl.Negotiator, mech string) string {
	c.T.Helper()
	_, resp, err := neg.Step(nil)
	if err != nil {
		c.T.Fatal(err)
	}
	c.Send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='` + mech + `'>` + b64(resp) + `</auth>`)
	for i := 0; i < 5; i++ {
		e := c.Next()
		data, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(e.Inner))
		switch e.XMLName.Local {
		case "challenge":
			_, resp, err := neg.Step(data)
			if err != nil {
				c.T.Fatalf("SASL step: %v", err)
			}
			c.Send(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>` + b64(resp) + `</response>`)
		case "success":
			if strings.HasPrefix(mech, "SCRAM") {
				if _, _, err := neg.Step(data); err != nil {
					c.T.Fatalf("server signature: %v", err)
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
			c.T.Fatalf("unexpected %v during SASL", e)
		}
	}
	c.T.Fatal("SASL did not end")
	return ""
}

func b64(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}

// Bind restarts the stream after authentication and binds res ("" lets the
// server choose); it returns the bound full JID.
func (c *Client) Bind(res string) string {
	c.T.Helper()
	c.Open(c.Domain)
	c.Expect("features", func(e Elem) bool { return e.XMLName.Local == "features" })
	return c.BindResource(res)
}

// BindResource binds res with no stream restart (after SASL2, XEP-0388,
// whose features the caller read); it returns the bound full JID.
func (c *Client) BindResource(res string) string {
	c.T.Helper()
	req := `<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>`
	if res != "" {
		req = `<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>` + res + `</resource></bind>`
	}
	c.Send(`<iq type='set' id='bind1'>` + req + `</iq>`)
	e := c.Expect("bind result", func(e Elem) bool { return e.Attr("id") == "bind1" })
	if e.Attr("type") != "result" {
		c.T.Fatalf("bind failed: %v", e)
	}
	var r struct {
		JID string `xml:"bind>jid"`
	}
	xml.Unmarshal([]byte("<r>"+e.Inner+"</r>"), &r)
	c.JID = r.JID
	return r.JID
}

// Login connects to a STARTTLS port on addr, secures the stream,
// authenticates with SCRAM-SHA-256 and binds res.
func Login(t testing.TB, addr, user, pass, res string) *Client {
	t.Helper()
	c := Dial(t, addr)
	c.Login(user, pass, res)
	return c
}

// Login runs the whole negotiation on a new connection (Dial): STARTTLS,
// SCRAM-SHA-256 and binding res.
func (c *Client) Login(user, pass, res string) {
	c.T.Helper()
	c.secureAuth(user, pass)
	c.Bind(res)
}

// secureAuth opens the stream, secures it and authenticates.
func (c *Client) secureAuth(user, pass string) {
	c.T.Helper()
	c.Open(c.Domain)
	c.StartTLS()
	c.Expect("features", func(e Elem) bool { return e.XMLName.Local == "features" })
	if cond := c.Auth(sasl.ScramSha256, user, pass); cond != "" {
		c.T.Fatalf("login %s: %s", user, cond)
	}
}

// Authenticate runs the negotiation on a new connection (Dial) up to
// binding: STARTTLS, SCRAM-SHA-256, the restart; it returns the features
// offered then (bind, XEP-0198 resumption).
func (c *Client) Authenticate(user, pass string) Elem {
	c.T.Helper()
	c.secureAuth(user, pass)
	c.Open(c.Domain)
	return c.Expect("features", func(e Elem) bool { return e.XMLName.Local == "features" })
}

// Available sends initial presence and waits until the server has taken it
// (a ping round trip orders it).
func (c *Client) Available() {
	c.T.Helper()
	c.Send(`<presence/>`)
	c.Sync()
}

// Sync waits for a ping round trip to the server, so that everything sent
// before it has been processed. Elements that arrive before the answer are
// skipped (at most 20).
func (c *Client) Sync() {
	c.T.Helper()
	c.Send(`<iq type='get' id='sync' to='` + c.Domain + `'><ping xmlns='urn:xmpp:ping'/></iq>`)
	c.Expect("sync reply", func(e Elem) bool { return e.Attr("id") == "sync" })
}
