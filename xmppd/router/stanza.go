package router

import (
	"bytes"
	"encoding/xml"
	"errors"
	"strconv"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/xmppd/wire"
)

// Kind is the kind of a stanza: message, presence or iq.
type Kind uint8

// Stanza kinds.
const (
	KindMessage Kind = iota + 1
	KindPresence
	KindIQ
)

// String returns the element name of the kind.
func (k Kind) String() string {
	switch k {
	case KindMessage:
		return "message"
	case KindPresence:
		return "presence"
	case KindIQ:
		return "iq"
	}
	return "unknown"
}

// NSClient and NSServer are the content namespaces of c2s and s2s streams.
const (
	NSClient = "jabber:client"
	NSServer = "jabber:server"
	// NSStanzas is the namespace of stanza error conditions.
	NSStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"
)

// Stanza is one top-level message, presence or iq as the server routes it:
// the addressing attributes parsed, the children kept as the raw bytes that
// were received (already checked to be well-formed), so that routing never
// decodes and re-encodes a payload. Stanzas are shared between goroutines
// once routed: treat them as immutable and copy (Clone) before changing.
type Stanza struct {
	Kind Kind
	// To and From: change them only on a new Stanza or a Clone (a routed
	// stanza caches their string forms).
	To   jid.JID // zero when absent
	From jid.JID // stamped by the server for everything it accepts
	ID   string
	Type string
	Lang string
	// Attrs are the other attributes of the start element (namespace
	// declarations included), kept so they are forwarded unchanged.
	Attrs []xml.Attr
	// Payload is the name of the first child element (for iq dispatch);
	// zero when there is none.
	Payload xml.Name
	// Inner is the raw XML of the children.
	Inner []byte

	// ToAbsent is set when the stanza had no 'to' and the server filled in
	// To for dispatch: replies then carry no 'from' (RFC 6120 §10.3.3).
	ToAbsent bool

	raw []byte // cached serialisation

	// Cached string forms of To and From (when set they equal
	// To.String() / From.String()); they spare the hot path from
	// re-building JID strings.
	toStr, fromStr, toBare string
}

// toString returns To as a string, from the cache when possible.
func (s *Stanza) toString() string {
	if s.toStr != "" {
		return s.toStr
	}
	if s.To.Equal(jid.JID{}) {
		return ""
	}
	return s.To.String()
}

// ToBare returns the bare form of To as a string, from the cache when
// possible.
func (s *Stanza) ToBare() string {
	if s.toBare != "" {
		return s.toBare
	}
	return bareString(s.To)
}

// FromString returns From as a string, from the cache when possible.
func (s *Stanza) FromString() string {
	if s.fromStr != "" {
		return s.fromStr
	}
	if s.From.Equal(jid.JID{}) {
		return ""
	}
	return s.From.String()
}

// SetFrom stamps From with j, whose string form str is already known (a
// session's own address); only on a stanza not yet routed.
func (s *Stanza) SetFrom(j jid.JID, str string) { s.From, s.fromStr, s.raw = j, str, nil }

// ToOwnAccount reports whether the stanza is addressed to its sender's own
// account (an iq without 'to' is): what changes an account's data must be.
func (s *Stanza) ToOwnAccount() bool { return s.To.Equal(s.From.Bare()) }

// setTo replaces To and forgets its cached strings.
func (s *Stanza) setTo(j jid.JID) {
	s.To, s.toStr, s.toBare = j, "", ""
	s.raw = nil
}

// SetInner replaces the raw children with inner (which must be
// well-formed) and forgets the cached serialisation: how a hook adds or
// removes a child of a stanza it holds (an archive's stanza-id) without
// decoding it. The stanza must not have been handed to another goroutine
// yet; inner must not share memory another stanza may change.
func (s *Stanza) SetInner(inner []byte) { s.Inner, s.raw = inner, nil }

// Clone returns a copy that may be changed; Inner and Attrs are shared.
func (s *Stanza) Clone() *Stanza {
	c := *s
	c.raw = nil
	// The copy's To and From may be changed through the exported fields,
	// so it must not keep string forms that could go stale.
	c.toStr, c.fromStr, c.toBare = "", "", ""
	return &c
}

// Bytes returns the stanza serialised for a stream whose default namespace
// is jabber:client or jabber:server: no namespace is written for it (a
// WebSocket transport adds jabber:client to each stanza it frames). The
// result is cached; do not modify it.
func (s *Stanza) Bytes() []byte {
	if s.raw != nil {
		return s.raw
	}
	b := wire.NewBuilder(make([]byte, 0, len(s.Inner)+192))
	s.WriteTo(b, "")
	s.raw = b.Bytes()
	return s.raw
}

// WriteTo writes the stanza with b; ns, when not empty, is declared as its
// namespace (a stanza forwarded inside another element, XEP-0297).
func (s *Stanza) WriteTo(b *wire.Builder, ns string) {
	s.writeStart(b, ns)
	if len(s.Inner) > 0 {
		b.Raw(s.Inner)
	}
	b.End()
}

// AppendChild adds child, the serialised XML of one element, after the
// stanza's children and returns Bytes. The stanza is serialised once for
// both (a hook that stamps every routed message and needs its bytes too
// copies it once, not twice): Inner becomes a view of the serialisation,
// capped, so that an append to it copies.
func (s *Stanza) AppendChild(child []byte) []byte {
	n := len(s.Inner) + len(child)
	b := wire.NewBuilder(make([]byte, 0, n+192))
	s.writeStart(b, "")
	b.Raw(s.Inner).Raw(child)
	end := b.Len()
	s.raw = b.End().Bytes()
	s.Inner = s.raw[end-n : end : end]
	return s.raw
}

// writeStart writes the stanza's start tag and attributes.
func (s *Stanza) writeStart(b *wire.Builder, ns string) {
	b.Start(s.Kind.String())
	if ns != "" {
		b.Attr("xmlns", ns)
	}
	if to := s.toString(); to != "" {
		b.Attr("to", to)
	}
	if from := s.FromString(); from != "" {
		b.Attr("from", from)
	}
	if s.ID != "" {
		b.Attr("id", s.ID)
	}
	if s.Type != "" {
		b.Attr("type", s.Type)
	}
	if s.Lang != "" {
		b.Attr("xml:lang", s.Lang)
	}
	gen := 0
	for _, a := range s.Attrs {
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			// The stanza is in the stream's content namespace (Parse
			// refuses any other): never written, so that it moves
			// between c2s, s2s and WebSocket streams unchanged.
		case a.Name.Space == "xmlns":
			b.Attr("xmlns:"+a.Name.Local, a.Value)
		case a.Name.Space == "":
			b.Attr(a.Name.Local, a.Value)
		default:
			// A namespaced attribute: declare a prefix of our own for it.
			p := "a" + strconv.Itoa(gen)
			gen++
			b.Attr("xmlns:"+p, a.Name.Space)
			b.Attr(p+":"+a.Name.Local, a.Value)
		}
	}
}

// Decode decodes the whole stanza into v with encoding/xml (for the few
// stanzas the server itself handles; routing never needs it). The stanza
// element is in jabber:client.
func (s *Stanza) Decode(v any) error {
	return xml.NewDecoder(bytes.NewReader(s.Wrapped())).Decode(v)
}

// DecodePayload decodes the first child element into v.
func (s *Stanza) DecodePayload(v any) error {
	d := xml.NewDecoder(bytes.NewReader(s.Wrapped()))
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 {
				return d.DecodeElement(v, &t)
			}
		case xml.EndElement:
			depth--
		}
	}
}

// Wrapped serialises the stanza with an explicit jabber:client namespace
// so that it decodes, or is embedded, on its own.
func (s *Stanza) Wrapped() []byte {
	b := wire.NewBuilder(make([]byte, 0, len(s.Inner)+192))
	s.WriteTo(b, NSClient)
	return b.Bytes()
}

// TokenReader returns the stanza as an xml.TokenReader (for code written
// against mellium's xmlstream helpers).
func (s *Stanza) TokenReader() xml.TokenReader {
	return xml.NewDecoder(bytes.NewReader(s.Wrapped()))
}

// Reply returns a stanza of the same kind addressed back to the sender:
// to = s.From, from = s.To (none when s.ToAbsent), same id, the given type
// and children.
func (s *Stanza) Reply(typ string, inner []byte) *Stanza {
	r := &Stanza{Kind: s.Kind, To: s.From, ID: s.ID, Type: typ, Inner: inner, toStr: s.fromStr}
	if !s.ToAbsent {
		r.From = s.To
	}
	return r
}

// ErrorReply returns the error stanza (RFC 6120 §8.3) answering s with e.
// The caller must not answer stanzas of type "error".
func (s *Stanza) ErrorReply(e stanza.Error) *Stanza {
	return s.Reply("error", AppendError(nil, e))
}

// AppendError appends the <error/> element for e.
func AppendError(buf []byte, e stanza.Error) []byte { return appendError(buf, e, nil) }

// AppError is a stanza error with an application-specific condition (RFC
// 6120 §8.3.3.4, e.g. XEP-0060's <precondition-not-met/>): App is that
// element's raw XML, written after the defined condition. IQ handlers and
// stanza hooks return it as they return a stanza.Error.
type AppError struct {
	Err stanza.Error
	App []byte
}

// NewAppError makes a stanza error with the application condition
// <local xmlns=ns/>.
func NewAppError(typ stanza.ErrorType, cond stanza.Condition, ns, local string) AppError {
	return AppError{Err: NewError(typ, cond, ""), App: wire.NewBuilder(nil).Element(local, ns, "").Bytes()}
}

func (e AppError) Error() string { return e.Err.Error() }

// Unwrap returns the stanza error without its application condition.
func (e AppError) Unwrap() error { return e.Err }

func appendError(buf []byte, e stanza.Error, app []byte) []byte {
	if e.Type == "" {
		e.Type = stanza.Cancel
	}
	if e.Condition == "" {
		e.Condition = stanza.UndefinedCondition
	}
	b := wire.NewBuilder(buf)
	b.Start("error", "type", string(e.Type))
	if code, ok := legacyCodes[e.Condition]; ok {
		b.Attr("code", code)
	}
	if !e.By.Equal(jid.JID{}) {
		b.Attr("by", e.By.String())
	}
	b.Element(string(e.Condition), NSStanzas, "")
	for lang, text := range e.Text {
		b.StartNS("text", NSStanzas, "xml:lang", lang).Text(text).End()
	}
	b.Raw(app)
	return b.End().Bytes()
}

// legacyCodes are the XEP-0086 error codes of the defined conditions,
// carried as the code attribute beside the condition as ejabberd does:
// deprecated, but some clients still read only the code (profanity 0.13
// takes an OMEMO device list that is not there yet as absent only from
// code='404', and otherwise never publishes its own).
var legacyCodes = map[stanza.Condition]string{
	stanza.BadRequest: "400", stanza.Conflict: "409", stanza.FeatureNotImplemented: "501",
	stanza.Forbidden: "403", stanza.Gone: "302", stanza.InternalServerError: "500",
	stanza.ItemNotFound: "404", stanza.JIDMalformed: "400", stanza.NotAcceptable: "406",
	stanza.NotAllowed: "405", stanza.NotAuthorized: "401",
	stanza.RecipientUnavailable: "404", stanza.Redirect: "302", stanza.RegistrationRequired: "407",
	stanza.RemoteServerNotFound: "404", stanza.RemoteServerTimeout: "504", stanza.ResourceConstraint: "500",
	stanza.ServiceUnavailable: "503", stanza.SubscriptionRequired: "407", stanza.UndefinedCondition: "500",
	stanza.UnexpectedRequest: "400",
}

// NewError makes a stanza error with an optional text.
func NewError(typ stanza.ErrorType, cond stanza.Condition, text string) stanza.Error {
	e := stanza.Error{Type: typ, Condition: cond}
	if text != "" {
		e.Text = map[string]string{"": text}
	}
	return e
}

// RawStanza wraps bytes that are already a serialised stanza (e.g. one
// kept in the offline store) so they can be delivered as they are. Only
// Bytes is meaningful on the result.
func RawStanza(b []byte) *Stanza { return &Stanza{raw: b} }

// Errors of Parse.
var (
	// ErrUnsupportedStanza: not a message, presence or iq of the stream's
	// content namespace.
	ErrUnsupportedStanza = errors.New("unsupported stanza type")
	// ErrBadTo: a 'to' that is no JID.
	ErrBadTo = errors.New("malformed 'to'")
	// ErrBadFrom: a 'from' that is no JID.
	ErrBadFrom = errors.New("malformed 'from'")
)

// Addr is a parsed, normalised 'to' address with its string forms, or the
// error answering it (ErrBadTo, or a stanza.Error from Normalize).
type Addr struct {
	JID          jid.JID
	String, Bare string
	Err          error
}

// Parse builds a Stanza from a top-level element of a stream whose
// content namespace is ns. It checks the element is a stanza and parses
// (but does not trust) its addresses. resolve, when not nil, gives 'to'
// (a session's cache of addresses already parsed and normalised). With an
// error about 'to' the stanza is returned too, so that it can be answered.
func Parse(el wire.Element, ns string, resolve func(raw string) Addr) (*Stanza, error) {
	st := &Stanza{Inner: el.Inner, Payload: el.First, Attrs: el.Carry}
	if el.Start.Name.Space != "" {
		return nil, ErrUnsupportedStanza
	}
	switch el.Start.Name.Local {
	case "message":
		st.Kind = KindMessage
	case "presence":
		st.Kind = KindPresence
	case "iq":
		st.Kind = KindIQ
	default:
		return nil, ErrUnsupportedStanza
	}
	var toErr error
	for _, a := range el.Start.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "to" && resolve != nil:
			e := resolve(a.Value)
			st.To = e.JID
			if e.Err != nil {
				toErr = e.Err
				continue
			}
			st.toStr, st.toBare = e.String, e.Bare
		case a.Name.Space == "" && a.Name.Local == "to":
			j, err := jid.Parse(a.Value)
			if err != nil {
				toErr = ErrBadTo
				continue
			}
			st.To = j
		case a.Name.Space == "" && a.Name.Local == "from":
			j, err := jid.Parse(a.Value)
			if err != nil {
				return st, ErrBadFrom
			}
			st.From = j
		case a.Name.Space == "" && a.Name.Local == "id":
			st.ID = a.Value
		case a.Name.Space == "" && a.Name.Local == "type":
			st.Type = a.Value
		case a.Name.Space == "xml" && a.Name.Local == "lang":
			st.Lang = a.Value
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			if a.Value != ns {
				return nil, ErrUnsupportedStanza
			}
		case a.Name.Space == "" || a.Name.Space == "xmlns":
			st.Attrs = append(st.Attrs, a)
		default:
			// keep prefixed attributes verbatim (their declaration is kept too)
			st.Attrs = append(st.Attrs, xml.Attr{Name: xml.Name{Local: a.Name.Space + ":" + a.Name.Local}, Value: a.Value})
		}
	}
	return st, toErr
}

// ResolveAddr parses and normalises a raw 'to' address (what a session's
// cache keeps).
func ResolveAddr(raw string, normalize func(jid.JID) (jid.JID, error)) Addr {
	j, err := jid.Parse(raw)
	if err != nil {
		return Addr{Err: ErrBadTo}
	}
	n, err := normalize(j)
	if err != nil {
		return Addr{JID: j, Err: err}
	}
	return Addr{JID: n, String: n.String(), Bare: bareString(n)}
}

// bareString is the bare JID of j as a string, without building the
// intermediate JID.
func bareString(j jid.JID) string {
	if l := j.Localpart(); l != "" {
		return l + "@" + j.Domainpart()
	}
	return j.Domainpart()
}
