package wire

import "unicode/utf8"

// Builder writes XML by appending to a byte slice: every attribute value
// and every text is escaped, elements are closed in order, and raw XML
// (a payload already checked by the Reader) can be spliced in. It is the
// one way the server and its modules produce XML, so that no code builds
// markup by concatenating strings. The zero value is ready to use.
//
//	var b wire.Builder
//	b.Start("message", "to", to, "type", "chat")
//	b.StartNS("received", "urn:xmpp:carbons:2")
//	b.Raw(forwarded)
//	b.End()
//	b.End()
//	out := b.Bytes()
type Builder struct {
	buf   []byte
	names [8]string // the open elements, outermost first, for the usual shallow nesting
	deep  []string  // the open elements beyond the first len(names)
	depth int       // how many elements are open
	open  bool      // the last start tag is not yet closed with '>'
}

// NewBuilder returns a Builder that appends to buf (which may be nil or a
// reused slice of length 0).
func NewBuilder(buf []byte) *Builder { return &Builder{buf: buf} }

// Start opens an element. attrs are name/value pairs; a pair whose value
// is empty is left out (XMPP has no attribute whose empty value differs
// from its absence where the server writes it), so optional attributes can
// be passed as they are. An odd trailing name is ignored.
func (b *Builder) Start(name string, attrs ...string) *Builder {
	b.closeTag()
	b.buf = append(b.buf, '<')
	b.buf = append(b.buf, name...)
	if b.depth < len(b.names) {
		b.names[b.depth] = name
	} else {
		b.deep = append(b.deep, name)
	}
	b.depth++
	b.open = true
	for i := 0; i+1 < len(attrs); i += 2 {
		if attrs[i+1] == "" {
			continue
		}
		b.Attr(attrs[i], attrs[i+1])
	}
	return b
}

// StartNS opens an element that declares ns as its default namespace.
func (b *Builder) StartNS(name, ns string, attrs ...string) *Builder {
	b.Start(name)
	b.Attr("xmlns", ns)
	for i := 0; i+1 < len(attrs); i += 2 {
		if attrs[i+1] == "" {
			continue
		}
		b.Attr(attrs[i], attrs[i+1])
	}
	return b
}

// Attr adds an attribute to the element just opened, even when value is
// empty. It must follow Start or StartNS directly.
func (b *Builder) Attr(name, value string) *Builder {
	if !b.open {
		return b
	}
	b.buf = AppendAttr(b.buf, name, value)
	return b
}

// AppendAttr appends ` name="value"`, the value escaped: an attribute for
// a start tag written elsewhere (a transport declaring a namespace on an
// element it frames).
func AppendAttr(b []byte, name, value string) []byte {
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, '=', '"')
	b = AppendEscaped(b, value)
	return append(b, '"')
}

// Text appends escaped character data.
func (b *Builder) Text(s string) *Builder {
	b.closeTag()
	b.buf = AppendEscaped(b.buf, s)
	return b
}

// Raw appends XML that is already well-formed in this position (for
// example the captured children of a stanza the Reader checked).
func (b *Builder) Raw(xml []byte) *Builder {
	b.closeTag()
	b.buf = append(b.buf, xml...)
	return b
}

// Element writes <name xmlns="ns">text</name> (or a self-closing element
// when text is empty); ns may be empty.
func (b *Builder) Element(name, ns, text string) *Builder {
	if ns != "" {
		b.StartNS(name, ns)
	} else {
		b.Start(name)
	}
	if text != "" {
		b.Text(text)
	}
	return b.End()
}

// End closes the innermost open element: self-closing when it has no
// content.
func (b *Builder) End() *Builder {
	if b.depth == 0 {
		return b
	}
	b.depth--
	var name string
	if b.depth < len(b.names) {
		name = b.names[b.depth]
	} else {
		name = b.deep[b.depth-len(b.names)]
		b.deep = b.deep[:b.depth-len(b.names)]
	}
	if b.open {
		b.buf = append(b.buf, '/', '>')
		b.open = false
		return b
	}
	b.buf = append(b.buf, '<', '/')
	b.buf = append(b.buf, name...)
	b.buf = append(b.buf, '>')
	return b
}

// Bytes closes every element still open and returns the XML. The Builder
// may go on appending afterwards.
func (b *Builder) Bytes() []byte {
	for b.depth > 0 {
		b.End()
	}
	return b.buf
}

// Declaration writes the XML declaration that starts a stream.
func (b *Builder) Declaration() *Builder {
	b.closeTag()
	b.buf = append(b.buf, "<?xml version='1.0'?>"...)
	return b
}

// Opened returns the XML written so far with the last start tag finished
// and the open elements left open: a stream header, whose end comes with
// the stream's.
func (b *Builder) Opened() []byte {
	b.closeTag()
	return b.buf
}

// EndOf writes the end tag of an element opened elsewhere (the end of a
// stream, whose header another Builder wrote).
func (b *Builder) EndOf(name string) *Builder {
	b.closeTag()
	b.buf = append(b.buf, '<', '/')
	b.buf = append(b.buf, name...)
	b.buf = append(b.buf, '>')
	return b
}

// Len is the number of bytes written so far.
func (b *Builder) Len() int { return len(b.buf) }

func (b *Builder) closeTag() {
	if b.open {
		b.buf = append(b.buf, '>')
		b.open = false
	}
}

// escapes says what AppendEscaped does with each byte: 0 copies it, 1
// looks at it (a markup character, a control character, the start of a
// multi-byte character).
var escapes = func() (t [256]uint8) {
	for c := 0; c < 0x20; c++ {
		t[c] = 1
	}
	for _, c := range `&<>"'` {
		t[c] = 1
	}
	for c := utf8.RuneSelf; c < 256; c++ {
		t[c] = 1
	}
	return t
}()

// AppendEscaped appends s escaped for use in XML character data or in a
// double-quoted attribute value. Characters that XML 1.0 does not allow
// at all (control characters other than tab, newline and carriage return,
// U+FFFE, U+FFFF, invalid UTF-8) are replaced by U+FFFD, so that the
// output is always well-formed whatever the input string holds.
func AppendEscaped(b []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if escapes[c] == 0 {
			i++
			continue
		}
		var esc string
		size := 1
		switch {
		case c == '&':
			esc = "&amp;"
		case c == '<':
			esc = "&lt;"
		case c == '>':
			esc = "&gt;"
		case c == '"':
			esc = "&quot;"
		case c == '\'':
			esc = "&apos;"
		case c == '\n':
			esc = "&#xA;"
		case c == '\r':
			esc = "&#xD;"
		case c == '\t':
			esc = "&#x9;"
		case c < 0x20:
			esc = "\uFFFD"
		default: // c >= utf8.RuneSelf
			r, n := utf8.DecodeRuneInString(s[i:])
			size = n
			if (r == utf8.RuneError && n == 1) || r == 0xFFFE || r == 0xFFFF {
				esc = "\uFFFD"
			}
		}
		if esc == "" {
			i += size
			continue
		}
		b = append(b, s[last:i]...)
		b = append(b, esc...)
		i += size
		last = i
	}
	return append(b, s[last:]...)
}
