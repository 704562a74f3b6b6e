package c2s

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"strings"
	"time"
	"unicode"

	"mellium.im/xmpp/jid"

	"dialtone/auth"
	"dialtone/xmppd/router"
	"dialtone/xmppd/stream"
	"dialtone/xmppd/wire"
)

// Namespaces of the modern login.
const (
	nsSASL2          = "urn:xmpp:sasl:2"    // XEP-0388 Extensible SASL Profile
	nsBind2          = "urn:xmpp:bind:0"    // XEP-0386 Bind 2
	nsChannelBinding = "urn:xmpp:sasl-cb:0" // XEP-0440 channel binding types
	nsFAST           = "urn:xmpp:fast:0"    // XEP-0484 Fast Authentication Streamlining Tokens
)

// maxTag bounds the part of a Bind2 resource that the client's tag makes.
const maxTag = 32

var sasl2 = profile{
	ns: nsSASL2,
	challenge: func(data []byte) []byte {
		return wire.NewBuilder(nil).Element("challenge", nsSASL2, base64.StdEncoding.EncodeToString(data)).Bytes()
	},
	failure: sasl2Failure,
}

// sasl2Failure is XEP-0388 §2.6.2's failure: the RFC 6120 condition in
// its namespace, and a text.
func sasl2Failure(cond, text string) []byte {
	b := wire.NewBuilder(nil)
	b.StartNS("failure", nsSASL2).Element(cond, stream.NSSASL, "")
	if text != "" {
		b.Element("text", "", text)
	}
	return b.End().Bytes()
}

// sasl2Feature writes XEP-0388's <authentication/> offer with the same
// mechanisms as SASL, Bind2 and its inline features, and what modules
// take inline.
func (c *conn) sasl2Feature(b *wire.Builder, mechs []string) {
	hooks := c.svc.cfg.Router.Hooks()
	b.StartNS("authentication", nsSASL2)
	for _, m := range mechs {
		b.Element("mechanism", "", m)
	}
	b.Start("inline")
	b.StartNS("bind", nsBind2).Start("inline")
	for _, a := range hooks.InlineAdverts(router.InlineBind) {
		b.Start("feature", "var", a.Space).End()
	}
	b.End().End()
	if c.svc.cfg.SASL.Fast != nil {
		b.StartNS("fast", nsFAST)
		for _, m := range auth.FastMechanisms(c.authConn()) {
			b.Element("mechanism", "", m)
		}
		b.End()
	}
	for _, a := range hooks.InlineAdverts(router.InlineAuth) {
		b.Element(a.Local, a.Space, "")
	}
	b.End().End()
}

// authenticateReq is XEP-0388's <authenticate/> as far as it is read;
// the children of other namespaces go to the inline handlers.
type authenticateReq struct {
	Mechanism       string  `xml:"mechanism,attr"`
	InitialResponse *string `xml:"urn:xmpp:sasl:2 initial-response"`
	UserAgent       *struct {
		ID       string `xml:"id,attr"`
		Software string `xml:"software"`
		Device   string `xml:"device"`
	} `xml:"urn:xmpp:sasl:2 user-agent"`
	Bind *bind2Req `xml:"urn:xmpp:bind:0 bind"`
	// RequestToken asks for a FAST token (XEP-0484 §3.2).
	RequestToken *struct {
		Mechanism string `xml:"mechanism,attr"`
	} `xml:"urn:xmpp:fast:0 request-token"`
	// Fast marks a login with a FAST token; invalidate voids it.
	Fast *struct {
		Invalidate bool `xml:"invalidate,attr"`
	} `xml:"urn:xmpp:fast:0 fast"`
	Inline []inlineXML `xml:",any"`
}

// bind2Req is XEP-0386's <bind/>.
type bind2Req struct {
	Tag    string      `xml:"tag"`
	Inline []inlineXML `xml:",any"`
}

// inlineXML is a child element kept as it came, for a module.
type inlineXML struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Inner   []byte     `xml:",innerxml"`
}

// element returns x as the module API passes elements.
func (x inlineXML) element() wire.Element {
	var attrs []xml.Attr
	for _, a := range x.Attrs {
		if a.Name.Space != "xmlns" && !(a.Name.Space == "" && a.Name.Local == "xmlns") {
			attrs = append(attrs, a)
		}
	}
	return wire.Element{Start: xml.StartElement{Name: xml.Name{Local: x.XMLName.Local}, Attr: attrs}, Name: x.XMLName, Inner: x.Inner}
}

// decodeElement decodes el (with the namespace declarations of the stream
// it carries) into v.
func decodeElement(el wire.Element, v any) error {
	b := wire.NewBuilder(nil)
	b.StartNS(el.Name.Local, el.Name.Space)
	for _, a := range el.Carry {
		b.Attr("xmlns:"+a.Name.Local, a.Value)
	}
	for _, a := range el.Start.Attr {
		if a.Name.Space == "" && a.Name.Local != "xmlns" {
			b.Attr(a.Name.Local, a.Value)
		}
	}
	b.Raw(el.Inner).End()
	dec := wire.NewDecoder(bytes.NewReader(b.Bytes()))
	return dec.Decode(v)
}

// mayAuthenticate refuses an <authenticate/> before TLS or after
// authentication, as for <auth/>.
func (c *conn) mayAuthenticate() error {
	if !c.secure && !c.websocket {
		c.st.Write(sasl2Failure("encryption-required", ""))
		return stream.NewError("policy-violation", "STARTTLS is required before authentication")
	}
	if c.authed {
		return stream.NewError("policy-violation", "already authenticated")
	}
	return nil
}

// authenticate2 runs a XEP-0388 authentication and what comes inline with
// it. ok false: it failed and the client may try again; a session: it
// is bound (Bind2) and negotiation is over.
func (c *conn) authenticate2(el wire.Element) (*session, bool, error) {
	var req authenticateReq
	if err := decodeElement(el, &req); err != nil {
		return nil, false, c.saslFailure(sasl2, errMalformed)
	}
	var resp []byte
	if req.InitialResponse != nil {
		var err error
		if resp, err = stream.SASLData([]byte(*req.InitialResponse), false); err != nil {
			return nil, false, c.saslFailure(sasl2, errEncoding)
		}
	}
	if req.UserAgent != nil {
		c.userAgent = req.UserAgent.ID
	}
	var ex exchange
	var fast *auth.FastExchange
	c.inSASL2 = true
	if auth.IsFast(req.Mechanism) {
		fx, err := c.svc.cfg.SASL.BeginFast(req.Mechanism, c.authConn(), c.userAgent)
		if err != nil {
			return nil, false, c.saslFailure(sasl2, err)
		}
		ex, fast = fx, fx
	}
	data, ok, err := c.runSASL(sasl2, req.Mechanism, ex, resp)
	c.inSASL2 = false
	if !ok || err != nil {
		return nil, ok, err
	}
	c.slot.Release()
	token, err := c.fastToken(&req, fast)
	if err != nil {
		return nil, false, err
	}
	return c.sasl2Success(&req, data, token)
}

// fastToken rotates the token of a FAST login (or voids it when the
// client asked) and issues one when a password login asked for it; it
// returns the <token/> for the success, if any. A store failure costs the
// client its new token, not its login.
func (c *conn) fastToken(req *authenticateReq, fast *auth.FastExchange) ([]byte, error) {
	s := c.svc
	if s.cfg.SASL.Fast == nil || c.userAgent == "" || (fast == nil && req.RequestToken == nil) {
		return nil, nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), c.wr.Deadline())
	defer cancel()
	ctx, cancel = s.cfg.Router.StoreContext(ctx)
	defer cancel()
	if fast != nil {
		used := fast.Used()
		before := used.Created
		if req.Fast != nil && req.Fast.Invalidate {
			before = time.Time{}
		}
		// The used token stays until its successor is used, so that a
		// success lost on the way does not leave the client without one.
		if err := s.cfg.SASL.Fast.DeleteFastTokens(ctx, c.number, c.userAgent, before); err != nil {
			s.cfg.Log.Error("dropping old FAST tokens", "number", c.number, "err", err)
		}
		if before.IsZero() {
			return nil, nil
		}
	}
	token, expires, err := s.cfg.SASL.IssueFast(ctx, c.number, c.userAgent, c.generation)
	if err != nil {
		s.cfg.Log.Error("issuing a FAST token", "number", c.number, "err", err)
		return nil, nil
	}
	return wire.NewBuilder(nil).StartNS("token", nsFAST, "expiry", expires.UTC().Format(time.RFC3339), "token", token).End().Bytes(), nil
}

// sasl2Success answers a successful authentication: the inline elements,
// Bind2 when asked, and <success/>. Without Bind2 the client gets the
// stream features (there is no restart) and binds as in RFC 6120.
func (c *conn) sasl2Success(req *authenticateReq, data, token []byte) (*session, bool, error) {
	hooks := c.svc.cfg.Router.Hooks()
	ctx := c.sess.rs.Context()
	var inline []byte
	bind := req.Bind != nil
	// An inline handler may hand the stream a kept session (XEP-0198
	// <resume/>): then nothing is bound, and the stream carries it.
	var resumed *router.Session
	info := c.info()
	info.Resume = func(s *router.Session) { resumed = s }
	for _, x := range req.Inline {
		fn := hooks.InlineHandler(router.InlineAuth, x.XMLName.Space)
		if fn == nil {
			continue // XEP-0388 §2.3: unknown inline elements are ignored
		}
		reply, err := fn(ctx, info, x.element())
		switch {
		case errors.Is(err, router.ErrNoBind):
			bind = false
		case err != nil:
			if resumed != nil {
				c.adopt(resumed) // its end is the module's: it was kept
			}
			return nil, false, err
		}
		inline = append(inline, reply...)
	}
	ident := jid.JID{}
	var bound []byte
	if resumed != nil {
		bind = false
		ident = resumed.JID()
	} else if bind {
		full, replies, err := c.bind2(ctx, req)
		if err != nil {
			return nil, false, err
		}
		ident = full
		bound = wire.NewBuilder(nil).StartNS("bound", nsBind2).Raw(replies).End().Bytes()
	} else if j, err := jid.New(string(c.number), c.svc.cfg.Domain.String(), ""); err == nil {
		ident = j
	}
	b := wire.NewBuilder(nil)
	b.StartNS("success", nsSASL2)
	if data != nil {
		b.Element("additional-data", "", base64.StdEncoding.EncodeToString(data))
	}
	b.Element("authorization-identifier", "", ident.String())
	b.Raw(inline).Raw(bound).Raw(token)
	b.End()
	if resumed != nil {
		// The kept session, bound already; what it missed follows the
		// success (the module queued it).
		err := c.st.Write(b.Bytes())
		sess := c.adopt(resumed)
		if err != nil {
			return nil, false, err
		}
		return sess, true, nil
	}
	if !bind {
		// Not bound: the negotiation goes on, with the features of an
		// authenticated stream and no restart.
		return nil, true, c.st.Write(b.Bytes(), c.features())
	}
	if err := c.st.Write(b.Bytes()); err != nil {
		c.svc.cfg.Router.Unregister(c.sess.rs)
		return nil, false, err
	}
	return c.sess, true, nil
}

// bind2 binds the resource of a Bind2 request (XEP-0386 §4: the server
// picks it, from the client's tag and a part that is stable per
// user-agent id, so that a reconnecting client takes its old resource's
// place) and runs the inline handlers of the bind request once bound.
func (c *conn) bind2(ctx context.Context, req *authenticateReq) (jid.JID, []byte, error) {
	full, err := jid.New(string(c.number), c.svc.cfg.Domain.String(), resourceFrom(req.Bind.Tag, c.userAgent))
	if err != nil {
		// A tag that PRECIS refuses: the resource without it.
		full, err = jid.New(string(c.number), c.svc.cfg.Domain.String(), resourceFrom("", c.userAgent))
	}
	if err != nil {
		return jid.JID{}, nil, stream.NewError("internal-server-error", "")
	}
	err = c.svc.cfg.Router.Bind(c.sess.rs, full, c.confirmGeneration)
	switch {
	case errors.Is(err, router.ErrTooManyResources):
		return jid.JID{}, nil, stream.NewError("resource-constraint", "too many resources bound for this account")
	case err != nil:
		return jid.JID{}, nil, err
	}
	hooks := c.svc.cfg.Router.Hooks()
	var replies []byte
	for _, x := range req.Bind.Inline {
		fn := hooks.InlineHandler(router.InlineBind, x.XMLName.Space)
		if fn == nil {
			continue
		}
		reply, err := fn(ctx, c.info(), x.element())
		if err != nil {
			c.svc.cfg.Router.Unregister(c.sess.rs)
			return jid.JID{}, nil, err
		}
		replies = append(replies, reply...)
	}
	return full, replies, nil
}

// resourceFrom makes a Bind2 resource: the tag (printable, at most maxTag
// runes; "dt" when empty), "~", and a part derived from the user-agent id
// (a hash: the id itself is not shown to contacts), or a random one
// without an id.
func resourceFrom(tag, userAgent string) string {
	var t strings.Builder
	n := 0
	for _, r := range strings.TrimSpace(tag) {
		if n == maxTag {
			break
		}
		if unicode.IsPrint(r) && r != '/' && r != '@' {
			t.WriteRune(r)
			n++
		}
	}
	if t.Len() == 0 {
		t.WriteString("dt")
	}
	suffix := stream.NewID()[:12]
	if userAgent != "" {
		sum := sha256.Sum256([]byte("dialtone bind2\x00" + userAgent))
		suffix = base64.RawURLEncoding.EncodeToString(sum[:9])
	}
	return t.String() + "~" + suffix
}
