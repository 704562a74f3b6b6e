package xmppd

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
	"encoding/base64"
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
)

// s2sStream is one TCP connection with another server, in either
// direction. Its reader runs on the goroutine that made it; one writer
// goroutine drains a bounded queue.
type s2sStream struct {
	f        *Federation
	outgoing bool
	ip       string
	raw      net.Conn // TCP
	nc       net.Conn // raw or TLS over it; swapped under wmu
	wr       *wire.Reader
	id       string // stream id: ours on incoming streams, the peer's on outgoing ones
	peer     string // outgoing: the domain dialed; incoming: the header's 'from' (may be "")
	secure   bool
	certOK   bool // the peer's certificate is valid for peer (outgoing) / for its header 'from' (incoming)
	certs    []*x509.Certificate
	bidi     bool         // XEP-0288 negotiated
	sasl     bool         // authenticated with SASL EXTERNAL (no more SASL)
	slot     *pendingSlot // incoming, until authenticated: its place among the unauthenticated connections
	up       bool         // counted in the links gauge

	negDeadline time.Time // incoming: the end of the time to authenticate

	mu     sync.Mutex
	authed map[string]bool // domains the peer may send from on this stream

	wmu      sync.Mutex
	out      chan []byte
	queued   atomic.Int64 // bytes sent to out and not yet written
	kill     chan struct{}
	killOnce sync.Once
	cond     string
	text     string
	done     chan struct{}
	active   atomic.Int64 // unix nanoseconds of the last stanza either way
}

func (f *Federation) newStream(nc net.Conn, outgoing bool) *s2sStream {
	s := &s2sStream{
		f:        f,
		outgoing: outgoing,
		raw:      nc,
		nc:       nc,
		wr:       wire.NewReader(nc, f.srv.cfg.MaxStanzaSize),
		authed:   map[string]bool{},
		out:      make(chan []byte, f.srv.cfg.QueueSize),
		kill:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if r := newByteRate(f.cfg.Rate, f.srv.m.RateWaited); r != nil {
		s.wr.SetLimiter(r)
	}
	s.active.Store(time.Now().UnixNano())
	go s.writeLoop()
	return s
}

func (s *s2sStream) direction() string {
	if s.outgoing {
		return "out"
	}
	return "in"
}

// write sends bytes now (negotiation, and the writer's batches).
func (s *s2sStream) write(parts ...[]byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.nc.SetWriteDeadline(time.Now().Add(s.f.srv.cfg.WriteTimeout))
	for _, p := range parts {
		if _, err := s.nc.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// send queues b for the writer and never blocks: a peer that cannot keep
// up (more than QueueSize stanzas or QueueBytes bytes waiting) loses the
// link.
func (s *s2sStream) send(b []byte) bool {
	select {
	case <-s.kill:
		return false
	default:
	}
	if s.queued.Load() < int64(s.f.cfg.QueueBytes) {
		notePeak(&s.f.srv.m.queuePeak, s.queued.Add(int64(len(b))))
		select {
		case s.out <- b:
			s.active.Store(time.Now().UnixNano())
			return true
		default:
			s.queued.Add(-int64(len(b)))
		}
	}
	if s.stop("policy-violation", "too much waiting for a peer that does not read") {
		s.f.log.Warn("closing a link that does not read", "peer", s.peer, "direction", s.direction())
	}
	return false
}

// closeWith ends the stream with a stream error (cond "" for a plain
// close) after what is queued, and stops routing to it. Not with f.mu
// held: use stop.
func (s *s2sStream) closeWith(cond, text string) {
	if !s.stop(cond, text) {
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

// stop is closeWith for callers that may hold f.mu (send, called by
// Federation.Send under it): stanzas routed to the stream meanwhile fail
// to send, and their senders stop using it. True the first time.
func (s *s2sStream) stop(cond, text string) bool {
	first := false
	s.killOnce.Do(func() {
		first = true
		s.cond, s.text = cond, text
		close(s.kill)
	})
	return first
}

func (s *s2sStream) writeLoop() {
	defer close(s.done)
	idle := s.f.cfg.IdleTimeout
	tick := time.NewTicker(max(idle/4, 50*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case b := <-s.out:
			buf := append([]byte(nil), b...)
		more:
			for len(buf) < 64<<10 {
				select {
				case b := <-s.out:
					buf = append(buf, b...)
				default:
					break more
				}
			}
			if err := s.write(buf); err != nil {
				s.closeWith("", "")
				s.raw.Close()
				return
			}
			s.queued.Add(-int64(len(buf)))
		case <-tick.C:
			if s.isUp() && time.Since(time.Unix(0, s.active.Load())) > idle {
				s.f.log.Debug("closing an idle link", "peer", s.peer, "direction", s.direction())
				s.closeWith("", "")
			}
		case <-s.kill:
			var buf []byte
		drain:
			for {
				select {
				case b := <-s.out:
					buf = append(buf, b...)
				default:
					break drain
				}
			}
			if s.cond != "" {
				s.f.srv.m.StreamErrors.WithLabelValues(s.cond).Inc()
				buf = appendStreamError(buf, s.cond, s.text)
			} else {
				buf = append(buf, "</stream:stream>"...)
			}
			s.wmu.Lock()
			s.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			s.nc.Write(buf)
			if tc, ok := s.nc.(*tls.Conn); ok {
				tc.CloseWrite()
			}
			s.wmu.Unlock()
			// Let the reader see the peer's </stream:stream>, then stop it
			// (the close, in case the reader set a deadline of its own).
			s.raw.SetReadDeadline(time.Now().Add(2 * time.Second))
			time.AfterFunc(3*time.Second, func() { s.raw.Close() })
			return
		}
	}
}

func (s *s2sStream) isAuthed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.authed) > 0
}

func (s *s2sStream) authedFor(domain string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authed[domain]
}

// authenticate records that the peer proved it is domain on this stream.
func (s *s2sStream) authenticate(domain, method string) {
	s.mu.Lock()
	first := len(s.authed) == 0
	s.authed[domain] = true
	s.mu.Unlock()
	s.f.log.Info("s2s link authenticated", "peer", domain, "direction", s.direction(), "method", method, "tls", s.secure, "bidi", s.bidi, "ip", s.ip)
	if first {
		s.established(method)
	}
}

// sendOn makes a bidirectional stream the way to domain, once the peer
// has been told it is authenticated.
func (s *s2sStream) sendOn(domain string) {
	if s.bidi {
		s.f.setSender(domain, s)
	}
}

// established counts the stream as an authenticated link.
func (s *s2sStream) established(method string) {
	s.mu.Lock()
	already := s.up
	s.up = true
	s.mu.Unlock()
	if !already {
		s.f.m.links.WithLabelValues(s.direction()).Inc()
	}
	s.slot.release()
}

// fail ends a stream whose negotiation or reading failed, with the stream
// error the failure calls for, and waits for it to close.
func (s *s2sStream) fail(err error) {
	cond, text := conditionOf(err)
	if cond == "" && err != nil && !errors.Is(err, errPeerStreamError) && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		s.f.log.Debug("link failed", "peer", s.peer, "direction", s.direction(), "err", err)
	}
	if cond != "" {
		s.f.log.Debug("closing link with a stream error", "peer", s.peer, "direction", s.direction(), "condition", cond, "text", text)
	}
	s.closeWith(cond, text)
	s.finish()
}

// finish waits for the writer, closes the connection and forgets the stream.
func (s *s2sStream) finish() {
	select {
	case <-s.done:
	case <-time.After(s.f.srv.cfg.WriteTimeout + 5*time.Second):
	}
	s.raw.Close()
	s.mu.Lock()
	up := s.up
	s.up = false
	s.mu.Unlock()
	if up {
		s.f.m.links.WithLabelValues(s.direction()).Dec()
	}
	s.slot.release()
	s.f.untrack(s)
}

var errPeerStreamError = errors.New("the peer sent a stream error")

// header returns our stream header. On incoming streams it carries a new id.
func (s *s2sStream) header() []byte {
	b := make([]byte, 0, 256)
	b = append(b, `<?xml version='1.0'?><stream:stream xmlns="jabber:server" xmlns:stream="`+nsStream+`" xmlns:db="`+nsDialback+`"`...)
	if !s.outgoing {
		s.id = randomID()
		b = appendAttr(b, "id", s.id)
	}
	b = appendAttr(b, "from", s.f.domain)
	if s.peer != "" {
		b = appendAttr(b, "to", s.peer)
	}
	return append(b, ` version="1.0" xml:lang="en">`...)
}

// readHeader reads the peer's stream header with a new decoder and checks
// it; incoming streams learn the peer's claimed domain from it.
func (s *s2sStream) readHeader() error {
	t, err := s.wr.ReadHeader()
	if err != nil {
		return err
	}
	return s.checkHeader(t)
}

func (s *s2sStream) checkHeader(t xml.StartElement) error {
	version, _ := wire.Attr(t, "", "version")
	switch {
	case t.Name.Local != "stream" || s.wr.HeaderNS() != nsStream:
		return serr("invalid-namespace", "expected a stream in "+nsStream)
	case s.wr.DefaultNS() != NSServer:
		return serr("invalid-namespace", "expected content namespace jabber:server")
	case !supportedVersion(version):
		return serr("unsupported-version", "XMPP 1.0 streams only")
	}
	if s.outgoing {
		id, _ := wire.Attr(t, "", "id")
		if id == "" {
			return serr("invalid-id", "no stream id")
		}
		s.id = id
		return nil
	}
	if to, ok := wire.Attr(t, "", "to"); ok {
		if j, err := jid.Parse(to); err != nil || !j.Equal(s.f.srv.domain) {
			return serr("host-unknown", "this server does not serve that domain")
		}
	}
	if from, ok := wire.Attr(t, "", "from"); ok {
		j, err := jid.Parse(from)
		if err != nil || j.Localpart() != "" || j.Resourcepart() != "" {
			return serr("invalid-from", "not a domain")
		}
		if s.peer != "" && s.peer != j.Domainpart() {
			return serr("invalid-from", "the domain changed on a restart")
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
func (s *s2sStream) readFeatures() (*s2sFeatures, error) {
	if err := s.readHeader(); err != nil {
		return nil, err
	}
	el, err := s.wr.ReadElement()
	if err != nil {
		return nil, err
	}
	if elementNS(el) != nsStream || el.Start.Name.Local != "features" {
		if elementNS(el) == nsStream && el.Start.Name.Local == "error" {
			return nil, s.peerError(el)
		}
		return nil, serr("invalid-xml", "expected stream features")
	}
	return parseFeatures(wrapChildren(el))
}

func parseFeatures(b []byte) (*s2sFeatures, error) {
	var ft s2sFeatures
	if err := xml.Unmarshal(b, &ft); err != nil {
		return nil, serr("invalid-xml", "unreadable stream features")
	}
	return &ft, nil
}

// wrapChildren puts the raw children of a top-level element into an
// element that declares the namespaces in force for them (the stream's
// content namespace, the element's own declarations, the header's it
// uses), so that they decode on their own.
func wrapChildren(el wire.Element) []byte {
	b := []byte("<x")
	if _, ok := wire.Attr(el.Start, "", "xmlns"); !ok {
		b = appendAttr(b, "xmlns", NSServer)
	}
	for _, attrs := range [][]xml.Attr{el.Carry, el.Start.Attr} {
		for _, a := range attrs {
			switch {
			case a.Name.Space == "" && a.Name.Local == "xmlns":
				b = appendAttr(b, "xmlns", a.Value)
			case a.Name.Space == "xmlns":
				b = appendAttr(b, "xmlns:"+a.Name.Local, a.Value)
			}
		}
	}
	b = append(b, '>')
	b = append(b, el.Inner...)
	return append(b, "</x>"...)
}

// peerError logs a stream error the peer sent and returns errPeerStreamError.
func (s *s2sStream) peerError(el wire.Element) error {
	var e struct {
		Children []struct{ XMLName xml.Name } `xml:",any"`
		Text     string                       `xml:"urn:ietf:params:xml:ns:xmpp-streams text"`
	}
	xml.Unmarshal(wrapChildren(el), &e)
	cond := ""
	for _, c := range e.Children {
		if c.XMLName.Space == nsStreams && c.XMLName.Local != "text" {
			cond = c.XMLName.Local
		}
	}
	s.f.log.Info("the peer closed the link with a stream error", "peer", s.peer, "direction", s.direction(), "condition", cond, "text", e.Text)
	return errPeerStreamError
}

// negotiateOut runs the initiating side up to the features after TLS.
func (s *s2sStream) negotiateOut(ctx context.Context, direct bool) (*s2sFeatures, error) {
	dl, _ := ctx.Deadline()
	s.wr.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { s.raw.SetDeadline(time.Now()) })
	defer stop()
	if direct {
		if err := s.clientHandshake(true); err != nil {
			return nil, err
		}
	}
	for {
		if err := s.write(s.header()); err != nil {
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
			return nil, serr("policy-violation", "STARTTLS is required")
		}
		if err := s.write([]byte(`<starttls xmlns="` + nsTLS + `"/>`)); err != nil {
			return nil, err
		}
		el, err := s.wr.ReadElement()
		if err != nil {
			return nil, err
		}
		if elementNS(el) != nsTLS || el.Start.Name.Local != "proceed" {
			return nil, fmt.Errorf("STARTTLS refused (%s)", el.Start.Name.Local)
		}
		if err := s.clientHandshake(false); err != nil {
			return nil, err
		}
	}
}

// clientHandshake secures an outgoing stream and checks the peer's
// certificate: valid for the domain, or the domain is listed as insecure.
func (s *s2sStream) clientHandshake(direct bool) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tc := tls.Client(s.raw, s.f.clientTLS(s.peer, direct))
	s.raw.SetDeadline(s.wr.Deadline())
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	s.certs = tc.ConnectionState().PeerCertificates
	s.certOK = s.f.certValid(s.certs, s.peer)
	if !s.certOK && !s.f.insecure[s.peer] {
		tc.Close()
		return fmt.Errorf("the certificate of %s is not valid for it (list it in XMPPD_S2S_INSECURE_DOMAINS to accept it)", s.peer)
	}
	s.nc = tc
	s.wr.Reset(tc)
	s.secure = true
	return nil
}

// authenticateOut proves our domain to the peer: SASL EXTERNAL when it is
// offered (the peer found our certificate valid), dialback otherwise.
func (s *s2sStream) authenticateOut(ctx context.Context, ft *s2sFeatures) (string, error) {
	dl, _ := ctx.Deadline()
	s.wr.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { s.raw.SetDeadline(time.Now()) })
	defer stop()
	f := s.f
	if ft.Bidi != nil && s.secure && !f.cfg.DisableBidi {
		if err := s.write([]byte(`<bidi xmlns="` + nsBidi + `"/>`)); err != nil {
			return "", err
		}
		s.bidi = true
	}
	if s.secure && ft.offers("EXTERNAL") {
		auth := `<auth xmlns="` + nsSASL + `" mechanism="EXTERNAL">` + base64.StdEncoding.EncodeToString([]byte(f.domain)) + `</auth>`
		if err := s.write([]byte(auth)); err != nil {
			return "", err
		}
		el, err := s.wr.ReadElement()
		if err != nil {
			return "", err
		}
		switch {
		case elementNS(el) == nsSASL && el.Start.Name.Local == "success":
			if err := s.write(s.header()); err != nil {
				return "", err
			}
			if _, err := s.readFeatures(); err != nil {
				return "", err
			}
			s.finishOut()
			return "external", nil
		case elementNS(el) == nsSASL && el.Start.Name.Local == "failure":
			f.m.auth.WithLabelValues("out", "external", "failed").Inc()
			f.log.Info("SASL EXTERNAL refused; trying dialback", "peer", s.peer, "failure", string(el.Inner))
		case elementNS(el) == nsStream && el.Start.Name.Local == "error":
			return "", s.peerError(el)
		default:
			return "", serr("invalid-xml", "expected a SASL answer")
		}
	}
	if ft.Dialback == nil && !s.secure {
		return "", errors.New("the peer offers no way to authenticate")
	}
	key := f.dialbackKey(s.peer, f.domain, s.id)
	if err := s.write([]byte(`<db:result from="` + string(AppendEscaped(nil, f.domain)) + `" to="` + string(AppendEscaped(nil, s.peer)) + `">` + key + `</db:result>`)); err != nil {
		return "", err
	}
	for {
		el, err := s.wr.ReadElement()
		if err != nil {
			return "", err
		}
		ns, name := elementNS(el), el.Start.Name.Local
		switch {
		case ns == nsDialback && name == "result":
			from, _ := wire.Attr(el.Start, "", "from")
			typ, _ := wire.Attr(el.Start, "", "type")
			if from != s.peer {
				continue
			}
			if typ == "valid" {
				s.finishOut()
				return "dialback", nil
			}
			f.m.auth.WithLabelValues("out", "dialback", "failed").Inc()
			return "", fmt.Errorf("dialback: %s answered %q %s", s.peer, typ, el.Inner)
		case ns == nsDialback && name == "verify":
			s.answerVerify(el)
		case ns == nsStream && name == "error":
			return "", s.peerError(el)
		default:
			return "", serr("not-authorized", "expected a dialback result")
		}
	}
}

// finishOut marks an outgoing stream authenticated: stanzas from the peer
// are accepted on it only with XEP-0288.
func (s *s2sStream) finishOut() {
	s.wr.SetDeadline(time.Time{})
	if s.bidi {
		s.mu.Lock()
		s.authed[s.peer] = true
		s.mu.Unlock()
	}
	s.f.log.Info("s2s link up", "peer", s.peer, "direction", "out", "tls", s.secure, "bidi", s.bidi, "cert_valid", s.certOK, "ip", s.ip)
}

// serveOutgoing reads an established outgoing stream until it ends.
func (s *s2sStream) serveOutgoing() {
	err := s.readLoop()
	s.fail(err)
}

// runIncoming negotiates and serves a stream a peer opened.
// Until the peer authenticates a domain, XMPPD_AUTH_TIMEOUT bounds the
// stream; then the writer's idle check does.
func (s *s2sStream) runIncoming() {
	s.negDeadline = time.Now().Add(s.f.srv.cfg.AuthTimeout)
	timer := time.AfterFunc(s.f.srv.cfg.AuthTimeout, func() {
		if !s.isAuthed() {
			s.closeWith("connection-timeout", "no authentication in time")
		}
	})
	defer timer.Stop()
	err := s.acceptHeader()
	if err == nil {
		err = s.readLoop()
	}
	if err != nil && !s.outgoing {
		var se *streamError
		if errors.As(err, &se) && (se.cond == "invalid-from" || se.cond == "improper-addressing" || se.cond == "not-authorized" || se.cond == "host-unknown") {
			s.f.m.rejected.WithLabelValues(se.cond).Inc()
		}
	}
	s.fail(err)
}

// acceptHeader reads the initiating server's header and answers with ours
// and the features of the stream's state.
func (s *s2sStream) acceptHeader() error {
	err := s.readHeader()
	if err != nil {
		if cond, _ := conditionOf(err); cond != "" {
			s.write(s.header()) // the stream error goes in a stream
		}
		return err
	}
	return s.write(s.header(), s.features())
}

func (s *s2sStream) features() []byte {
	b := []byte("<stream:features>")
	f := s.f
	switch {
	case !s.secure:
		b = append(b, `<starttls xmlns="`+nsTLS+`">`...)
		if !f.cfg.AllowPlaintext {
			b = append(b, "<required/>"...)
		}
		b = append(b, "</starttls>"...)
		if f.cfg.AllowPlaintext {
			b = append(b, `<dialback xmlns="`+nsDialbackFeature+`"><errors/></dialback>`...)
		}
	case !s.sasl:
		if s.peer != "" && f.certValid(s.certs, s.peer) {
			b = append(b, `<mechanisms xmlns="`+nsSASL+`"><mechanism>EXTERNAL</mechanism></mechanisms>`...)
		}
		b = append(b, `<dialback xmlns="`+nsDialbackFeature+`"><errors/></dialback>`...)
		if !f.cfg.DisableBidi {
			b = append(b, `<bidi xmlns="`+nsBidiFeature+`"/>`...)
		}
	}
	return append(b, "</stream:features>"...)
}

// readLoop reads top-level elements until the stream ends: on incoming
// streams negotiation (STARTTLS, SASL EXTERNAL, dialback) and stanzas mix;
// on outgoing ones only stanzas (bidi) and dialback verifications come.
func (s *s2sStream) readLoop() error {
	for {
		select {
		case <-s.kill:
			return nil
		default:
		}
		el, err := s.wr.ReadElement()
		if err != nil {
			return err
		}
		ns, name := elementNS(el), el.Start.Name.Local
		if err := s.checkTLSUsed(ns, name); err != nil {
			return err
		}
		switch {
		case ns == NSServer && (name == "message" || name == "presence" || name == "iq"):
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
		case ns == nsTLS && name == "starttls" && !s.outgoing:
			if err := s.startTLS(); err != nil {
				return err
			}
			if err := s.acceptHeader(); err != nil {
				return err
			}
		case ns == nsSASL && name == "auth" && !s.outgoing:
			ok, err := s.external(el)
			if err != nil {
				return err
			}
			if ok {
				if err := s.acceptHeader(); err != nil {
					return err
				}
				s.sendOn(s.peer) // after the restart: our new header is out
			}
		case ns == nsBidi && name == "bidi" && !s.outgoing && !s.f.cfg.DisableBidi:
			s.bidi = true
		case ns == nsStream && name == "error":
			return s.peerError(el)
		default:
			return serr("unsupported-stanza-type", "")
		}
	}
}

// stanza checks a stanza's addresses against what the peer authenticated
// and routes it.
func (s *s2sStream) stanza(el wire.Element) error {
	f := s.f
	st, err := router.Parse(el, NSServer, nil)
	switch {
	case errors.Is(err, router.ErrUnsupportedStanza):
		return serr("unsupported-stanza-type", "")
	case errors.Is(err, router.ErrBadFrom), errors.Is(err, router.ErrBadTo):
		return serr("improper-addressing", "malformed 'to' or 'from'")
	}
	if !s.isAuthed() {
		return serr("not-authorized", "authenticate first")
	}
	if st.From.Equal(jid.JID{}) || st.To.Equal(jid.JID{}) {
		f.log.Warn("stanza without addresses from a peer", "peer", s.peer, "ip", s.ip)
		return serr("improper-addressing", "stanzas between servers need 'to' and 'from'")
	}
	if !s.authedFor(st.From.Domainpart()) {
		f.log.Warn("rejected a stanza from a domain the peer did not authenticate", "peer", s.peer, "from", st.From.String(), "to", st.To.String(), "ip", s.ip)
		return serr("invalid-from", "'from' is not a domain authenticated on this stream")
	}
	if st.To.Domainpart() != f.domain {
		f.log.Warn("rejected a stanza for a domain not served here", "peer", s.peer, "to", st.To.String(), "ip", s.ip)
		return serr("host-unknown", "this server does not serve that domain")
	}
	s.active.Store(time.Now().UnixNano())
	f.m.stanzasIn.Inc()
	f.srv.router.RouteInbound(context.Background(), st)
	return nil
}

// startTLS secures an incoming stream.
func (s *s2sStream) startTLS() error {
	if s.secure {
		return serr("policy-violation", "TLS is already in place")
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.nc.SetWriteDeadline(time.Now().Add(s.f.srv.cfg.WriteTimeout))
	if _, err := s.nc.Write([]byte(`<proceed xmlns="` + nsTLS + `"/>`)); err != nil {
		return err
	}
	if s.wr.Buffered() > 0 {
		return serr("policy-violation", "data after starttls")
	}
	tc := tls.Server(s.raw, s.f.serverTLS())
	s.raw.SetDeadline(s.negDeadline)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	s.raw.SetDeadline(time.Time{})
	s.certs = tc.ConnectionState().PeerCertificates
	s.nc = tc
	s.wr.Reset(tc)
	s.secure = true
	return nil
}

// external runs SASL EXTERNAL (XEP-0178) on an incoming stream: the peer
// is who its certificate says, if that is the domain it claims.
func (s *s2sStream) external(el wire.Element) (bool, error) {
	f := s.f
	fail := func(cond string) (bool, error) {
		f.m.auth.WithLabelValues("in", "external", "failed").Inc()
		return false, s.write([]byte(`<failure xmlns="` + nsSASL + `"><` + cond + `/></failure>`))
	}
	if !s.secure {
		s.write([]byte(`<failure xmlns="` + nsSASL + `"><encryption-required/></failure>`))
		return false, serr("policy-violation", "STARTTLS is required before authentication")
	}
	if s.sasl {
		return false, serr("policy-violation", "already authenticated")
	}
	if mech, _ := wire.Attr(el.Start, "", "mechanism"); mech != "EXTERNAL" {
		return fail("invalid-mechanism")
	}
	data, err := saslData(el.Inner, true)
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
	if err := s.write([]byte(`<success xmlns="` + nsSASL + `"/>`)); err != nil {
		return false, err
	}
	s.sasl = true
	f.m.auth.WithLabelValues("in", "external", "ok").Inc()
	s.authenticate(authz, "external")
	return true, nil
}

// receiveResult handles <db:result/> on an incoming stream (XEP-0220 §2.2):
// the peer claims a domain; the claim is checked with that domain's
// authoritative server (or its certificate), and the answer sent back.
func (s *s2sStream) receiveResult(el wire.Element) error {
	f := s.f
	from, _ := wire.Attr(el.Start, "", "from")
	to, _ := wire.Attr(el.Start, "", "to")
	key := string(bytes.TrimSpace(el.Inner))
	if !s.secure && !f.cfg.AllowPlaintext {
		return serr("policy-violation", "STARTTLS is required before dialback")
	}
	fj, err := jid.Parse(from)
	if err != nil || fj.Localpart() != "" || fj.Resourcepart() != "" || key == "" || strings.Contains(key, "<") {
		return serr("improper-addressing", "a dialback request needs 'from', 'to' and a key")
	}
	from = fj.Domainpart()
	if to != f.domain {
		s.send([]byte(`<db:result from="` + string(AppendEscaped(nil, to)) + `" to="` + string(AppendEscaped(nil, from)) + `" type="error"><error type="cancel"><item-not-found xmlns="` + nsStanzas + `"/></error></db:result>`))
		return nil
	}
	if from == f.domain {
		return serr("invalid-from", "that is this server's own domain")
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
			ok, err = f.verifyKey(ctx, from, id, key)
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
			s.authenticate(from, method)
		} else {
			f.m.auth.WithLabelValues("in", "dialback", "failed").Inc()
			f.log.Warn("dialback key not confirmed", "peer", from, "ip", s.ip)
		}
		if s.send([]byte(`<db:result from="`+string(AppendEscaped(nil, f.domain))+`" to="`+string(AppendEscaped(nil, from))+`" type="`+typ+`"/>`)) && ok {
			s.sendOn(from)
		}
	}()
	return nil
}

// answerVerify answers <db:verify/> as the authoritative server: is this
// the key we made for that stream?
func (s *s2sStream) answerVerify(el wire.Element) {
	f := s.f
	from, _ := wire.Attr(el.Start, "", "from")
	to, _ := wire.Attr(el.Start, "", "to")
	id, _ := wire.Attr(el.Start, "", "id")
	if typ, _ := wire.Attr(el.Start, "", "type"); typ != "" {
		return // an answer, for a verification we did not ask on this stream
	}
	key := string(bytes.TrimSpace(el.Inner))
	typ := "invalid"
	if to == f.domain && from != "" && id != "" && f.checkDialbackKey(key, from, f.domain, id) {
		typ = "valid"
	}
	f.log.Debug("dialback verify answered", "receiving", from, "type", typ)
	s.send([]byte(`<db:verify from="` + string(AppendEscaped(nil, f.domain)) + `" to="` + string(AppendEscaped(nil, from)) + `" id="` + string(AppendEscaped(nil, id)) + `" type="` + typ + `"/>`))
}

// verifyKey asks the authoritative server of originating whether key is
// the one it made for stream id to us (XEP-0220 §2.3), on a stream of its own.
func (f *Federation) verifyKey(ctx context.Context, originating, id, key string) (bool, error) {
	s, _, err := f.dial(ctx, originating)
	if err != nil {
		return false, err
	}
	defer func() {
		s.closeWith("", "")
		s.finish()
	}()
	dl, _ := ctx.Deadline()
	s.wr.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { s.raw.SetDeadline(time.Now()) })
	defer stop()
	req := `<db:verify from="` + string(AppendEscaped(nil, f.domain)) + `" to="` + string(AppendEscaped(nil, originating)) + `" id="` + string(AppendEscaped(nil, id)) + `">` + string(AppendEscaped(nil, key)) + `</db:verify>`
	if err := s.write([]byte(req)); err != nil {
		return false, err
	}
	for {
		el, err := s.wr.ReadElement()
		if err != nil {
			return false, err
		}
		ns, name := elementNS(el), el.Start.Name.Local
		if ns == nsStream && name == "error" {
			return false, s.peerError(el)
		}
		if ns != nsDialback || name != "verify" {
			continue
		}
		if gotID, _ := wire.Attr(el.Start, "", "id"); gotID != id {
			continue
		}
		typ, _ := wire.Attr(el.Start, "", "type")
		return typ == "valid", nil
	}
}
