package xmppd

import (
	"bytes"
	"dialtone/xmppd/wire"
	"encoding/xml"
	"errors"
	"strconv"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
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
	return s.To.String()
}

// toBareString returns the bare form of To as a string.
func (s *Stanza) toBareString() string {
	if s.toBare != "" {
		return s.toBare
	}
	return bareString(s.To)
}

// setTo replaces To and forgets its cached strings.
func (s *Stanza) setTo(j jid.JID) {
	s.To, s.toStr, s.toBare = j, "", ""
}

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
// is jabber:client or jabber:server (no xmlns is written for it). The result
// is cached; do not modify it.
func (s *Stanza) Bytes() []byte {
	if s.raw != nil {
		return s.raw
	}
	name := s.Kind.String()
	b := make([]byte, 0, len(s.Inner)+len(name)*2+192)
	b = append(b, '<')
	b = append(b, name...)
	if s.toStr != "" {
		b = appendAttr(b, "to", s.toStr)
	} else if !s.To.Equal(jid.JID{}) {
		b = appendAttr(b, "to", s.To.String())
	}
	if s.fromStr != "" {
		b = appendAttr(b, "from", s.fromStr)
	} else if !s.From.Equal(jid.JID{}) {
		b = appendAttr(b, "from", s.From.String())
	}
	if s.ID != "" {
		b = appendAttr(b, "id", s.ID)
	}
	if s.Type != "" {
		b = appendAttr(b, "type", s.Type)
	}
	if s.Lang != "" {
		b = appendAttr(b, "xml:lang", s.Lang)
	}
	gen := 0
	for _, a := range s.Attrs {
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			if a.Value == NSClient || a.Value == NSServer {
				continue
			}
			b = appendAttr(b, "xmlns", a.Value)
		case a.Name.Space == "xmlns":
			b = appendAttr(b, "xmlns:"+a.Name.Local, a.Value)
		case a.Name.Space == "":
			b = appendAttr(b, a.Name.Local, a.Value)
		default:
			// A namespaced attribute: declare a prefix of our own for it.
			p := "a" + strconv.Itoa(gen)
			gen++
			b = appendAttr(b, "xmlns:"+p, a.Name.Space)
			b = appendAttr(b, p+":"+a.Name.Local, a.Value)
		}
	}
	if len(s.Inner) == 0 {
		b = append(b, "/>"...)
	} else {
		b = append(b, '>')
		b = append(b, s.Inner...)
		b = append(b, "</"...)
		b = append(b, name...)
		b = append(b, '>')
	}
	s.raw = b
	return b
}

func appendAttr(b []byte, name, value string) []byte {
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, '=', '"')
	b = AppendEscaped(b, value)
	return append(b, '"')
}

// AppendEscaped appends s escaped for use in XML text or a double-quoted
// attribute value (see wire.AppendEscaped).
func AppendEscaped(b []byte, s string) []byte { return wire.AppendEscaped(b, s) }

// Decode decodes the whole stanza into v with encoding/xml (for the few
// stanzas the server itself handles; routing never needs it). The stanza
// element is in jabber:client.
func (s *Stanza) Decode(v any) error {
	return xml.NewDecoder(bytes.NewReader(s.wrapped())).Decode(v)
}

// DecodePayload decodes the first child element into v.
func (s *Stanza) DecodePayload(v any) error {
	d := xml.NewDecoder(bytes.NewReader(s.wrapped()))
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

// wrapped serialises the stanza with an explicit jabber:client namespace so
// that it decodes on its own.
func (s *Stanza) wrapped() []byte {
	b := s.Bytes()
	name := s.Kind.String()
	out := make([]byte, 0, len(b)+24)
	out = append(out, b[:1+len(name)]...)
	out = append(out, ` xmlns="jabber:client"`...)
	return append(out, b[1+len(name):]...)
}

// TokenReader returns the stanza as an xml.TokenReader (for code written
// against mellium's xmlstream helpers).
func (s *Stanza) TokenReader() xml.TokenReader {
	return xml.NewDecoder(bytes.NewReader(s.wrapped()))
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
func AppendError(b []byte, e stanza.Error) []byte {
	b = append(b, "<error"...)
	if e.Type == "" {
		e.Type = stanza.Cancel
	}
	b = appendAttr(b, "type", string(e.Type))
	if !e.By.Equal(jid.JID{}) {
		b = appendAttr(b, "by", e.By.String())
	}
	b = append(b, '>', '<')
	if e.Condition == "" {
		e.Condition = stanza.UndefinedCondition
	}
	b = append(b, e.Condition...)
	b = append(b, ` xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>`...)
	for lang, text := range e.Text {
		b = append(b, `<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"`...)
		if lang != "" {
			b = appendAttr(b, "xml:lang", lang)
		}
		b = append(b, '>')
		b = AppendEscaped(b, text)
		b = append(b, "</text>"...)
	}
	return append(b, "</error>"...)
}

// Marshal encodes v (a value encoding/xml can marshal) into bytes, for a
// Stanza's Inner.
func Marshal(v any) ([]byte, error) {
	return xml.Marshal(v)
}

func xmlName(space, local string) xml.Name { return xml.Name{Space: space, Local: local} }

// RawStanza wraps bytes that are already a serialised stanza (e.g. one
// kept in the offline store) so they can be delivered as they are. Only
// Bytes is meaningful on the result.
func RawStanza(b []byte) *Stanza { return &Stanza{raw: b} }

// DefaultMaxStanzaSize is the largest stanza accepted by default.
const DefaultMaxStanzaSize = wire.DefaultMaxStanzaSize

// stanzaFromElement builds a Stanza from a top-level wire.Element of a stream
// whose content namespace is ns. It checks the element is a stanza and
// parses (but does not trust) its addresses.
func stanzaFromElement(el wire.Element, ns string) (*Stanza, error) {
	return stanzaFrom(el, ns, nil)
}

// stanzaFrom is stanzaFromElement with a resolver for 'to': a session's
// cache of already parsed and normalised addresses.
func stanzaFrom(el wire.Element, ns string, resolve func(raw string) addrEntry) (*Stanza, error) {
	st := &Stanza{Inner: el.Inner, Payload: el.First, Attrs: el.Carry}
	if el.Start.Name.Space != "" {
		return nil, errUnsupportedStanza
	}
	switch el.Start.Name.Local {
	case "message":
		st.Kind = KindMessage
	case "presence":
		st.Kind = KindPresence
	case "iq":
		st.Kind = KindIQ
	default:
		return nil, errUnsupportedStanza
	}
	var toErr error
	for _, a := range el.Start.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "to" && resolve != nil:
			e := resolve(a.Value)
			st.To = e.j
			if e.err != nil {
				toErr = e.err
				continue
			}
			st.toStr, st.toBare = e.str, e.bare
		case a.Name.Space == "" && a.Name.Local == "to":
			j, err := jid.Parse(a.Value)
			if err != nil {
				toErr = errBadTo
				continue
			}
			st.To = j
		case a.Name.Space == "" && a.Name.Local == "from":
			j, err := jid.Parse(a.Value)
			if err != nil {
				return st, errBadFrom
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
				return nil, errUnsupportedStanza
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

var (
	errUnsupportedStanza = errors.New("unsupported stanza type")
	errBadTo             = errors.New("malformed 'to'")
	errBadFrom           = errors.New("malformed 'from'")
)

// addrEntry is a parsed, normalised 'to' address with its string forms,
// or the error answering it.
type addrEntry struct {
	j         jid.JID
	str, bare string
	err       error // errBadTo, or a stanza.Error from normalisation
}

// addrCache remembers the addresses one session writes to, so that the
// routing path parses and normalises each only once. It belongs to the
// session's reader goroutine.
type addrCache struct {
	m map[string]addrEntry
}

const addrCacheSize = 256

func (c *addrCache) resolve(s *Server, raw string) addrEntry {
	if e, ok := c.m[raw]; ok {
		return e
	}
	var e addrEntry
	j, err := jid.Parse(raw)
	if err != nil {
		e.err = errBadTo
	} else if n, err := s.Normalize(j); err != nil {
		e.j, e.err = j, err
	} else {
		e.j, e.str, e.bare = n, n.String(), bareString(n)
	}
	if c.m == nil || len(c.m) >= addrCacheSize {
		c.m = make(map[string]addrEntry, 16)
	}
	c.m[raw] = e
	return e
}
