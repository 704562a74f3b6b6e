package xmppd

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/auth"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// Namespaces used during negotiation.
const (
	nsStream  = "http://etherx.jabber.org/streams"
	nsTLS     = "urn:ietf:params:xml:ns:xmpp-tls"
	nsSASL    = "urn:ietf:params:xml:ns:xmpp-sasl"
	nsBind    = "urn:ietf:params:xml:ns:xmpp-bind"
	nsSession = "urn:ietf:params:xml:ns:xmpp-session"
	nsStreams = "urn:ietf:params:xml:ns:xmpp-streams"
	nsStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"
	nsPing    = "urn:xmpp:ping"
)

// NSClient and NSServer are the content namespaces of c2s and s2s streams.
const (
	NSClient = router.NSClient
	NSServer = router.NSServer
)

// conn is a client connection from accept until it is bound (then its
// session takes over) or closed.
type conn struct {
	srv    *Server
	raw    net.Conn // the TCP connection
	nc     net.Conn // raw, or the TLS connection over it
	ip     string
	direct bool
	// websocket: XMPP over WebSocket (RFC 7395), where there is no
	// STARTTLS; secure says whether the HTTP request came over TLS.
	websocket bool

	wr   *wire.Reader
	rate *byteRate // what the client may send (rate.go); nil: no limit

	secure     bool
	number     auth.Number
	generation int64
	authed     bool
	sess       *session // from authentication on
	headerSent bool
	lang       string
	slot       *pendingSlot // its place among the unauthenticated connections

	writeMu sync.Mutex // only for abort racing the negotiation
	dead    bool
}

// run negotiates the stream and, once a resource is bound, serves the session.
func (c *conn) run() {
	s := c.srv
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.releasePending()
	}()
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in negotiation", "ip", c.ip, "panic", r)
			c.nc.Close()
		}
	}()
	c.wr = wire.NewReader(c.nc, s.cfg.MaxStanzaSize)
	if c.rate = newByteRate(s.cfg.C2SRate, s.m.RateWaited); c.rate != nil {
		c.wr.SetLimiter(c.rate)
	}
	c.wr.SetDeadline(time.Now().Add(s.cfg.AuthTimeout))
	// Reads and writes alike, before any handshake: a client that sends
	// nothing, or half a ClientHello, must not outlive the deadline.
	c.raw.SetDeadline(c.wr.Deadline())
	if c.direct {
		tc := tls.Server(c.raw, c.tlsConfig())
		if err := tc.Handshake(); err != nil {
			s.log.Debug("direct TLS handshake failed", "ip", c.ip, "err", err)
			c.raw.Close()
			return
		}
		c.nc = tc
		c.wr.Reset(tc)
		c.secure = true
	}
	sess, err := c.negotiate()
	if err != nil {
		c.fail(err)
		if c.sess != nil {
			s.router.Closed(c.sess.rs) // authenticated, never bound
		}
		return
	}
	c.releasePending()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	sess.serve()
}

func (c *conn) tlsConfig() *tls.Config {
	cfg := c.srv.cfg.TLS.Clone()
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{"xmpp-client"}
	}
	return cfg
}

func (c *conn) releasePending() { c.slot.release() }

// evict ends a connection whose place among the unauthenticated ones was
// given to another (pendingTable); it must not block.
func (c *conn) evict() {
	c.srv.log.Debug("unauthenticated connection evicted for a newcomer", "ip", c.ip)
	c.raw.Close()
}

// abort ends a connection that is still negotiating (server shutdown).
func (c *conn) abort() {
	c.writeMu.Lock()
	c.dead = true
	c.writeMu.Unlock()
	c.raw.SetDeadline(time.Now())
}

// writeFinal sends the last bytes of an aborted connection, past the
// abort and briefly: a client that does not read must not hold up the
// shutdown.
func (c *conn) writeFinal(b []byte) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.nc.Write(b)
}

// write sends bytes during negotiation.
func (c *conn) write(parts ...[]byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.dead {
		return net.ErrClosed
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	for _, p := range parts {
		if _, err := c.nc.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// fail ends the negotiation: with a stream error for protocol errors,
// silently for network errors.
func (c *conn) fail(err error) {
	s := c.srv
	c.writeMu.Lock()
	aborted := c.dead
	c.writeMu.Unlock()
	var se *streamError
	if aborted {
		// Shutdown cut the negotiation short: that is what the client is
		// told, as every stream is (SPEC.md).
		se = &streamError{"system-shutdown", ""}
	} else if cond, text := conditionOf(err); cond != "" {
		se = &streamError{cond, text}
	}
	if se != nil {
		s.m.StreamErrors.WithLabelValues(se.cond).Inc()
		s.log.Debug("negotiation failed", "ip", c.ip, "condition", se.cond, "text", se.text)
		var b []byte
		if !c.headerSent {
			b = c.header(nil)
		}
		b = appendStreamError(b, se.cond, se.text)
		if aborted {
			c.writeFinal(b)
		} else {
			c.write(b)
		}
	} else if !errors.Is(err, io.EOF) {
		s.log.Debug("connection closed during negotiation", "ip", c.ip, "err", err)
	}
	if tc, ok := c.nc.(*tls.Conn); ok && se != nil {
		tc.CloseWrite()
	}
	c.nc.Close()
}

// header returns our stream header; to is the peer's validated 'from'.
func (c *conn) header(to *jid.JID) []byte {
	c.headerSent = true
	b := make([]byte, 0, 256)
	b = append(b, `<?xml version='1.0'?><stream:stream xmlns="jabber:client" xmlns:stream="`+nsStream+`" id="`...)
	b = append(b, randomID()...)
	b = append(b, `" from="`...)
	b = AppendEscaped(b, c.srv.domain.String())
	b = append(b, '"')
	if to != nil {
		b = append(b, ` to="`...)
		b = AppendEscaped(b, to.String())
		b = append(b, '"')
	}
	lang := c.lang
	if lang == "" {
		lang = "en"
	}
	b = append(b, ` version="1.0" xml:lang="`...)
	b = AppendEscaped(b, lang)
	return append(b, `">`...)
}

// readHeader reads and checks the client's stream header (RFC 6120 §4.7)
// and answers with ours. A new decoder starts with every stream restart.
func (c *conn) readHeader() error {
	c.headerSent = false // a new stream gets a new header, even to carry an error
	t, err := c.wr.ReadHeader()
	if err != nil {
		return err
	}
	return c.checkHeader(t)
}

func (c *conn) checkHeader(t xml.StartElement) error {
	var (
		from *jid.JID
		errc string
		text string
	)
	if lang, ok := wire.Attr(t, "xml", "lang"); ok && validLang(lang) {
		c.lang = lang
	}
	if f, ok := wire.Attr(t, "", "from"); ok {
		if j, err := jid.Parse(f); err == nil {
			from = &j
		}
	}
	to, hasTo := wire.Attr(t, "", "to")
	version, _ := wire.Attr(t, "", "version")
	switch {
	case t.Name.Local != "stream" || c.wr.HeaderNS() != nsStream:
		errc, text = "invalid-namespace", "expected a stream in "+nsStream
	case c.wr.DefaultNS() != NSClient:
		errc, text = "invalid-namespace", "expected content namespace jabber:client"
	case hasTo && !c.servesDomain(to):
		errc, text = "host-unknown", "this server does not serve that domain"
	case !supportedVersion(version):
		errc, text = "unsupported-version", "XMPP 1.0 streams only"
	}
	c.write(c.header(from))
	if errc != "" {
		return serr(errc, text)
	}
	return nil
}

func (c *conn) servesDomain(to string) bool {
	j, err := jid.Parse(to)
	return err == nil && j.Equal(c.srv.domain)
}

// supportedVersion reports whether a stream header's version is one this
// server speaks: 1.0, or a higher one, which it answers with 1.0 (RFC 6120
// §4.7.5). The version is "major.minor", two non-negative integers; none
// at all means a pre-1.0 stream.
func supportedVersion(v string) bool {
	major, minor, ok := strings.Cut(v, ".")
	return ok && isDigits(major) && isDigits(minor) && strings.TrimLeft(major, "0") != ""
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func validLang(s string) bool {
	if len(s) == 0 || len(s) > 35 {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// features returns the stream features for the current state.
func (c *conn) features() []byte {
	b := []byte("<stream:features>")
	switch {
	case !c.secure && !c.websocket:
		b = append(b, `<starttls xmlns="`+nsTLS+`"><required/></starttls>`...)
	case !c.authed:
		b = append(b, `<mechanisms xmlns="`+nsSASL+`">`...)
		for _, m := range c.srv.cfg.SASL.Mechanisms(c.secure) {
			b = append(b, "<mechanism>"...)
			b = append(b, m...)
			b = append(b, "</mechanism>"...)
		}
		b = append(b, "</mechanisms>"...)
		b = append(b, c.srv.router.Hooks().Features(router.PreAuth, c.info())...)
	default:
		b = append(b, `<bind xmlns="`+nsBind+`"/><session xmlns="`+nsSession+`"><optional/></session>`...)
		b = append(b, c.srv.router.Hooks().Features(router.PostAuth, c.info())...)
	}
	return append(b, "</stream:features>"...)
}

// info describes the stream to the modules.
func (c *conn) info() router.ConnInfo {
	ci := router.ConnInfo{Secure: c.secure, WebSocket: c.websocket}
	if c.sess != nil {
		ci.Session = c.sess.rs
	}
	return ci
}

// elementNS returns the namespace of a top-level element.
func elementNS(el wire.Element) string { return el.Name.Space }

// negotiate runs STARTTLS, SASL and resource binding, and returns the bound
// session.
func (c *conn) negotiate() (*session, error) {
	if err := c.readHeader(); err != nil {
		return nil, err
	}
	if err := c.write(c.features()); err != nil {
		return nil, err
	}
	failures := 0
	for {
		el, err := c.wr.ReadElement()
		if err != nil {
			return nil, err
		}
		ns := elementNS(el)
		name := el.Start.Name.Local
		switch {
		case ns == nsTLS && name == "starttls":
			if c.websocket {
				return nil, serr("policy-violation", "no STARTTLS over WebSocket")
			}
			if c.secure {
				return nil, serr("policy-violation", "TLS is already in place")
			}
			if err := c.startTLS(); err != nil {
				return nil, err
			}
			if err := c.restart(); err != nil {
				return nil, err
			}
		case ns == nsSASL && name == "auth":
			if !c.secure && !c.websocket {
				c.write([]byte(`<failure xmlns="` + nsSASL + `"><encryption-required/></failure>`))
				return nil, serr("policy-violation", "STARTTLS is required before authentication")
			}
			if c.authed {
				return nil, serr("policy-violation", "already authenticated")
			}
			ok, err := c.authenticate(el)
			if err != nil {
				return nil, err
			}
			if !ok {
				failures++
				if failures >= c.srv.cfg.SASLAttempts {
					return nil, serr("not-authorized", "too many failed authentication attempts")
				}
				continue
			}
			// Authenticated: no longer counted, nor evicted for a newcomer
			// (the negotiation's deadline still bounds binding).
			c.releasePending()
			if err := c.restart(); err != nil {
				return nil, err
			}
		case c.authed && ns == NSClient && name == "iq":
			sess, err := c.bindOrSession(el)
			if sess != nil || err != nil {
				return sess, err
			}
		case c.authed && c.srv.router.Hooks().Nonza(router.PostAuth, ns) != nil:
			reply, err := c.srv.router.Hooks().Nonza(router.PostAuth, ns)(c.sess.rs.Context(), c.info(), el)
			if err != nil {
				return nil, err
			}
			if len(reply) > 0 {
				if err := c.write(reply); err != nil {
					return nil, err
				}
			}
		case !c.authed && ns == NSClient && name == "iq" && isRegister(el):
			// XEP-0077 in-band registration: accounts are proven by SMS.
			st, err := router.Parse(el, NSClient, nil)
			if err != nil {
				return nil, serr("not-authorized", "authenticate first")
			}
			r := st.ErrorReply(stanzaErr("cancel", "not-allowed", "Accounts are not registered here: your phone number is your account. Get a password by SMS at "+c.srv.cfg.RegistrationURL))
			r.From = jid.JID{}
			if err := c.write(r.Bytes()); err != nil {
				return nil, err
			}
		case !c.secure && !c.websocket:
			return nil, serr("policy-violation", "STARTTLS is required")
		case !c.authed:
			return nil, serr("not-authorized", "authenticate first")
		default:
			return nil, serr("not-authorized", "bind a resource first")
		}
	}
}

func isRegister(el wire.Element) bool {
	return el.First.Space == "jabber:iq:register" && el.First.Local == "query"
}

// restart reads the client's new stream header and sends new features.
func (c *conn) restart() error {
	if err := c.readHeader(); err != nil {
		return err
	}
	return c.write(c.features())
}

func (c *conn) startTLS() error {
	if err := c.write([]byte(`<proceed xmlns="` + nsTLS + `"/>`)); err != nil {
		return err
	}
	if c.wr.Buffered() > 0 {
		// Bytes sent before TLS was in place would be trusted by nobody.
		return serr("policy-violation", "data after starttls")
	}
	tc := tls.Server(c.raw, c.tlsConfig())
	c.raw.SetDeadline(c.wr.Deadline())
	if err := tc.Handshake(); err != nil {
		return err
	}
	c.nc = tc
	c.wr.Reset(tc)
	c.secure = true
	return nil
}

// authenticate runs one SASL exchange; false means it failed (the failure
// was sent and the client may try again).
func (c *conn) authenticate(el wire.Element) (bool, error) {
	s := c.srv
	mech, _ := wire.Attr(el.Start, "", "mechanism")
	ctx, cancel := context.WithDeadline(context.Background(), c.wr.Deadline())
	defer cancel()
	ipKey := auth.Number("ip:" + c.ip)
	if s.cfg.IPLockout.Locked(ipKey) > 0 {
		s.m.LoginFailures.Inc()
		return false, c.saslFailure(&auth.Failure{Condition: "temporary-auth-failure", Text: "too many failed logins from your address; try again later"})
	}
	ex, err := s.cfg.SASL.Start(mech, c.secure)
	if err != nil {
		return false, c.saslFailure(err)
	}
	resp, err := saslData(el.Inner, true)
	if err != nil {
		return false, c.saslFailure(&auth.Failure{Condition: "incorrect-encoding"})
	}
	for {
		challenge, done, err := ex.Next(ctx, resp)
		if err != nil {
			var f *auth.Failure
			if errors.As(err, &f) && f.Condition == "not-authorized" {
				s.cfg.IPLockout.Fail(ipKey)
			}
			return false, c.saslFailure(err)
		}
		if done {
			c.number = ex.Number()
			c.generation = ex.Generation()
			c.authed = true
			bare, err := jid.New(string(c.number), s.domain.Domainpart(), "")
			if err != nil {
				return false, fmt.Errorf("xmppd: the JID of %s: %w", c.number, err)
			}
			c.sess = newSession(c, bare)
			s.router.Authenticated(c.sess.rs)
			s.m.Logins.Inc()
			if err := s.cfg.Accounts.RecordLogin(ctx, c.number, time.Now()); err != nil {
				s.log.Error("recording login failed", "number", c.number, "err", err)
			}
			s.log.Info("login", "jid", string(c.number)+"@"+s.domain.String(), "ip", c.ip)
			return true, c.write(saslElement("success", challenge))
		}
		if err := c.write(saslElement("challenge", challenge)); err != nil {
			return false, err
		}
		next, err := c.wr.ReadElement()
		if err != nil {
			return false, err
		}
		if elementNS(next) != nsSASL {
			return false, serr("policy-violation", "expected a SASL response")
		}
		switch next.Start.Name.Local {
		case "response":
			if resp, err = saslData(next.Inner, false); err != nil {
				return false, c.saslFailure(&auth.Failure{Condition: "incorrect-encoding"})
			}
		case "abort":
			return false, c.saslFailure(&auth.Failure{Condition: "aborted"})
		default:
			return false, serr("policy-violation", "expected a SASL response")
		}
	}
}

// saslFailure sends <failure/> for err; it returns an error only when the
// connection cannot go on.
func (c *conn) saslFailure(err error) error {
	cond, text := "not-authorized", ""
	var f *auth.Failure
	if errors.As(err, &f) {
		cond, text = f.Condition, f.Text
	} else {
		c.srv.log.Error("SASL failed", "ip", c.ip, "err", err)
		cond = "temporary-auth-failure"
	}
	if cond != "aborted" && cond != "invalid-mechanism" {
		c.srv.m.LoginFailures.Inc()
	}
	b := []byte(`<failure xmlns="` + nsSASL + `"><` + cond + `/>`)
	if text != "" {
		b = append(b, "<text>"...)
		b = AppendEscaped(b, text)
		b = append(b, "</text>"...)
	}
	b = append(b, "</failure>"...)
	return c.write(b)
}

// saslData decodes the base64 text of a SASL element. In <auth>, no text
// means no initial response (nil) and "=" an empty one.
func saslData(inner []byte, initial bool) ([]byte, error) {
	t := bytes.TrimSpace(inner)
	if bytes.IndexByte(t, '<') >= 0 {
		return nil, errors.New("markup in SASL data")
	}
	if len(t) == 0 {
		if initial {
			return nil, nil
		}
		return []byte{}, nil
	}
	if string(t) == "=" {
		return []byte{}, nil
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(t)))
	n, err := base64.StdEncoding.Decode(out, t)
	if err != nil {
		return nil, err
	}
	return out[:n], nil
}

func saslElement(name string, data []byte) []byte {
	b := []byte("<" + name + ` xmlns="` + nsSASL + `">`)
	if data != nil {
		if len(data) == 0 && name == "success" {
			b = append(b, '=')
		} else {
			b = base64.StdEncoding.AppendEncode(b, data)
		}
	}
	return append(b, "</"+name+">"...)
}

// bindOrSession handles an iq after authentication and before binding:
// resource binding (RFC 6120 §7), or the legacy session establishment.
func (c *conn) bindOrSession(el wire.Element) (*session, error) {
	st, err := router.Parse(el, NSClient, nil)
	if err != nil {
		return nil, serr("not-authorized", "bind a resource first")
	}
	switch {
	case st.Type == "set" && st.Payload == xml.Name{Space: nsBind, Local: "bind"}:
	case st.Type == "set" && st.Payload == sessionPayload:
		return nil, c.write(st.Reply("result", nil).Bytes())
	default:
		return nil, serr("not-authorized", "bind a resource first")
	}
	var req struct {
		Resource string `xml:"resource"`
	}
	if err := st.DecodePayload(&req); err != nil {
		return nil, c.write(st.ErrorReply(stanzaErr("modify", "bad-request", "")).Bytes())
	}
	res := strings.TrimSpace(req.Resource)
	if res == "" {
		res = "dt-" + randomID()[:12]
	}
	full, err := jid.New(string(c.number), c.srv.domain.String(), res)
	if err != nil {
		return nil, c.write(st.ErrorReply(stanzaErr("modify", "bad-request", "invalid resource")).Bytes())
	}
	sess := c.sess
	// Reachable before the client learns its JID: whoever it tells at once
	// must find it. What is routed to it meanwhile waits in its queue,
	// which the writer starts on after this result.
	err = c.srv.router.Bind(sess.rs, full, c.confirmGeneration)
	switch {
	case errors.Is(err, router.ErrTooManyResources):
		// RFC 6120 §7.6.2.1; the client may close another resource and
		// try again within the negotiation's time.
		return nil, c.write(st.ErrorReply(stanzaErr("wait", "resource-constraint", "too many resources bound for this account")).Bytes())
	case err != nil:
		return nil, err
	}
	b := wire.NewBuilder(nil)
	b.StartNS("bind", nsBind).Element("jid", "", full.String()).End()
	result := st.Reply("result", b.Bytes())
	result.From = jid.JID{}
	if err := c.write(result.Bytes()); err != nil {
		c.srv.router.Unregister(sess.rs)
		return nil, err
	}
	return sess, nil
}

// confirmGeneration refuses a session that authenticated with a password
// the account no longer has: a login racing a password change (or the
// promotion of a requested password), whose closing of the account's
// sessions came before this one was in the table.
func (c *conn) confirmGeneration() error {
	s := c.srv
	ctx, cancel := context.WithDeadline(context.Background(), c.wr.Deadline())
	defer cancel()
	ctx, cancel = s.router.StoreContext(ctx)
	defer cancel()
	acc, err := s.cfg.Accounts.Account(ctx, c.number)
	switch {
	case errors.Is(err, auth.ErrNotFound):
		return serr("not-authorized", "the account is gone")
	case err != nil:
		s.log.Error("checking the password generation at bind", "number", c.number, "err", err)
		return serr("internal-server-error", "")
	case acc.Generation > c.generation:
		s.log.Info("a login raced a password change: not bound", "number", c.number, "ip", c.ip)
		return serr("not-authorized", "the password changed")
	}
	return nil
}
