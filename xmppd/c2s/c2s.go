// Package c2s serves client streams: after the stream engine (package
// stream) read the header, the negotiation of RFC 6120 (STARTTLS, SASL
// through package auth, resource binding) and the refusal of in-band
// registration; then the bound session, whose read loop hands each stanza
// to the router and whose write queue is the Sink of its router.Session.
package c2s

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/auth"
	"dialtone/xmppd/router"
	"dialtone/xmppd/stream"
	"dialtone/xmppd/wire"
)

// Namespaces of the client negotiation.
const (
	nsBind    = "urn:ietf:params:xml:ns:xmpp-bind"
	nsSession = "urn:ietf:params:xml:ns:xmpp-session"
	nsPing    = "urn:xmpp:ping"
)

// Config configures client streams. Every field is required but IPLockout.
type Config struct {
	Domain   jid.JID
	TLS      *tls.Config // server certificate
	SASL     *auth.SASL
	Accounts auth.Accounts
	// IPLockout counts failed logins per client IP (keyed "ip:ADDR"); nil:
	// no per-IP limit.
	IPLockout *auth.Lockout
	// RegistrationURL is where in-band registration attempts are sent.
	RegistrationURL string

	AuthTimeout   time.Duration // the whole negotiation
	IdleTimeout   time.Duration // silence before the server pings
	PingTimeout   time.Duration // silence after the ping before closing
	ParkAfter     time.Duration // silence before the session parks (wire.Parker); 0: never
	SASLAttempts  int           // failed SASL attempts per connection
	MaxStanzaSize int
	// Rate is the bytes per second one client may send (a burst of ten
	// seconds' worth); 0: no limit.
	Rate int

	Stream  *stream.Config
	Router  *router.Router
	Pending *stream.PendingTable
	Log     *slog.Logger
}

// Service serves the client streams of a server.
type Service struct {
	cfg Config
	m   *stream.Metrics

	mu      sync.Mutex
	conns   map[*conn]struct{} // connections not yet bound
	closing bool
	wg      sync.WaitGroup

	// shared is the TLS configuration of every connection when the
	// certificate is fixed, and sharedLeaf its certificate.
	sharedTLS  sync.Once
	shared     *tls.Config
	sharedLeaf []byte
}

// New returns the service of cfg.
func New(cfg Config) *Service {
	return &Service{cfg: cfg, m: cfg.Stream.Metrics, conns: make(map[*conn]struct{})}
}

// conn is a client connection from accept until it is bound (then its
// session takes over) or closed.
type conn struct {
	svc *Service
	st  *stream.Conn
	tcp *stream.TCP // nil over WebSocket
	wr  *wire.Reader
	ip  string
	// websocket: XMPP over WebSocket (RFC 7395), where there is no
	// STARTTLS; secure says whether the HTTP request came over TLS.
	websocket bool

	rate   *stream.Rate // what the client may send; nil: no limit
	secure bool
	// binding is the channel binding data of a TLS connection this
	// server terminated (zero over a proxy's TLS): what SCRAM-*-PLUS binds to.
	binding    auth.ChannelBinding
	userAgent  string // SASL2 <user-agent id=…/>, once authenticated
	inSASL2    bool   // a XEP-0388 exchange is running
	number     auth.Number
	generation int64
	authed     bool
	// guessed: the last SASL failure judged credentials (saslFailure).
	guessed bool
	lang    string
	slot    *stream.PendingSlot // its place among the unauthenticated connections
	sess    *session            // from authentication on
}

// track adds c to the connections Shutdown interrupts; false when the
// service is shutting down.
func (s *Service) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Service) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Closing reports whether the service is shutting down.
func (s *Service) Closing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Serve runs a TCP connection accepted by a listener (direct: TLS from
// the first byte, XEP-0368) until its stream ends. slot is its place among
// the unauthenticated connections, released when it authenticates.
func (s *Service) Serve(nc net.Conn, direct bool, slot *stream.PendingSlot) {
	t := stream.NewTCP(nc, s.cfg.MaxStanzaSize)
	c := &conn{svc: s, tcp: t, ip: stream.RemoteIP(nc), slot: slot}
	c.st = stream.NewConn(t, s.cfg.Stream)
	if !s.track(c) {
		slot.Release()
		nc.Close()
		return
	}
	c.run(func() error {
		// Reads and writes alike, before any handshake: a client that sends
		// nothing, or half a ClientHello, must not outlive the deadline.
		nc.SetDeadline(c.wr.Deadline())
		if direct {
			if err := c.handshake(); err != nil {
				s.cfg.Log.Debug("direct TLS handshake failed", "ip", c.ip, "err", err)
				return err
			}
		}
		return nil
	})
}

// ServeTransport runs a client stream over t (WebSocket, RFC 7395) until it
// ends; secure says whether the HTTP request came over TLS, binding is the
// channel binding of that TLS when this server terminated it (zero behind
// a proxy). False, and t closed, when the service is shutting down.
func (s *Service) ServeTransport(t stream.Transport, ip string, secure bool, binding auth.ChannelBinding, slot *stream.PendingSlot) bool {
	c := &conn{svc: s, ip: ip, websocket: true, secure: secure, binding: binding, slot: slot}
	c.st = stream.NewConn(t, s.cfg.Stream)
	if !s.track(c) {
		slot.Release()
		t.Close()
		return false
	}
	c.run(nil)
	return true
}

// Shutdown interrupts the connections still negotiating (they end with
// system-shutdown); the bound sessions are closed through the router.
func (s *Service) Shutdown() {
	s.mu.Lock()
	s.closing = true
	pending := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		pending = append(pending, c)
	}
	s.mu.Unlock()
	for _, c := range pending {
		c.st.Interrupt()
	}
}

// Wait waits for every connection to end, or for ctx.
func (s *Service) Wait(ctx context.Context) error { return stream.Wait(ctx, &s.wg) }

// tlsConfig is the server's TLS configuration for one connection; leaf
// receives the DER certificate presented to the client, for
// tls-server-end-point. With a fixed certificate every connection shares
// one configuration (a copy per connection cost each session its bytes
// and each login a clone); a GetCertificate needs one per connection to
// learn the certificate chosen.
func (s *Service) tlsConfig(leaf *[]byte) *tls.Config {
	if s.cfg.TLS.GetCertificate == nil {
		s.sharedTLS.Do(func() { s.shared = s.newTLSConfig(&s.sharedLeaf) })
		*leaf = s.sharedLeaf
		return s.shared
	}
	return s.newTLSConfig(leaf)
}

// newTLSConfig makes a TLS configuration of the server's, for tlsConfig.
func (s *Service) newTLSConfig(leaf *[]byte) *tls.Config {
	cfg := s.cfg.TLS.Clone()
	switch {
	case cfg.GetCertificate != nil:
		get := cfg.GetCertificate
		cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			cert, err := get(hello)
			if err == nil && cert != nil && len(cert.Certificate) > 0 {
				*leaf = cert.Certificate[0]
			}
			return cert, err
		}
	case len(cfg.Certificates) == 1 && len(cfg.Certificates[0].Certificate) > 0:
		*leaf = cfg.Certificates[0].Certificate[0]
	}
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if len(cfg.NextProtos) == 0 {
		cfg.NextProtos = []string{"xmpp-client"}
	}
	return cfg
}

// run negotiates the stream after start (a TLS handshake) and, once a
// resource is bound, serves the session.
func (c *conn) run(start func() error) {
	s := c.svc
	parked := false
	defer func() {
		if !parked { // a parked session's resume calls Done
			s.wg.Done()
		}
	}()
	defer func() {
		s.untrack(c)
		c.slot.Release()
	}()
	defer func() {
		if r := recover(); r != nil {
			s.cfg.Log.Error("panic in negotiation", "ip", c.ip, "panic", r)
			c.st.Transport().Close()
		}
	}()
	c.wr = c.st.Reader()
	if c.rate = stream.NewRate(s.cfg.Rate, s.m.RateWaited); c.rate != nil {
		c.wr.SetLimiter(c.rate)
	}
	c.wr.SetDeadline(time.Now().Add(s.cfg.AuthTimeout))
	c.st.SetFallbackHeader(c.header(nil))
	if start != nil {
		if err := start(); err != nil {
			c.st.Transport().Close()
			return
		}
	}
	sess, err := c.negotiate()
	if err != nil {
		cond, text := c.st.Fail(err)
		if cond != "" {
			s.cfg.Log.Debug("negotiation failed", "ip", c.ip, "condition", cond, "text", text)
		} else if !errors.Is(err, io.EOF) {
			s.cfg.Log.Debug("connection closed during negotiation", "ip", c.ip, "err", err)
		}
		switch {
		case c.sess != nil && c.sess.rs.Kept():
			// A session resumed as the stream failed: its module decides.
			if !s.cfg.Router.StreamEnded(c.sess.rs, c.sess, true) {
				s.cfg.Router.Closed(c.sess.rs)
			}
		case c.sess != nil:
			s.cfg.Router.Closed(c.sess.rs) // authenticated, never bound
		}
		return
	}
	c.slot.Release()
	s.untrack(c)
	parked = sess.serve()
}

// header is our stream header; to is the client's validated 'from'.
func (c *conn) header(to *jid.JID) stream.Header {
	h := stream.Header{ContentNS: router.NSClient, ID: stream.NewID(), From: c.svc.cfg.Domain.String(), Lang: c.lang}
	if to != nil {
		h.To = to.String()
	}
	return h
}

// readHeader reads and checks the client's stream header (RFC 6120 §4.7)
// and answers with ours and the stream features, or with ours alone when
// a stream error then goes in it.
func (c *conn) readHeader() error {
	t, err := c.st.ReadHeader()
	if err != nil {
		return err
	}
	ph, err := stream.CheckHeader(c.wr, t, router.NSClient)
	if ph.Lang != "" {
		c.lang = ph.Lang
	}
	var from *jid.JID
	if ph.HasFrom {
		if j, err := jid.Parse(ph.From); err == nil {
			from = &j
		}
	}
	if err == nil && ph.HasTo && !c.servesDomain(ph.To) {
		err = stream.NewError("host-unknown", "this server does not serve that domain")
	}
	if err != nil {
		c.st.WriteHeader(c.header(from)) // the stream error of err follows it, or cannot
		return err
	}
	// The features go with the header: one write.
	return c.st.WriteHeader(c.header(from), c.features())
}

func (c *conn) servesDomain(to string) bool {
	j, err := jid.Parse(to)
	return err == nil && j.Equal(c.svc.cfg.Domain)
}

// features returns the stream features for the current state.
func (c *conn) features() []byte {
	b := wire.NewBuilder(nil)
	b.Start("stream:features")
	hooks := c.svc.cfg.Router.Hooks()
	switch {
	case !c.secure && !c.websocket:
		b.StartNS("starttls", stream.NSTLS).Element("required", "", "").End()
	case !c.authed:
		mechs := c.svc.cfg.SASL.Offer(c.authConn())
		b.StartNS("mechanisms", stream.NSSASL)
		for _, m := range mechs {
			b.Element("mechanism", "", m)
		}
		b.End()
		if types := c.binding.Types(); len(types) > 0 {
			// XEP-0440: which binding -PLUS may use here.
			b.StartNS("sasl-channel-binding", nsChannelBinding)
			for _, t := range types {
				b.Start("channel-binding", "type", t).End()
			}
			b.End()
		}
		c.sasl2Feature(b, mechs)
		b.Raw(hooks.Features(router.PreAuth, c.info()))
	default:
		b.Element("bind", nsBind, "")
		b.StartNS("session", nsSession).Element("optional", "", "").End()
		b.Raw(hooks.Features(router.PostAuth, c.info()))
	}
	return b.Bytes()
}

// info describes the stream to the modules.
func (c *conn) info() router.ConnInfo {
	ci := router.ConnInfo{Secure: c.secure, WebSocket: c.websocket}
	if c.sess != nil {
		ci.Session, ci.Stream = c.sess.rs, c.sess
	}
	return ci
}

// maxRefusedSASL bounds the SASL failures per connection that judged no
// credentials (a mechanism or channel binding the client cannot do, a
// malformed message), on top of SASLAttempts.
const maxRefusedSASL = 10

// failed counts a failed SASL exchange: as a guess (failures) when it
// judged credentials, else as refused; too many of either end the stream.
func (c *conn) failed(failures, refused *int) error {
	if c.guessed {
		*failures++
	} else {
		*refused++
	}
	if *failures >= c.svc.cfg.SASLAttempts || *refused >= maxRefusedSASL {
		return stream.NewError("not-authorized", "too many failed authentication attempts")
	}
	return nil
}

// negotiate runs STARTTLS, SASL and resource binding, and returns the bound
// session.
func (c *conn) negotiate() (*session, error) {
	if err := c.restart(); err != nil {
		return nil, err
	}
	hooks := c.svc.cfg.Router.Hooks()
	failures, refused := 0, 0
	for {
		el, err := c.wr.ReadElement()
		if err != nil {
			return nil, err
		}
		ns := el.Name.Space
		name := el.Start.Name.Local
		switch {
		case ns == stream.NSTLS && name == "starttls":
			if err := c.startTLS(); err != nil {
				return nil, err
			}
			if err := c.restart(); err != nil {
				return nil, err
			}
		case ns == nsSASL2 && name == "authenticate":
			if err := c.mayAuthenticate(); err != nil {
				return nil, err
			}
			sess, ok, err := c.authenticate2(el)
			if err != nil || sess != nil {
				return sess, err
			}
			if !ok {
				if err := c.failed(&failures, &refused); err != nil {
					return nil, err
				}
			}
		case ns == stream.NSSASL && name == "auth":
			if !c.secure && !c.websocket {
				c.st.Write(wire.NewBuilder(nil).StartNS("failure", stream.NSSASL).Element("encryption-required", "", "").Bytes())
				return nil, stream.NewError("policy-violation", "STARTTLS is required before authentication")
			}
			if c.authed {
				return nil, stream.NewError("policy-violation", "already authenticated")
			}
			ok, err := c.authenticate(el)
			if err != nil {
				return nil, err
			}
			if !ok {
				if err := c.failed(&failures, &refused); err != nil {
					return nil, err
				}
				continue
			}
			// Authenticated: no longer counted, nor evicted for a newcomer
			// (the negotiation's deadline still bounds binding).
			c.slot.Release()
			if err := c.restart(); err != nil {
				return nil, err
			}
		case c.authed && ns == router.NSClient && name == "iq":
			sess, err := c.bindOrSession(el)
			if sess != nil || err != nil {
				return sess, err
			}
		case c.authed && hooks.Nonza(router.PostAuth, ns) != nil:
			var resumed *router.Session
			info := c.info()
			info.Resume = func(s *router.Session) { resumed = s }
			reply, err := hooks.Nonza(router.PostAuth, ns)(c.sess.rs.Context(), info, el)
			if err != nil {
				return nil, err
			}
			if len(reply) > 0 {
				if err := c.st.Write(reply); err != nil {
					if resumed != nil {
						c.adopt(resumed) // its end is the module's: it was kept
					}
					return nil, err
				}
			}
			if resumed != nil {
				return c.adopt(resumed), nil
			}
		case !c.authed && ns == router.NSClient && name == "iq" && isRegister(el):
			// XEP-0077 in-band registration: accounts are proven by SMS.
			st, err := router.Parse(el, router.NSClient, nil)
			if err != nil {
				return nil, stream.NewError("not-authorized", "authenticate first")
			}
			r := st.ErrorReply(router.NewError("cancel", "not-allowed", "Accounts are not registered here: your phone number is your account. Get a password by SMS at "+c.svc.cfg.RegistrationURL))
			r.From = jid.JID{}
			if err := c.st.Write(r.Bytes()); err != nil {
				return nil, err
			}
		case !c.secure && !c.websocket:
			return nil, stream.NewError("policy-violation", "STARTTLS is required")
		case !c.authed:
			return nil, stream.NewError("not-authorized", "authenticate first")
		default:
			return nil, stream.NewError("not-authorized", "bind a resource first")
		}
	}
}

func isRegister(el wire.Element) bool {
	return el.First.Space == "jabber:iq:register" && el.First.Local == "query"
}

// restart reads the client's (new) stream header and sends new features.
func (c *conn) restart() error {
	return c.readHeader()
}

// startTLS answers <starttls/> and secures the connection.
func (c *conn) startTLS() error {
	switch {
	case c.tcp == nil:
		return stream.NewError("policy-violation", "no STARTTLS over WebSocket")
	case c.secure:
		return stream.NewError("policy-violation", "TLS is already in place")
	}
	if err := c.st.Write(wire.NewBuilder(nil).Element("proceed", stream.NSTLS, "").Bytes()); err != nil {
		return err
	}
	// Nothing else writes during the negotiation: the handshake needs no
	// lock, and Interrupt cuts it short.
	return c.handshake()
}

// handshake secures the TCP connection as a server and keeps its channel
// binding data.
func (c *conn) handshake() error {
	var leaf []byte
	tc, err := c.tcp.Handshake(c.svc.tlsConfig(&leaf), false, c.wr.Deadline())
	if err != nil {
		return err
	}
	c.secure = true
	c.binding = auth.BindingOf(tc.ConnectionState(), leaf)
	return nil
}

// authConn is what SASL needs to know of the connection.
func (c *conn) authConn() auth.Conn {
	return auth.Conn{TLS: c.secure, Binding: c.binding, SASL2: c.inSASL2}
}

// bindOrSession handles an iq after authentication and before binding:
// resource binding (RFC 6120 §7), or the legacy session establishment.
func (c *conn) bindOrSession(el wire.Element) (*session, error) {
	st, err := router.Parse(el, router.NSClient, nil)
	if err != nil {
		return nil, stream.NewError("not-authorized", "bind a resource first")
	}
	switch {
	case st.Type == "set" && st.Payload == xml.Name{Space: nsBind, Local: "bind"}:
	case st.Type == "set" && st.Payload == sessionPayload:
		return nil, c.st.Write(st.Reply("result", nil).Bytes())
	default:
		return nil, stream.NewError("not-authorized", "bind a resource first")
	}
	var req struct {
		Resource string `xml:"resource"`
	}
	if err := st.DecodePayload(&req); err != nil {
		return nil, c.st.Write(st.ErrorReply(router.NewError("modify", "bad-request", "")).Bytes())
	}
	res := strings.TrimSpace(req.Resource)
	if res == "" {
		res = "dt-" + stream.NewID()[:12]
	}
	full, err := jid.New(string(c.number), c.svc.cfg.Domain.String(), res)
	if err != nil {
		return nil, c.st.Write(st.ErrorReply(router.NewError("modify", "bad-request", "invalid resource")).Bytes())
	}
	sess := c.sess
	// Reachable before the client learns its JID: whoever it tells at once
	// must find it. What is routed to it meanwhile waits in its queue,
	// which the writer starts on after this result.
	err = c.svc.cfg.Router.Bind(sess.rs, full, c.confirmGeneration)
	switch {
	case errors.Is(err, router.ErrTooManyResources):
		// RFC 6120 §7.6.2.1; the client may close another resource and
		// try again within the negotiation's time.
		return nil, c.st.Write(st.ErrorReply(router.NewError("wait", "resource-constraint", "too many resources bound for this account")).Bytes())
	case err != nil:
		return nil, err
	}
	b := wire.NewBuilder(nil)
	b.StartNS("bind", nsBind).Element("jid", "", full.String()).End()
	result := st.Reply("result", b.Bytes())
	result.From = jid.JID{}
	if err := c.st.Write(result.Bytes()); err != nil {
		c.svc.cfg.Router.Unregister(sess.rs)
		return nil, err
	}
	return sess, nil
}

// adopt makes the stream carry s, a kept session resumed on it, instead
// of the session it authenticated, which ends unbound.
func (c *conn) adopt(s *router.Session) *session {
	prev := c.sess.rs
	c.sess.rs = s
	c.sess.carried.Store(s)
	c.svc.cfg.Router.Closed(prev)
	return c.sess
}

// confirmGeneration refuses a session that authenticated with a password
// the account no longer has: a login racing a password change (or the
// promotion of a requested password), whose closing of the account's
// sessions came before this one was in the table.
func (c *conn) confirmGeneration() error {
	s := c.svc
	ctx, cancel := context.WithDeadline(context.Background(), c.wr.Deadline())
	defer cancel()
	ctx, cancel = s.cfg.Router.StoreContext(ctx)
	defer cancel()
	acc, err := s.cfg.Accounts.Account(ctx, c.number)
	switch {
	case errors.Is(err, auth.ErrNotFound):
		return stream.NewError("not-authorized", "the account is gone")
	case err != nil:
		s.cfg.Log.Error("checking the password generation at bind", "number", c.number, "err", err)
		return stream.NewError("internal-server-error", "")
	case acc.Generation > c.generation:
		s.cfg.Log.Info("a login raced a password change: not bound", "number", c.number, "ip", c.ip)
		return stream.NewError("not-authorized", "the password changed")
	}
	return nil
}

// newSessionOf makes the session of the connection, just authenticated.
func (c *conn) newSessionOf(number auth.Number) error {
	bare, err := jid.New(string(number), c.svc.cfg.Domain.Domainpart(), "")
	if err != nil {
		return fmt.Errorf("c2s: the JID of %s: %w", number, err)
	}
	c.sess = newSession(c, bare)
	c.svc.cfg.Router.Authenticated(c.sess.rs)
	return nil
}
