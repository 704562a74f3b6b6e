package main

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
	"strings"
	"sync/atomic"
	"time"

	"mellium.im/sasl"
)

// dialer holds what every connection of a run shares.
type dialer struct {
	addr   string // resolved and checked loopback host:port
	domain string
	direct bool   // TLS from the first byte (XEP-0368) instead of STARTTLS
	mech   string // SASL mechanism name
	// quiet: login ends after binding, without presence (the offline
	// scenario's receiver sends it when it is ready to count).
	quiet bool
	// at, when set, is the address of each account (--addr with several
	// nodes of a cluster); addr serves the others.
	at map[string]string
	// src, when set, are the local addresses connections bind to, in
	// turn (--src); nextSrc counts the connections made.
	src     []net.IP
	nextSrc *atomic.Uint64
	// groups, when set, are the only TLS key exchange groups offered
	// (--tls-groups).
	groups []tls.CurveID
}

// spread gives account i the address i mod len(addrs): the two clients
// of a route pair (i and i^1) are then always on different nodes.
func (d *dialer) spread(addrs []string, accs []account) {
	d.at = make(map[string]string, len(accs))
	for i, a := range accs {
		d.at[a.jid] = addrs[i%len(addrs)]
	}
}

// addrOf is where acc logs in.
func (d *dialer) addrOf(acc account) string {
	if a, ok := d.at[acc.jid]; ok {
		return a
	}
	return d.addr
}

// session is one logged-in client stream. After login the raw bufio.Reader
// is handed to the scenario (no XML decoding from then on).
type session struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	jid  string // full JID bound by the server
}

// account is one login.
type account struct {
	jid, password string
}

func (a account) local() string {
	if i := strings.IndexByte(a.jid, '@'); i >= 0 {
		return a.jid[:i]
	}
	return a.jid
}

const streamHeader = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='%s'>`

// features is the part of <stream:features/> that login needs.
type features struct {
	StartTLS   *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-tls starttls"`
	Mechanisms []string  `xml:"urn:ietf:params:xml:ns:xmpp-sasl mechanisms>mechanism"`
	Bind       *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-bind bind"`
	Session    *struct {
		Optional *struct{} `xml:"optional"`
	} `xml:"urn:ietf:params:xml:ns:xmpp-session session"`
}

// login runs TCP, TLS, SASL, resource binding and initial presence, and
// waits for the answer to a ping sent after the presence, so that the
// server has processed everything when it returns. The context bounds it.
func (d *dialer) login(ctx context.Context, acc account, resource string) (*session, error) {
	raw, err := d.dial(ctx, d.addrOf(acc))
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	s, err := d.negotiate(raw, acc, resource)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("%s: %w", acc.jid, err)
	}
	s.conn.SetDeadline(time.Time{})
	return s, nil
}

// dial connects to addr, from the next --src address when there are some.
func (d *dialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	var nd net.Dialer
	if len(d.src) > 0 {
		k := (d.nextSrc.Add(1) - 1) % uint64(len(d.src))
		nd.LocalAddr = &net.TCPAddr{IP: d.src[k]}
	}
	return nd.DialContext(ctx, "tcp", addr)
}

func (d *dialer) tlsConfig() *tls.Config {
	return &tls.Config{
		ServerName:         d.domain,
		InsecureSkipVerify: true, // test servers are self-signed; loopback only
		NextProtos:         []string{"xmpp-client"},
		CurvePreferences:   d.groups,
	}
}

// parseGroups reads --tls-groups; empty is Go's default (nil).
func parseGroups(s string) ([]tls.CurveID, error) {
	var out []tls.CurveID
	for _, name := range strings.Split(s, ",") {
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "":
		case "x25519":
			out = append(out, tls.X25519)
		case "x25519mlkem768":
			out = append(out, tls.X25519MLKEM768)
		case "p256":
			out = append(out, tls.CurveP256)
		default:
			return nil, fmt.Errorf("unknown group %q (x25519, x25519mlkem768, p256)", name)
		}
	}
	return out, nil
}

func (d *dialer) negotiate(raw net.Conn, acc account, resource string) (*session, error) {
	var conn net.Conn = raw
	var tlsConn *tls.Conn
	if d.direct {
		tlsConn = tls.Client(raw, d.tlsConfig())
		if err := tlsConn.Handshake(); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		conn = tlsConn
	}
	s := &session{conn: conn, r: bufio.NewReaderSize(conn, 4<<10), w: bufio.NewWriterSize(conn, 4<<10)}
	f, dec, err := s.restart(d.domain)
	if err != nil {
		return nil, err
	}
	if tlsConn == nil {
		if f.StartTLS == nil {
			return nil, errors.New("server offers no STARTTLS")
		}
		if err := s.send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`); err != nil {
			return nil, err
		}
		start, err := nextElement(dec)
		if err != nil {
			return nil, err
		}
		if start.Name.Local != "proceed" {
			return nil, fmt.Errorf("starttls: got <%s/>", start.Name.Local)
		}
		tlsConn = tls.Client(raw, d.tlsConfig())
		if err := tlsConn.Handshake(); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		s.conn = tlsConn
		s.r.Reset(tlsConn)
		s.w.Reset(tlsConn)
		if f, dec, err = s.restart(d.domain); err != nil {
			return nil, err
		}
	}
	if err := s.auth(dec, f.Mechanisms, d.mech, acc, tlsConn.ConnectionState()); err != nil {
		return nil, err
	}
	if f, dec, err = s.restart(d.domain); err != nil {
		return nil, err
	}
	if f.Bind == nil {
		return nil, errors.New("server offers no resource binding")
	}
	if err := s.send(`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>` + resource + `</resource></bind></iq>`); err != nil {
		return nil, err
	}
	var bound struct {
		Type string `xml:"type,attr"`
		JID  string `xml:"bind>jid"`
	}
	if err := expectIQ(dec, "bind1", &bound); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	s.jid = bound.JID
	if f.Session != nil && f.Session.Optional == nil {
		if err := s.send(`<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>`); err != nil {
			return nil, err
		}
		if err := expectIQ(dec, "sess1", nil); err != nil {
			return nil, fmt.Errorf("session: %w", err)
		}
	}
	if d.quiet {
		return s, nil
	}
	// The ping's answer comes after the presence has been handled.
	if err := s.send(`<presence/><iq type='get' id='ready1'><ping xmlns='urn:xmpp:ping'/></iq>`); err != nil {
		return nil, err
	}
	if err := expectIQ(dec, "ready1", nil); err != nil && !errors.Is(err, errIQError) {
		return nil, fmt.Errorf("ping: %w", err)
	}
	return s, nil
}

// send writes and flushes one piece of negotiation.
func (s *session) send(x string) error {
	s.w.WriteString(x)
	return s.w.Flush()
}

// restart opens a new stream and reads the server's header and features.
// The decoder reads the session's bufio.Reader byte by byte (it is an
// io.ByteReader), so nothing is read past the element it returns.
func (s *session) restart(domain string) (features, *xml.Decoder, error) {
	var f features
	if err := s.send(fmt.Sprintf(streamHeader, domain)); err != nil {
		return f, nil, err
	}
	dec := xml.NewDecoder(s.r)
	dec.Strict = false
	for {
		t, err := dec.Token()
		if err != nil {
			return f, nil, fmt.Errorf("stream header: %w", err)
		}
		if se, ok := t.(xml.StartElement); ok {
			if se.Name.Local != "stream" {
				return f, nil, fmt.Errorf("expected stream header, got <%s>", se.Name.Local)
			}
			break
		}
	}
	start, err := nextElement(dec)
	if err != nil {
		return f, nil, err
	}
	if start.Name.Local != "features" {
		return f, nil, fmt.Errorf("expected stream features, got <%s>", start.Name.Local)
	}
	if err := dec.DecodeElement(&f, &start); err != nil {
		return f, nil, fmt.Errorf("stream features: %w", err)
	}
	return f, dec, nil
}

// nextElement returns the next top-level start element; a stream error or
// the end of the stream is an error.
func nextElement(dec *xml.Decoder) (xml.StartElement, error) {
	for {
		t, err := dec.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := t.(type) {
		case xml.StartElement:
			if t.Name.Local == "error" && t.Name.Space == "http://etherx.jabber.org/streams" {
				var e struct {
					Inner []byte `xml:",innerxml"`
				}
				dec.DecodeElement(&e, &t)
				return t, fmt.Errorf("stream error: %s", e.Inner)
			}
			return t, nil
		case xml.EndElement:
			return xml.StartElement{}, errors.New("stream closed by server")
		}
	}
}

var errIQError = errors.New("iq error")

// expectIQ skips top-level elements until the iq with the id, and decodes it
// into v (when not nil).
func expectIQ(dec *xml.Decoder, id string, v any) error {
	for i := 0; i < 1000; i++ {
		start, err := nextElement(dec)
		if err != nil {
			return err
		}
		var idAttr, typ string
		for _, a := range start.Attr {
			switch a.Name.Local {
			case "id":
				idAttr = a.Value
			case "type":
				typ = a.Value
			}
		}
		if start.Name.Local != "iq" || idAttr != id {
			if err := dec.Skip(); err != nil {
				return err
			}
			continue
		}
		if typ == "error" {
			dec.Skip()
			return errIQError
		}
		if v == nil {
			return dec.Skip()
		}
		return dec.DecodeElement(v, &start)
	}
	return fmt.Errorf("no answer to iq %s among 1000 elements", id)
}

// mechanism maps a flag value to mellium.im/sasl's client mechanism.
func mechanism(name string) (sasl.Mechanism, error) {
	switch strings.ToUpper(name) {
	case "SCRAM-SHA-256":
		return sasl.ScramSha256, nil
	case "SCRAM-SHA-1":
		return sasl.ScramSha1, nil
	case "PLAIN":
		return sasl.Plain, nil
	}
	return sasl.Mechanism{}, fmt.Errorf("unknown SASL mechanism %q (want SCRAM-SHA-256, SCRAM-SHA-1 or PLAIN)", name)
}

func (s *session) auth(dec *xml.Decoder, offered []string, mechName string, acc account, cs tls.ConnectionState) error {
	m, err := mechanism(mechName)
	if err != nil {
		return err
	}
	ok := false
	for _, o := range offered {
		if strings.EqualFold(strings.TrimSpace(o), m.Name) {
			ok = true
		}
	}
	if !ok {
		return fmt.Errorf("server does not offer %s (offers %v)", m.Name, offered)
	}
	user, pass := acc.local(), acc.password
	var c interface {
		Step([]byte) (bool, []byte, error)
	}
	if strings.HasPrefix(m.Name, "SCRAM") {
		// Our own SCRAM client: it caches SaltedPassword as real clients do.
		if c, err = newScram(m.Name, user, pass); err != nil {
			return err
		}
	} else {
		c = sasl.NewClient(m, sasl.Credentials(func() ([]byte, []byte, []byte) {
			return []byte(user), []byte(pass), nil
		}), sasl.TLSState(cs), sasl.RemoteMechanisms(offered...))
	}
	_, resp, err := c.Step(nil)
	if err != nil {
		return fmt.Errorf("sasl: %w", err)
	}
	if err := s.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='` + m.Name + `'>` + b64(resp) + `</auth>`); err != nil {
		return err
	}
	for i := 0; i < 10; i++ {
		start, err := nextElement(dec)
		if err != nil {
			return err
		}
		var body struct {
			Text  string `xml:",chardata"`
			Inner string `xml:",innerxml"`
		}
		if err := dec.DecodeElement(&body, &start); err != nil {
			return err
		}
		switch start.Name.Local {
		case "challenge", "success":
			data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(body.Text))
			if err != nil {
				return fmt.Errorf("sasl %s: %w", start.Name.Local, err)
			}
			if start.Name.Local == "success" {
				if strings.HasPrefix(m.Name, "SCRAM") {
					// Check the server's signature.
					if _, _, err := c.Step(data); err != nil {
						return fmt.Errorf("sasl: server signature: %w", err)
					}
				}
				return nil
			}
			_, resp, err := c.Step(data)
			if err != nil {
				return fmt.Errorf("sasl: %w", err)
			}
			if err := s.send(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>` + b64(resp) + `</response>`); err != nil {
				return err
			}
		case "failure":
			return fmt.Errorf("sasl failure: %s", strings.TrimSpace(body.Inner))
		default:
			return fmt.Errorf("sasl: unexpected <%s/>", start.Name.Local)
		}
	}
	return errors.New("sasl: too many steps")
}

func b64(b []byte) string {
	if len(b) == 0 {
		return "="
	}
	return base64.StdEncoding.EncodeToString(b)
}

// close ends the stream politely and closes the connection.
func (s *session) close() {
	s.conn.SetWriteDeadline(time.Now().Add(time.Second))
	s.w.WriteString(`</stream:stream>`)
	s.w.Flush()
	s.conn.Close()
}

var _ io.ByteReader = (*bufio.Reader)(nil)
