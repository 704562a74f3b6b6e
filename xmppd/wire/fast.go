package wire

import (
	"bytes"
	"encoding/xml"
	"unicode/utf8"
)

// The fast path of ReadElement. encoding/xml hands its tokens over one
// byte at a time, decodes every text and builds every token; profiled
// under load it was most of the CPU a routed message cost. Yet nearly
// every stanza is small, arrives whole in one read, and is made of start
// tags, end tags and text: fastElement checks such an element straight
// from the read buffer and builds only what the caller keeps.
//
// It only ever accepts: an element it is not sure of, for any reason (not
// all buffered, a CDATA section, a name outside ASCII, a reference it does
// not know, a carriage return in an attribute value, anything malformed),
// is left where it is, and the slow path reads it from the same byte and
// says what is wrong with it, if anything. So the fast path is checked
// against the slow one (FuzzFastMatchesSlow): whatever it accepts, the
// slow path accepts too, as the same Element.

// maxReadOn bounds the reads fastElement makes for one element.
const maxReadOn = 8

// fastElement reads the next top-level element from the read buffer when
// it is all there and the fast path can check it; it reports false,
// having consumed nothing, otherwise. Call it between elements, where
// the decoder holds no look-ahead byte: the bytes it consumes never reach
// the decoder (as skipSpace's).
func (w *Reader) fastElement() (Element, bool) {
	if w.slowOnly || w.frames != nil || w.br == nil || w.br.Buffered() == 0 {
		return Element{}, false
	}
	for try := 0; ; try++ {
		b, _ := w.br.Peek(w.br.Buffered())
		if len(b) > w.max {
			b = b[:w.max] // longer than max: the slow path refuses it
		}
		if el, n, ok := scanElement(&w.ns, b); ok {
			w.br.Discard(n)
			w.count = 0
			return el, true
		}
		// The element may go on past the buffer (a client wrote many
		// stanzas in one TLS record): when the connection holds more
		// that it hands over without waiting on the network, and the
		// buffer has room, read on (bufio moves what is left to the start
		// of its buffer first) and look again, a few times (a TLS
		// record's rest comes in one read). Otherwise the slow path reads
		// it (readElement resets the scope).
		if try >= maxReadOn || len(b) >= w.br.Size() || len(b) >= w.max || w.waiter == nil || !w.waiter.Pending() {
			return Element{}, false
		}
		had := len(b)
		if more, _ := w.br.Peek(had + 1); len(more) <= had {
			return Element{}, false
		}
		if w.limit != nil {
			w.limit.Take(w.br.Buffered() - had)
		}
	}
}

// scanElement checks the element at the start of b in ns's context and
// returns it and its length; false when the fast path cannot vouch for
// it.
func scanElement(ns *nsScope, b []byte) (Element, int, bool) {
	var el Element
	ns.reset()
	if len(b) < 2 || b[0] != '<' {
		return el, 0, false
	}
	// The attributes of elements inside the stanza: only their names, and
	// the values of declarations, are looked at.
	var scratch [8]xml.Attr
	tagEnd := 0
	for i := 0; ; {
		if b[i] != '<' {
			j, ok := scanText(b, i)
			if !ok {
				return el, 0, false
			}
			i = j
			continue
		}
		if i+1 >= len(b) {
			return el, 0, false
		}
		switch b[i+1] {
		case '!', '?': // CDATA, comments, DTDs, processing instructions
			return el, 0, false
		case '/':
			colon, j, ok := scanNameSpan(b, i+2)
			if !ok || !ns.closes(b[i+2:j], colon-(i+2)) {
				return el, 0, false
			}
			j = skipSpaceAt(b, j)
			if j >= len(b) || b[j] != '>' {
				return el, 0, false
			}
			ns.endElement(ns.open[len(ns.open)-1].name)
			if ns.depth() == 0 {
				// The stanza's end tag: what lies between it and the start
				// tag are its children.
				if i > tagEnd {
					el.Inner = append([]byte(nil), b[tagEnd:i]...)
				}
				return finish(ns, el), j + 1, true
			}
			i = j + 1
		default:
			top := ns.depth() == 0
			if ns.depth() >= MaxDepth {
				return el, 0, false
			}
			attrs := scratch[:0]
			if top {
				attrs = []xml.Attr{} // as xml.StartElement.Copy leaves it
			}
			t, j, empty, ok := scanStartTag(b, i, attrs, top)
			if !ok {
				return el, 0, false
			}
			first := ns.depth() == 1 && el.First.Local == ""
			name, err := ns.start(t, top || first)
			if err != nil {
				return el, 0, false
			}
			switch {
			case top:
				el.Start, el.Name, tagEnd = t, name, j
			case first:
				el.First = name
			}
			if empty {
				ns.endElement(t.Name)
				if top {
					return finish(ns, el), j, true
				}
			}
			i = j
		}
		if i >= len(b) {
			return el, 0, false
		}
	}
}

// finish adds the header declarations the element uses.
func finish(ns *nsScope, el Element) Element {
	if len(ns.carry) > 0 {
		el.Carry = append([]xml.Attr(nil), ns.carry...)
	}
	return el
}

// scanStartTag reads the start tag at b[i] ('<'), appending its
// attributes to attrs; it returns the tag, the index past it, and
// whether it closes itself. Attribute values are kept when full (the
// stanza's own tag, which the caller keeps), else only those of namespace
// declarations.
func scanStartTag(b []byte, i int, attrs []xml.Attr, full bool) (t xml.StartElement, end int, empty, ok bool) {
	t.Name, i, ok = scanName(b, i+1)
	if !ok {
		return t, 0, false, false
	}
	// The values of the stanza's own tag share one string.
	var values string
	valuesAt := i
	if full {
		for j := i; j < len(b); j++ {
			if b[j] == '>' {
				values = string(b[i:j])
				break
			}
		}
	}
	for {
		k := skipSpaceAt(b, i)
		if k+1 >= len(b) {
			return t, 0, false, false
		}
		switch b[k] {
		case '>':
			t.Attr = attrs
			return t, k + 1, false, true
		case '/':
			if b[k+1] != '>' {
				return t, 0, false, false
			}
			t.Attr = attrs
			return t, k + 2, true, true
		}
		if k == i { // no white space before an attribute
			return t, 0, false, false
		}
		var a xml.Attr
		if a.Name, k, ok = scanName(b, k); !ok {
			return t, 0, false, false
		}
		k = skipSpaceAt(b, k)
		if k >= len(b) || b[k] != '=' {
			return t, 0, false, false
		}
		k = skipSpaceAt(b, k+1)
		if k >= len(b) || b[k] != '"' && b[k] != '\'' {
			return t, 0, false, false
		}
		vend, refs, ok := scanValue(b, k+1, b[k])
		if !ok {
			return t, 0, false, false
		}
		declares := a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns"
		switch {
		case (full || declares) && refs:
			return t, 0, false, false // values are not decoded here
		case declares:
			a.Value = intern(b[k+1 : vend])
		case full:
			if vend-valuesAt > len(values) {
				return t, 0, false, false
			}
			a.Value = values[k+1-valuesAt : vend-valuesAt]
		}
		if cap(attrs) == 0 {
			attrs = make([]xml.Attr, 0, 4)
		}
		attrs = append(attrs, a)
		i = vend + 1
	}
}

// scanName reads the name at b[i] (scanNameSpan); its parts come from
// the table of common names when there.
func scanName(b []byte, i int) (xml.Name, int, bool) {
	colon, end, ok := scanNameSpan(b, i)
	switch {
	case !ok:
		return xml.Name{}, 0, false
	case colon < 0:
		return xml.Name{Local: intern(b[i:end])}, end, true
	}
	return xml.Name{Space: intern(b[i:colon]), Local: intern(b[colon+1 : end])}, end, true
}

// scanNameSpan reads the name at b[i]: ASCII, at most one colon, inside
// it, each part a name of its own (anything else is left to encoding/xml
// and checkQName). It returns the colon's index (-1: none) and the index
// past the name.
func scanNameSpan(b []byte, i int) (colon, end int, ok bool) {
	colon = -1
	if i >= len(b) || !isNameStartByte(b[i]) {
		return 0, 0, false
	}
	for i++; i < len(b); i++ {
		c := b[i]
		switch {
		case isNameStartByte(c), c >= '0' && c <= '9', c == '.', c == '-':
		case c == ':':
			if colon >= 0 || i+1 >= len(b) || !isNameStartByte(b[i+1]) {
				return 0, 0, false
			}
			colon = i
		case c >= utf8.RuneSelf:
			return 0, 0, false
		default:
			return colon, i, true
		}
	}
	return 0, 0, false // the name goes on past what is buffered
}

// closes reports whether raw, a name whose colon is at index colon (<0:
// none), is the raw name of the innermost open element.
func (s *nsScope) closes(raw []byte, colon int) bool {
	if len(s.open) == 0 {
		return false
	}
	n := s.open[len(s.open)-1].name
	if colon < 0 {
		return n.Space == "" && string(raw) == n.Local
	}
	return string(raw[:colon]) == n.Space && string(raw[colon+1:]) == n.Local
}

func isNameStartByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

// scanText reads text from b[i] up to the next '<', and returns its
// index.
func scanText(b []byte, i int) (int, bool) {
	for i < len(b) {
		c := b[i]
		switch {
		case c == '<':
			return i, true
		case c == '&':
			j, ok := scanRef(b, i)
			if !ok {
				return 0, false
			}
			i = j
		case c == '>':
			if i >= 2 && b[i-1] == ']' && b[i-2] == ']' {
				return 0, false // "]]>" is not allowed in text
			}
			i++
		case c >= 0x20 && c < utf8.RuneSelf, c == '\n', c == '\t', c == '\r':
			i++
		default:
			n, ok := scanRune(b[i:])
			if !ok {
				return 0, false
			}
			i += n
		}
	}
	return 0, false
}

// scanValue reads an attribute value from b[i] up to its closing quote q,
// and returns the quote's index and whether the value holds references.
// A carriage return (which encoding/xml turns into a newline) is left to
// the slow path.
func scanValue(b []byte, i int, q byte) (end int, refs, ok bool) {
	for i < len(b) {
		c := b[i]
		switch {
		case c == q:
			return i, refs, true
		case c == '<', c == '\r':
			return 0, false, false
		case c == '&':
			j, ok := scanRef(b, i)
			if !ok {
				return 0, false, false
			}
			refs, i = true, j
		case c >= 0x20 && c < utf8.RuneSelf, c == '\n', c == '\t':
			i++
		default:
			n, ok := scanRune(b[i:])
			if !ok {
				return 0, false, false
			}
			i += n
		}
	}
	return 0, false, false
}

// scanRune checks the character at the start of b (not printable ASCII)
// is one XML allows, and returns its length.
func scanRune(b []byte) (int, bool) {
	r, n := utf8.DecodeRune(b)
	if r == utf8.RuneError && n <= 1 || !isXMLChar(r) {
		return 0, false
	}
	return n, true
}

// scanRef reads the reference at b[i] ('&'): one of XML's five entities,
// or a character reference to a character XML allows. It returns the
// index past its ';'.
func scanRef(b []byte, i int) (int, bool) {
	rest := b[i+1:]
	for _, e := range [...]string{"lt;", "gt;", "amp;", "quot;", "apos;"} {
		if len(rest) >= len(e) && string(rest[:len(e)]) == e {
			return i + 1 + len(e), true
		}
	}
	if len(rest) < 3 || rest[0] != '#' {
		return 0, false
	}
	j, base := 1, uint32(10)
	if rest[1] == 'x' {
		j, base = 2, 16
	}
	start := j
	var n uint32
	for ; j < len(rest) && j-start < 8; j++ {
		c := rest[j]
		var d uint32
		switch {
		case c >= '0' && c <= '9':
			d = uint32(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = uint32(c-'a') + 10
		case base == 16 && c >= 'A' && c <= 'F':
			d = uint32(c-'A') + 10
		default:
			goto end
		}
		n = n*base + d
	}
end:
	if j == start || j >= len(rest) || rest[j] != ';' || !isXMLChar(rune(n)) {
		return 0, false
	}
	return i + 1 + j + 1, true
}

// intern returns b as a string: from the table of the names and
// namespaces most stanzas use without an allocation, else a new one.
func intern(b []byte) string {
	if s, ok := common[string(b)]; ok {
		return s
	}
	return string(b)
}

// common is the table intern looks in (read only).
var common = func() map[string]string {
	m := map[string]string{}
	for _, s := range bytes.Fields([]byte(`
		message presence iq body subject thread error show status priority
		to from id type by xmlns xml lang stream c hash node ver ext stamp
		active composing paused inactive gone request received markable displayed
		acknowledged origin-id stanza-id store no-store no-copy no-permanent-store
		private sent forwarded result delay x query ping r a enable enabled resume
		resumed h encrypted header key payload iv rid sid prekey encryption
		namespace name reference jid item items pubsub publish event retract
		fin set first last count max before after
		jabber:client jabber:server urn:xmpp:receipts
		http://jabber.org/protocol/chatstates urn:xmpp:sid:0 urn:xmpp:chat-markers:0
		urn:xmpp:hints urn:xmpp:ping urn:xmpp:delay urn:xmpp:carbons:2
		urn:xmpp:forward:0 urn:xmpp:mam:2 urn:xmpp:sm:3 urn:xmpp:csi:0
		urn:xmpp:eme:0 urn:xmpp:omemo:2 eu.siacs.conversations.axolotl
		jabber:iq:roster jabber:x:oob http://jabber.org/protocol/caps
		http://jabber.org/protocol/disco#info http://jabber.org/protocol/disco#items
		http://jabber.org/protocol/pubsub http://jabber.org/protocol/pubsub#event
		vcard-temp:x:update http://jabber.org/protocol/rsm urn:xmpp:reference:0
		http://www.w3.org/XML/1998/namespace
	`)) {
		m[string(s)] = string(s)
	}
	return m
}()
