package s2s

import (
	"context"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/xmppd/router"
	"dialtone/xmppd/stream"
	"dialtone/xmppd/wire"
)

// Namespaces of server-to-server streams.
const (
	nsDialback        = stream.NSDialback
	nsDialbackFeature = "urn:xmpp:features:dialback"
	nsBidi            = "urn:xmpp:bidi"
	nsBidiFeature     = "urn:xmpp:features:bidi"
)

// link is one TCP connection with another server, in either direction,
// on the stream engine: its reader runs on the goroutine that made it; its
// writes go through the stream's bounded queue, or straight out during
// the negotiation.
type link struct {
	f        *Federation
	st       *stream.Conn
	tcp      *stream.TCP
	wr       *wire.Reader
	outgoing bool
	ip       string
	id       string // stream id: ours on incoming streams, the peer's on outgoing ones
	peer     string // outgoing: the domain dialed; incoming: the header's 'from' (may be "")
	local    string // the served domain of our header: outgoing, the one dialling; incoming, the header's 'to' (or the domain)
	secure   bool
	certOK   bool // the peer's certificate is valid for peer (outgoing) / for its header 'from' (incoming)
	certs    []*x509.Certificate
	bidi     bool                // XEP-0288 negotiated
	sasl     bool                // authenticated with SASL EXTERNAL (no more SASL)
	slot     *stream.PendingSlot // incoming, until authenticated: its place among the unauthenticated connections

	negDeadline time.Time // incoming: the end of the time to authenticate

	// ctx is the link's: what it carries is handled under it; cancelled
	// when the link is finished.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	authed map[pair]bool // (local, remote) pairs the peer may send on: from remote to local
	up     bool          // counted in the links gauge
	idle   *time.Timer   // closes the link after IdleTimeout without stanzas

	active atomic.Int64 // unix nanoseconds of the last stanza either way
}

func (f *Federation) newLink(nc net.Conn, outgoing bool) *link {
	t := stream.NewTCP(nc, f.srv.MaxStanzaSize)
	s := &link{
		f:        f,
		tcp:      t,
		wr:       t.Reader(),
		outgoing: outgoing,
		local:    f.domain,
		authed:   map[pair]bool{},
	}
	s.st = stream.NewConn(t, f.streams)
	s.st.OnOverflow(func() {
		f.log.Warn("closing a link that does not read", "peer", s.peer, "direction", s.direction())
	})
	if r := stream.NewRate(f.cfg.Rate, f.srv.Stream.Metrics.RateWaited); r != nil {
		s.wr.SetLimiter(r)
	}
	s.ctx, s.cancel = context.WithCancel(f.ctx)
	s.active.Store(time.Now().UnixNano())
	// Dialback answers are queued from other goroutines during the
	// negotiation: the queue writes from the start.
	s.st.Start()
	return s
}

func (s *link) direction() string {
	if s.outgoing {
		return "out"
	}
	return "in"
}

// send queues b and never blocks: a peer that cannot keep up loses the
// link (see stream.Conn.Send). It may be called with f.mu held: a link
// closed that way is dropped as a sender by the next Send that finds it
// closed.
func (s *link) send(b []byte) bool {
	if !s.st.Send(b) {
		return false
	}
	s.active.Store(time.Now().UnixNano())
	return true
}

// closeWith ends the link with a stream error (cond "" for a plain close)
// after what is queued, and stops routing to it. Not with f.mu held.
func (s *link) closeWith(cond, text string) {
	if !s.st.Close(cond, text) {
		return
	}
	s.f.mu.Lock()
	for _, r := range s.f.remotes {
		if r.out == s {
			r.out = nil
		}
	}
	s.f.mu.Unlock()
}

func (s *link) isAuthed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.authed) > 0
}

// authedFrom reports whether the peer authenticated domain for any of
// the domains served here on this stream.
func (s *link) authedFrom(domain string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.authed {
		if p.remote == domain {
			return true
		}
	}
	return false
}

// authedPair reports whether the peer authenticated remote to local on
// this stream (XEP-0220 §2.4: a stanza is accepted only for a verified
// pair of domains).
func (s *link) authedPair(local, remote string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authed[pair{local, remote}]
}

// isUp reports whether the stream is an established link, in either
// direction: an outgoing one once we authenticated to the peer, an
// incoming one once the peer authenticated to us. Only those are closed
// when idle (XMPPD_S2S_IDLE_TIMEOUT: every link, incoming or outgoing); a
// stream still negotiating has the connect and auth deadlines.
func (s *link) isUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up
}

// authenticate records that the peer proved it is domain to local on
// this stream.
func (s *link) authenticate(local, domain, method string) {
	s.mu.Lock()
	first := len(s.authed) == 0
	s.authed[pair{local, domain}] = true
	s.mu.Unlock()
	s.f.log.Info("s2s link authenticated", "peer", domain, "local", local, "direction", s.direction(), "method", method, "tls", s.secure, "bidi", s.bidi, "ip", s.ip)
	if first {
		s.established(method)
	}
}

// sendOn makes a bidirectional stream the way from local to domain, once
// the peer has been told it is authenticated.
func (s *link) sendOn(local, domain string) {
	if s.bidi {
		s.f.setSender(local, domain, s)
	}
}

// established counts the stream as an authenticated link and starts its
// idle timer.
func (s *link) established(method string) {
	s.mu.Lock()
	already := s.up
	s.up = true
	if !already {
		s.idle = time.AfterFunc(s.f.cfg.IdleTimeout, s.checkIdle)
	}
	s.mu.Unlock()
	if !already {
		s.f.m.links.WithLabelValues(s.direction()).Inc()
	}
	s.slot.Release()
}

// checkIdle closes a link that carried no stanza for IdleTimeout, or
// looks again when it will have.
func (s *link) checkIdle() {
	if s.st.Closed() {
		return
	}
	left := s.f.cfg.IdleTimeout - time.Since(time.Unix(0, s.active.Load()))
	if left > 0 {
		s.mu.Lock()
		if s.idle != nil {
			s.idle.Reset(left)
		}
		s.mu.Unlock()
		return
	}
	s.f.log.Debug("closing an idle link", "peer", s.peer, "direction", s.direction())
	s.closeWith("", "")
}

// fail ends a stream whose negotiation or reading failed, with the stream
// error the failure calls for, and waits for it to close.
func (s *link) fail(err error) {
	cond, text := stream.Condition(err)
	if cond == "" && err != nil && !errors.Is(err, errPeerStreamError) && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.f.log.Debug("link failed", "peer", s.peer, "direction", s.direction(), "err", err)
	}
	if cond != "" {
		s.f.log.Debug("closing link with a stream error", "peer", s.peer, "direction", s.direction(), "condition", cond, "text", text)
	}
	s.closeWith(cond, text)
	s.finish()
}

// finish waits for the final write, closes the connection and forgets the
// link.
func (s *link) finish() {
	s.st.Finish()
	s.cancel()
	s.mu.Lock()
	up := s.up
	s.up = false
	if s.idle != nil {
		s.idle.Stop()
	}
	s.mu.Unlock()
	if up {
		s.f.m.links.WithLabelValues(s.direction()).Dec()
	}
	s.slot.Release()
	s.f.untrack(s)
}

var errPeerStreamError = errors.New("the peer sent a stream error")

// header returns our stream header. On incoming streams it carries a new id.
func (s *link) header() stream.Header {
	h := stream.Header{ContentNS: router.NSServer, Dialback: true, From: s.local, To: s.peer}
	if !s.outgoing {
		s.id = stream.NewID()
		h.ID = s.id
	}
	return h
}

// readHeader reads the peer's stream header with a new decoder and checks
// it; incoming streams learn the peer's claimed domain from it.
func (s *link) readHeader() error {
	t, err := s.st.ReadHeader()
	if err != nil {
		return err
	}
	ph, err := stream.CheckHeader(s.wr, t, router.NSServer)
	if err != nil {
		return err
	}
	if s.outgoing {
		if ph.ID == "" {
			return stream.NewError("invalid-id", "no stream id")
		}
		s.id = ph.ID
		return nil
	}
	if ph.HasTo {
		// Any domain served here: the domain or a component host.
		j, err := jid.Parse(ph.To)
		if err != nil || j.Localpart() != "" || j.Resourcepart() != "" || !s.f.hosted(j.Domainpart()) {
			return stream.NewError("host-unknown", "this server does not serve that domain")
		}
		s.local = j.Domainpart()
	}
	if ph.HasFrom {
		j, err := jid.Parse(ph.From)
		if err != nil || j.Localpart() != "" || j.Resourcepart() != "" {
			return stream.NewError("invalid-from", "not a domain")
		}
		if s.peer != "" && s.peer != j.Domainpart() {
			return stream.NewError("invalid-from", "the domain changed on a restart")
		}
		s.peer = j.Domainpart()
	}
	return nil
}

// s2sFeatures is what the peer offers in <stream:features/>.
type s2sFeatures struct {
	StartTLS   *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-tls starttls"`
	Mechanisms []string  `xml:"urn:ietf:params:xml:ns:xmpp-sasl mechanisms>mechanism"`
	Dialback   *struct{} `xml:"urn:xmpp:features:dialback dialback"`
	Bidi       *struct{} `xml:"urn:xmpp:features:bidi bidi"`
}

func (ft *s2sFeatures) offers(mech string) bool {
	for _, m := range ft.Mechanisms {
		if strings.EqualFold(strings.TrimSpace(m), mech) {
			return true
		}
	}
	return false
}

// readFeatures reads the peer's header and its features.
func (s *link) readFeatures() (*s2sFeatures, error) {
	if err := s.readHeader(); err != nil {
		return nil, err
	}
	el, err := s.wr.ReadElement()
	if err != nil {
		return nil, err
	}
	if el.Name.Space != stream.NSStream || el.Start.Name.Local != "features" {
		if el.Name.Space == stream.NSStream && el.Start.Name.Local == "error" {
			return nil, s.peerError(el)
		}
		return nil, stream.NewError("invalid-xml", "expected stream features")
	}
	return parseFeatures(wrapChildren(el))
}

func parseFeatures(b []byte) (*s2sFeatures, error) {
	var ft s2sFeatures
	if err := xml.Unmarshal(b, &ft); err != nil {
		return nil, stream.NewError("invalid-xml", "unreadable stream features")
	}
	return &ft, nil
}

// wrapChildren puts the raw children of a top-level element into an
// element that declares the namespaces in force for them (the stream's
// content namespace, the element's own declarations, the header's it
// uses), so that they decode on their own.
func wrapChildren(el wire.Element) []byte {
	b := wire.NewBuilder(nil)
	b.Start("x")
	if _, ok := wire.Attr(el.Start, "", "xmlns"); !ok {
		b.Attr("xmlns", router.NSServer)
	}
	for _, attrs := range [][]xml.Attr{el.Carry, el.Start.Attr} {
		for _, a := range attrs {
			switch {
			case a.Name.Space == "" && a.Name.Local == "xmlns":
				b.Attr("xmlns", a.Value)
			case a.Name.Space == "xmlns":
				b.Attr("xmlns:"+a.Name.Local, a.Value)
			}
		}
	}
	return b.Raw(el.Inner).End().Bytes()
}

// peerError logs a stream error the peer sent and returns errPeerStreamError.
func (s *link) peerError(el wire.Element) error {
	var e struct {
		Children []struct{ XMLName xml.Name } `xml:",any"`
		Text     string                       `xml:"urn:ietf:params:xml:ns:xmpp-streams text"`
	}
	xml.Unmarshal(wrapChildren(el), &e)
	cond := ""
	for _, c := range e.Children {
		if c.XMLName.Space == stream.NSStreams && c.XMLName.Local != "text" {
			cond = c.XMLName.Local
		}
	}
	s.f.log.Info("the peer closed the link with a stream error", "peer", s.peer, "direction", s.direction(), "condition", cond, "text", e.Text)
	return errPeerStreamError
}

// interruptOn makes the reads and writes of the negotiation fail when ctx
// ends; the returned function stops that.
func (s *link) interruptOn(ctx context.Context) func() bool {
	return context.AfterFunc(ctx, func() { s.tcp.Raw().SetDeadline(time.Now()) })
}

// negotiateOut runs the initiating side up to the features after TLS.
func (s *link) negotiateOut(ctx context.Context, direct bool) (*s2sFeatures, error) {
	dl, _ := ctx.Deadline()
	s.wr.SetDeadline(dl)
	defer s.interruptOn(ctx)()
	if direct {
		if err := s.clientHandshake(true); err != nil {
			return nil, err
		}
	}
	for {
		if err := s.st.WriteHeader(s.header()); err != nil {
			return nil, err
		}
		ft, err := s.readFeatures()
		if err != nil {
			return nil, err
		}
		if s.secure {
			return ft, nil
		}
		if ft.StartTLS == nil {
			if s.f.cfg.AllowPlaintext {
				return ft, nil
			}
			return nil, stream.NewError("policy-violation", "STARTTLS is required")
		}
		if err := s.st.Write(wire.NewBuilder(nil).Element("starttls", stream.NSTLS, "").Bytes()); err != nil {
			return nil, err
		}
		el, err := s.wr.ReadElement()
		if err != nil {
			return nil, err
		}
		if el.Name.Space != stream.NSTLS || el.Start.Name.Local != "proceed" {
			return nil, fmt.Errorf("STARTTLS refused (%s)", el.Start.Name.Local)
		}
		if err := s.clientHandshake(false); err != nil {
			return nil, err
		}
	}
}

// clientHandshake secures an outgoing stream and checks the peer's
// certificate: valid for the domain, or the domain is listed as insecure.
func (s *link) clientHandshake(direct bool) error {
	s.st.Lock()
	defer s.st.Unlock()
	tc, err := s.tcp.Handshake(s.f.clientTLS(s.peer, direct), true, s.wr.Deadline())
	if err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	s.certs = tc.ConnectionState().PeerCertificates
	s.certOK = s.f.certValid(s.certs, s.peer)
	if !s.certOK && !s.f.insecure[s.peer] {
		tc.Close()
		return fmt.Errorf("the certificate of %s is not valid for it (list it in XMPPD_S2S_INSECURE_DOMAINS to accept it)", s.peer)
	}
	s.secure = true
	return nil
}

// authenticateOut proves our domain to the peer: SASL EXTERNAL when it is
// offered (the peer found our certificate valid), dialback otherwise.
func (s *link) authenticateOut(ctx context.Context, ft *s2sFeatures) (string, error) {
	dl, _ := ctx.Deadline()
	s.wr.SetDeadline(dl)
	defer s.interruptOn(ctx)()
	f := s.f
	if ft.Bidi != nil && s.secure && !f.cfg.DisableBidi {
		if err := s.st.Write(wire.NewBuilder(nil).Element("bidi", nsBidi, "").Bytes()); err != nil {
			return "", err
		}
		s.bidi = true
	}
	if s.secure && ft.offers("EXTERNAL") {
		if err := s.st.Write(stream.SASLElement("auth", []byte(s.local), "mechanism", "EXTERNAL")); err != nil {
			return "", err
		}
		el, err := s.wr.ReadElement()
		if err != nil {
			return "", err
		}
		switch {
		case el.Name.Space == stream.NSSASL && el.Start.Name.Local == "success":
			if err := s.st.WriteHeader(s.header()); err != nil {
				return "", err
			}
			if _, err := s.readFeatures(); err != nil {
				return "", err
			}
			s.finishOut()
			return "external", nil
		case el.Name.Space == stream.NSSASL && el.Start.Name.Local == "failure":
			f.m.auth.WithLabelValues("out", "external", "failed").Inc()
			f.log.Info("SASL EXTERNAL refused; trying dialback", "peer", s.peer, "failure", string(el.Inner))
		case el.Name.Space == stream.NSStream && el.Start.Name.Local == "error":
			return "", s.peerError(el)
		default:
			return "", stream.NewError("invalid-xml", "expected a SASL answer")
		}
	}
	if ft.Dialback == nil && !s.secure {
		return "", errors.New("the peer offers no way to authenticate")
	}
	key := f.dialbackKey(s.peer, s.local, s.id)
	if err := s.st.Write(wire.NewBuilder(nil).Start("db:result", "from", s.local, "to", s.peer).Text(key).Bytes()); err != nil {
		return "", err
	}
	for {
		el, err := s.wr.ReadElement()
		if err != nil {
			return "", err
		}
		ns, name := el.Name.Space, el.Start.Name.Local
		switch {
		case ns == nsDialback && name == "result":
			d := parseDialback(el)
			if d.from != s.peer || d.to != "" && d.to != s.local {
				continue
			}
			if typ := d.typ; typ == "valid" {
				s.finishOut()
				return "dialback", nil
			}
			f.m.auth.WithLabelValues("out", "dialback", "failed").Inc()
			return "", fmt.Errorf("dialback: %s answered %q %s", s.peer, d.typ, el.Inner)
		case ns == nsDialback && name == "verify":
			s.answerVerify(el)
		case ns == stream.NSStream && name == "error":
			return "", s.peerError(el)
		default:
			return "", stream.NewError("not-authorized", "expected a dialback result")
		}
	}
}

// finishOut marks an outgoing stream authenticated: stanzas from the peer
// are accepted on it only with XEP-0288.
func (s *link) finishOut() {
	s.wr.SetDeadline(time.Time{})
	if s.bidi {
		s.mu.Lock()
		s.authed[pair{s.local, s.peer}] = true
		s.mu.Unlock()
	}
	s.f.log.Info("s2s link up", "peer", s.peer, "local", s.local, "direction", "out", "tls", s.secure, "bidi", s.bidi, "cert_valid", s.certOK, "ip", s.ip)
}

// serveOutgoing reads an established outgoing stream until it ends.
func (s *link) serveOutgoing() {
	err := s.readLoop()
	s.fail(err)
}

// runIncoming negotiates and serves a stream a peer opened.
// Until the peer authenticates a domain, XMPPD_AUTH_TIMEOUT bounds the
// stream; then the idle timer does.
func (s *link) runIncoming() {
	s.negDeadline = time.Now().Add(s.f.srv.AuthTimeout)
	s.st.SetFallbackHeader(stream.Header{ContentNS: router.NSServer, Dialback: true, ID: stream.NewID(), From: s.f.domain})
	timer := time.AfterFunc(s.f.srv.AuthTimeout, func() {
		if !s.isAuthed() {
			s.closeWith("connection-timeout", "no authentication in time")
		}
	})
	defer timer.Stop()
	err := s.acceptHeader()
	if err == nil {
		err = s.readLoop()
	}
	var se *stream.Error
	if errors.As(err, &se) {
		switch se.Condition {
		case "invalid-from", "improper-addressing", "not-authorized", "host-unknown":
			s.f.m.rejected.WithLabelValues(se.Condition).Inc()
		}
	}
	s.fail(err)
}

// acceptHeader reads the initiating server's header and answers with ours
// and the features of the stream's state.
func (s *link) acceptHeader() error {
	err := s.readHeader()
	if err != nil {
		if cond, _ := stream.Condition(err); cond != "" {
			s.st.WriteHeader(s.header()) // the stream error goes in a stream
		}
		return err
	}
	if err := s.st.WriteHeader(s.header()); err != nil {
		return err
	}
	return s.st.Write(s.features())
}

func (s *link) features() []byte {
	b := wire.NewBuilder(nil)
	b.Start("stream:features")
	f := s.f
	dialback := func() { b.StartNS("dialback", nsDialbackFeature).Element("errors", "", "").End() }
	switch {
	case !s.secure:
		b.StartNS("starttls", stream.NSTLS)
		if !f.cfg.AllowPlaintext {
			b.Element("required", "", "")
		}
		b.End()
		if f.cfg.AllowPlaintext {
			dialback()
		}
	case !s.sasl:
		if s.peer != "" && f.certValid(s.certs, s.peer) {
			b.StartNS("mechanisms", stream.NSSASL).Element("mechanism", "", "EXTERNAL").End()
		}
		dialback()
		if !f.cfg.DisableBidi {
			b.Element("bidi", nsBidiFeature, "")
		}
	}
	return b.Bytes()
}

// readLoop reads top-level elements until the stream ends: on incoming
// streams negotiation (STARTTLS, SASL EXTERNAL, dialback) and stanzas mix;
// on outgoing ones only stanzas (bidi) and dialback verifications come.
func (s *link) readLoop() error {
	for {
		if s.st.Closed() {
			return nil
		}
		el, err := s.wr.ReadElement()
		if err != nil {
			return err
		}
		ns, name := el.Name.Space, el.Start.Name.Local
		if err := s.checkTLSUsed(ns, name); err != nil {
			return err
		}
		switch {
		case ns == router.NSServer && (name == "message" || name == "presence" || name == "iq"):
			if err := s.stanza(el); err != nil {
				return err
			}
		case ns == nsDialback && name == "result" && !s.outgoing:
			if err := s.receiveResult(el); err != nil {
				return err
			}
		case ns == nsDialback && name == "verify":
			s.answerVerify(el)
		case ns == nsDialback:
			// a late dialback answer on our own stream: nothing to do
		case ns == stream.NSTLS && name == "starttls" && !s.outgoing:
			if err := s.startTLS(); err != nil {
				return err
			}
			if err := s.acceptHeader(); err != nil {
				return err
			}
		case ns == stream.NSSASL && name == "auth" && !s.outgoing:
			ok, err := s.external(el)
			if err != nil {
				return err
			}
			if ok {
				if err := s.acceptHeader(); err != nil {
					return err
				}
				s.sendOn(s.local, s.peer) // after the restart: our new header is out
			}
		case ns == nsBidi && name == "bidi" && !s.outgoing && !s.f.cfg.DisableBidi:
			s.bidi = true
		case ns == stream.NSStream && name == "error":
			return s.peerError(el)
		default:
			return stream.NewError("unsupported-stanza-type", "")
		}
	}
}

// stanza checks a stanza's addresses against what the peer authenticated
// and routes it.
func (s *link) stanza(el wire.Element) error {
	f := s.f
	st, err := router.Parse(el, router.NSServer, nil)
	switch {
	case errors.Is(err, router.ErrUnsupportedStanza):
		return stream.NewError("unsupported-stanza-type", "")
	case errors.Is(err, router.ErrBadFrom), errors.Is(err, router.ErrBadTo):
		return stream.NewError("improper-addressing", "malformed 'to' or 'from'")
	}
	if !s.isAuthed() {
		return stream.NewError("not-authorized", "authenticate first")
	}
	if st.From.Equal(jid.JID{}) || st.To.Equal(jid.JID{}) {
		f.log.Warn("stanza without addresses from a peer", "peer", s.peer, "ip", s.ip)
		return stream.NewError("improper-addressing", "stanzas between servers need 'to' and 'from'")
	}
	from, to := st.From.Domainpart(), st.To.Domainpart()
	if !s.authedFrom(from) {
		f.log.Warn("rejected a stanza from a domain the peer did not authenticate", "peer", s.peer, "from", st.From.String(), "to", st.To.String(), "ip", s.ip)
		return stream.NewError("invalid-from", "'from' is not a domain authenticated on this stream")
	}
	if !f.hosted(to) {
		f.log.Warn("rejected a stanza for a domain not served here", "peer", s.peer, "to", st.To.String(), "ip", s.ip)
		return stream.NewError("host-unknown", "this server does not serve that domain")
	}
	if !s.authedPair(to, from) {
		// Authenticated, but to another of our domains (XEP-0220 §2.4).
		f.log.Warn("rejected a stanza for a domain pair the peer did not authenticate", "peer", s.peer, "from", st.From.String(), "to", st.To.String(), "ip", s.ip)
		return stream.NewError("invalid-from", "'from' is not authenticated on this stream for that 'to'")
	}
	s.active.Store(time.Now().UnixNano())
	f.m.stanzasIn.Inc()
	f.srv.Router.RouteInbound(s.ctx, st)
	return nil
}

// startTLS secures an incoming stream.
func (s *link) startTLS() error {
	if s.secure {
		return stream.NewError("policy-violation", "TLS is already in place")
	}
	if err := s.st.Write(wire.NewBuilder(nil).Element("proceed", stream.NSTLS, "").Bytes()); err != nil {
		return err
	}
	s.st.Lock()
	defer s.st.Unlock()
	tc, err := s.tcp.Handshake(s.f.serverTLS(), false, s.negDeadline)
	if err != nil {
		var se *stream.Error
		if errors.As(err, &se) {
			return err
		}
		return fmt.Errorf("TLS handshake: %w", err)
	}
	s.tcp.Raw().SetDeadline(time.Time{})
	s.certs = tc.ConnectionState().PeerCertificates
	s.secure = true
	return nil
}

// external runs SASL EXTERNAL (XEP-0178) on an incoming stream: the peer
// is who its certificate says, if that is the domain it claims.
func (s *link) external(el wire.Element) (bool, error) {
	f := s.f
	fail := func(cond string) (bool, error) {
		f.m.auth.WithLabelValues("in", "external", "failed").Inc()
		return false, s.st.Write(stream.SASLFailure(cond, ""))
	}
	if !s.secure {
		s.st.Write(stream.SASLFailure("encryption-required", ""))
		return false, stream.NewError("policy-violation", "STARTTLS is required before authentication")
	}
	if s.sasl {
		return false, stream.NewError("policy-violation", "already authenticated")
	}
	if mech, _ := wire.Attr(el.Start, "", "mechanism"); mech != "EXTERNAL" {
		return fail("invalid-mechanism")
	}
	data, err := stream.SASLData(el.Inner, true)
	if err != nil {
		return fail("incorrect-encoding")
	}
	authz := s.peer
	if len(data) > 0 {
		j, err := jid.Parse(string(data))
		if err != nil || (s.peer != "" && j.Domainpart() != s.peer) {
			return fail("invalid-authzid")
		}
		authz = j.Domainpart()
	}
	if authz == "" || !f.certValid(s.certs, authz) {
		return fail("not-authorized")
	}
	s.peer = authz
	if err := s.st.Write(stream.SASLElement("success", nil)); err != nil {
		return false, err
	}
	s.sasl = true
	f.m.auth.WithLabelValues("in", "external", "ok").Inc()
	s.authenticate(s.local, authz, "external")
	return true, nil
}

// receiveResult handles <db:result/> on an incoming stream (XEP-0220 §2.2):
// the peer claims a domain; the claim is checked with that domain's
// authoritative server (or its certificate), and the answer sent back.
func (s *link) receiveResult(el wire.Element) error {
	f := s.f
	d := parseDialback(el)
	to, key := d.to, d.key
	if !s.secure && !f.cfg.AllowPlaintext {
		return stream.NewError("policy-violation", "STARTTLS is required before dialback")
	}
	from, ok := d.requestDomain()
	if !ok {
		return stream.NewError("improper-addressing", "a dialback request needs 'from', 'to' and a key")
	}
	// Any domain served here, whatever the header said: several pairs
	// may share one stream (XEP-0220 §2.4, multiplexing).
	if !f.hosted(to) {
		b := wire.NewBuilder(nil)
		b.Start("db:result", "from", to, "to", from, "type", "error")
		b.Start("error", "type", "cancel").Element("item-not-found", router.NSStanzas, "")
		s.send(b.Bytes())
		return nil
	}
	if f.hosted(from) {
		return stream.NewError("invalid-from", "that is this server's own domain")
	}
	id := s.id
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		method := "dialback"
		ok := false
		if f.certValid(s.certs, from) {
			// XEP-0344: a certificate valid for the domain proves it already.
			ok, method = true, "dialback+cert"
		} else {
			ctx, cancel := context.WithTimeout(f.ctx, f.cfg.ConnectTimeout)
			var err error
			ok, err = f.verifyKey(ctx, to, from, id, key)
			cancel()
			if err != nil {
				f.log.Info("dialback verification failed", "peer", from, "err", err)
			}
		}
		typ := "invalid"
		if ok {
			typ = "valid"
			// Before the answer goes out: the peer's stanzas follow it at once.
			f.m.auth.WithLabelValues("in", "dialback", "ok").Inc()
			s.authenticate(to, from, method)
		} else {
			f.m.auth.WithLabelValues("in", "dialback", "failed").Inc()
			f.log.Warn("dialback key not confirmed", "peer", from, "ip", s.ip)
		}
		answer := wire.NewBuilder(nil).Start("db:result", "from", to, "to", from, "type", typ).Bytes()
		if s.send(answer) && ok {
			s.sendOn(to, from)
		}
	}()
	return nil
}

// answerVerify answers <db:verify/> as the authoritative server: is this
// the key we made for that stream?
func (s *link) answerVerify(el wire.Element) {
	f := s.f
	d := parseDialback(el)
	if d.typ != "" {
		return // an answer, for a verification we did not ask on this stream
	}
	// We are the authoritative server of every domain served here.
	typ := "invalid"
	if f.hosted(d.to) && d.from != "" && d.id != "" && f.checkDialbackKey(d.key, d.from, d.to, d.id) {
		typ = "valid"
	}
	from := d.to
	if !f.hosted(from) {
		from = f.domain
	}
	f.log.Debug("dialback verify answered", "receiving", d.from, "originating", d.to, "type", typ)
	s.send(verifyAnswer(from, d.from, d.id, typ))
}

// verifyAnswer is our answer to a <db:verify/> (XEP-0220 §2.4).
func verifyAnswer(from, to, id, typ string) []byte {
	return wire.NewBuilder(nil).Start("db:verify", "from", from, "to", to, "id", id, "type", typ).Bytes()
}

// verifyKey asks the authoritative server of originating whether key is
// the one it made for stream id to receiving, served here (XEP-0220
// §2.3), on a stream of its own.
func (f *Federation) verifyKey(ctx context.Context, receiving, originating, id, key string) (bool, error) {
	s, _, err := f.dial(ctx, receiving, originating)
	if err != nil {
		return false, err
	}
	defer func() {
		s.closeWith("", "")
		s.finish()
	}()
	dl, _ := ctx.Deadline()
	s.wr.SetDeadline(dl)
	defer s.interruptOn(ctx)()
	req := wire.NewBuilder(nil).Start("db:verify", "from", receiving, "to", originating, "id", id).Text(key).Bytes()
	if err := s.st.Write(req); err != nil {
		return false, err
	}
	for {
		el, err := s.wr.ReadElement()
		if err != nil {
			return false, err
		}
		ns, name := el.Name.Space, el.Start.Name.Local
		if ns == stream.NSStream && name == "error" {
			return false, s.peerError(el)
		}
		if ns != nsDialback || name != "verify" {
			continue
		}
		d := parseDialback(el)
		if d.id != id {
			continue
		}
		return d.typ == "valid", nil
	}
}
