package wire

import (
	"bytes"
	"encoding/xml"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// What encoding/xml does not check, checked here: stanzas are forwarded as
// the bytes that came, so whatever the server accepts must be
// namespace-well-formed XML (XML 1.0, Namespaces in XML 1.0) in every
// stream it may be written to, or the receiver's parser fails and the
// receiver is cut off (SPEC.md, "Limits on what clients send").
//
// encoding/xml (Strict) already refuses illegal characters in text and
// attribute values (raw or as references) except surrogates, which it
// turns into U+FFFD; names outside the XML 1.0 name tables (the same as
// expat's); unknown entities; '<' in attribute values; "]]>" in text. It
// does not check: namespaces at all (prefixes, reserved names,
// declarations), QName syntax, duplicate attributes, white space between
// attributes, character references to surrogates, the XML declaration
// beyond a loose look at its version and encoding.

// The namespace names bound by Namespaces in XML 1.0 §3 and never declared
// otherwise.
const (
	nsXML   = "http://www.w3.org/XML/1998/namespace"
	nsXMLNS = "http://www.w3.org/2000/xmlns/"
)

// nsBinding is one namespace declaration in force; prefix "" is the
// default namespace (uri "" then means none).
type nsBinding struct {
	prefix, uri string
	shadows     int  // index of the binding of the same prefix it hides, or -1 (kept for the default namespace, and for all while index is in use)
	carried     bool // a header declaration already on the carry list
}

// nsScope is the namespace context a stream is read in: the declarations
// of the peer's stream header, then those of the elements open in the
// top-level element being read. It belongs to the stream's reader.
type nsScope struct {
	binds  []nsBinding
	def    int      // index of the innermost default namespace binding, or -1
	header int      // binds[:header] come from the stream header
	end    xml.Name // the stream header's raw name: only its end tag ends the stream

	// index finds a prefix's innermost binding when there are many (a
	// linear search would let a peer make every lookup cost thousands of
	// comparisons); nil while there are few.
	index map[string]int

	open  []openElement // elements open in the top-level element being read
	carry []xml.Attr    // header declarations the element being read uses
	keys  []attrKey     // scratch for the duplicate check
}

type openElement struct {
	name xml.Name // raw: Space is the prefix
	mark int      // len(binds) before its declarations
}

// attrKey is an attribute's expanded name (declarations: nsXMLNS and the
// prefix declared; the default namespace declaration: "" and "xmlns").
type attrKey struct{ space, local string }

// linearLookup is how many bindings are searched one by one before the
// index is used.
const linearLookup = 16

// setHeader checks the stream header's names and declarations and makes
// them the context of the stream's elements.
func (s *nsScope) setHeader(t xml.StartElement) error {
	s.binds = s.binds[:0]
	s.def = -1
	s.index = nil
	s.header = 0
	s.open = s.open[:0]
	s.carry = s.carry[:0]
	if _, err := s.start(t, false); err != nil {
		return err
	}
	s.open = s.open[:0]
	s.header = len(s.binds)
	s.end = t.Name
	return nil
}

// dropScratch gives back the slices that are empty between top-level
// elements (a parked stream's).
func (s *nsScope) dropScratch() {
	if len(s.open) == 0 && len(s.carry) == 0 {
		s.open, s.carry, s.keys = nil, nil, nil
	}
}

// reset drops what an element left open (a new top-level element starts).
func (s *nsScope) reset() {
	s.pop(s.header)
	s.open = s.open[:0]
	// With the element's own declarations gone, each carried prefix
	// finds its header binding again.
	for _, a := range s.carry {
		if i := s.find(a.Name.Local); i >= 0 {
			s.binds[i].carried = false
		}
	}
	s.carry = s.carry[:0]
}

// start checks a start tag in the current context, opens its scope and
// returns its namespace-resolved name. Header declarations that its names
// use are added to the carry list.
func (s *nsScope) start(t xml.StartElement, resolve bool) (xml.Name, error) {
	s.open = append(s.open, openElement{name: t.Name, mark: len(s.binds)})
	if err := checkQName(t.Name); err != nil {
		return xml.Name{}, err
	}
	if ok, err := startPlain(t); ok {
		if err != nil || !resolve {
			return xml.Name{}, err
		}
		return xml.Name{Space: s.uriAt(s.def), Local: t.Name.Local}, nil
	}
	for _, a := range t.Attr {
		if err := checkQName(a.Name); err != nil {
			return xml.Name{}, err
		}
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			if a.Value == nsXML || a.Value == nsXMLNS {
				return xml.Name{}, errNotWellFormed("the default namespace may not be " + a.Value)
			}
			if !isURIReference(a.Value) {
				return xml.Name{}, errNotWellFormed("a namespace name must be a URI")
			}
			s.push("", a.Value)
		case a.Name.Space == "xmlns":
			switch {
			case a.Name.Local == "xmlns":
				return xml.Name{}, errNotWellFormed("the prefix xmlns may not be declared")
			case a.Name.Local == "xml":
				if a.Value != nsXML {
					return xml.Name{}, errNotWellFormed("the prefix xml may not be bound to another namespace")
				}
			case a.Value == "":
				return xml.Name{}, errNotWellFormed("a prefix may not be undeclared (xmlns:" + a.Name.Local + "='')")
			case a.Value == nsXML || a.Value == nsXMLNS:
				return xml.Name{}, errNotWellFormed("the prefix " + a.Name.Local + " may not be bound to " + a.Value)
			case !isURIReference(a.Value):
				return xml.Name{}, errNotWellFormed("a namespace name must be a URI")
			default:
				s.push(a.Name.Local, a.Value)
			}
		}
	}
	space, err := s.resolve(t.Name.Space, true)
	if err != nil {
		return xml.Name{}, err
	}
	keys := s.keys[:0]
	for _, a := range t.Attr {
		k := attrKey{local: a.Name.Local}
		switch {
		case a.Name.Space == "xmlns":
			k.space = nsXMLNS
		case a.Name.Space != "":
			if k.space, err = s.resolve(a.Name.Space, false); err != nil {
				return xml.Name{}, err
			}
		}
		keys = append(keys, k)
	}
	s.keys = keys
	if dup, ok := duplicateKey(keys); ok {
		return xml.Name{}, errNotWellFormed("duplicate attribute " + dup.local + " on <" + QName(t.Name) + ">")
	}
	return xml.Name{Space: space, Local: t.Name.Local}, nil
}

// startPlain checks the common element (almost every one): no prefix, no
// declaration, few attributes, none of them prefixed. It reports false,
// with no error, for any other.
func startPlain(t xml.StartElement) (bool, error) {
	if t.Name.Space != "" || len(t.Attr) > linearLookup {
		return false, nil
	}
	for i := range t.Attr {
		a := &t.Attr[i].Name
		if a.Space != "" || a.Local == "xmlns" {
			return false, nil
		}
		if err := checkQName(*a); err != nil {
			return true, err
		}
		for j := range i {
			if t.Attr[j].Name.Local == a.Local {
				return true, errNotWellFormed("duplicate attribute " + a.Local + " on <" + t.Name.Local + ">")
			}
		}
	}
	return true, nil
}

// endElement closes the innermost open element. It returns false when
// name does not match its start tag.
func (s *nsScope) endElement(name xml.Name) bool {
	n := len(s.open)
	if n == 0 || s.open[n-1].name != name {
		return false
	}
	s.pop(s.open[n-1].mark)
	s.open = s.open[:n-1]
	return true
}

// depth is the number of open elements.
func (s *nsScope) depth() int { return len(s.open) }

// resolve returns the namespace of a prefix ("" the default namespace for
// elements, no namespace for attributes). Header declarations used are
// noted for carrying.
func (s *nsScope) resolve(prefix string, element bool) (string, error) {
	switch prefix {
	case "":
		if !element {
			return "", nil
		}
	case "xml":
		return nsXML, nil
	}
	i := s.find(prefix)
	if i < 0 {
		if prefix == "" {
			return "", nil
		}
		return "", errNotWellFormed("undeclared prefix " + prefix)
	}
	b := &s.binds[i]
	if i < s.header && prefix != "" && !b.carried {
		b.carried = true
		s.carry = append(s.carry, xml.Attr{Name: xml.Name{Space: "xmlns", Local: prefix}, Value: b.uri})
	}
	return b.uri, nil
}

// find returns the index of prefix's innermost binding, or -1.
func (s *nsScope) find(prefix string) int {
	if prefix == "" {
		return s.def
	}
	if len(s.binds) <= linearLookup {
		for i := len(s.binds) - 1; i >= 0; i-- {
			if s.binds[i].prefix == prefix {
				return i
			}
		}
		return -1
	}
	if s.index == nil {
		s.index = make(map[string]int, len(s.binds))
		for i := range s.binds {
			s.binds[i].shadows = s.indexed(s.binds[i].prefix)
			s.index[s.binds[i].prefix] = i
		}
	}
	return s.indexed(prefix)
}

func (s *nsScope) indexed(prefix string) int {
	if i, ok := s.index[prefix]; ok {
		return i
	}
	return -1
}

func (s *nsScope) push(prefix, uri string) {
	b := nsBinding{prefix: prefix, uri: uri, shadows: -1}
	switch {
	case prefix == "":
		b.shadows = s.def
		s.def = len(s.binds)
		if s.index != nil {
			s.index[prefix] = len(s.binds)
		}
	case s.index != nil:
		b.shadows = s.indexed(prefix)
		s.index[prefix] = len(s.binds)
	}
	s.binds = append(s.binds, b)
}

// pop drops the bindings from n on.
func (s *nsScope) pop(n int) {
	for s.def >= n {
		s.def = s.binds[s.def].shadows
	}
	if s.index != nil {
		if n <= linearLookup {
			s.index = nil
		} else {
			for i := len(s.binds) - 1; i >= n; i-- {
				if sh := s.binds[i].shadows; sh >= 0 {
					s.index[s.binds[i].prefix] = sh
				} else {
					delete(s.index, s.binds[i].prefix)
				}
			}
		}
	}
	s.binds = s.binds[:n]
}

// duplicateKey finds two equal expanded names.
func duplicateKey(keys []attrKey) (attrKey, bool) {
	if len(keys) <= linearLookup {
		for i := 1; i < len(keys); i++ {
			for j := 0; j < i; j++ {
				if keys[i] == keys[j] {
					return keys[i], true
				}
			}
		}
		return attrKey{}, false
	}
	seen := make(map[attrKey]struct{}, len(keys))
	for _, k := range keys {
		if _, ok := seen[k]; ok {
			return k, true
		}
		seen[k] = struct{}{}
	}
	return attrKey{}, false
}

// checkQName checks that a raw name is a QName (Namespaces in XML §4):
// encoding/xml checked it is an XML Name with at most one colon, but
// lets the colon open or end it, and the part after it start with a
// character only allowed inside names.
func checkQName(n xml.Name) error {
	// encoding/xml leaves a colon in the local part only when it opens or
	// ends the name.
	if l := n.Local; n.Space == "" && l != "" && l[0] != ':' && l[len(l)-1] != ':' {
		return nil
	}
	return checkPrefixedName(n)
}

func checkPrefixedName(n xml.Name) error {
	if n.Local == "" || n.Space == "" {
		return errNotWellFormed("not a qualified name: " + n.Space + ":" + n.Local)
	}
	c := n.Local[0]
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		return nil
	case c < utf8.RuneSelf:
		return errNotWellFormed("not a qualified name: " + n.Space + ":" + n.Local)
	}
	if !isNameStart(n.Local) {
		return errNotWellFormed("not a qualified name: " + n.Space + ":" + n.Local)
	}
	return nil
}

// isNameStart reports whether the first character of s may start an XML
// name. Non-ASCII names are rare: encoding/xml's own name tables (the same
// as expat's) answer, through a one-element document.
func isNameStart(s string) bool {
	r, size := utf8.DecodeRuneInString(s)
	d := xml.NewDecoder(bytes.NewReader(NewBuilder(nil).Start(s[:size]).End().Bytes()))
	d.Strict = true
	_, err := d.RawToken()
	return err == nil && r != utf8.RuneError
}

// checkTagSyntax checks the raw bytes of a start tag that encoding/xml
// parsed into t for what it lets through: attributes not separated by
// white space, and character references to surrogates. encoding/xml gives
// the attributes in order, so the walk knows where each name ends and
// only searches for the end of each value.
func checkTagSyntax(tag []byte, t xml.StartElement) error {
	i := 1 + qnameLen(t.Name)
	for k := range t.Attr {
		// (encoding/xml sees to the white space after the element name.)
		if i >= len(tag) || k > 0 && !isSpaceByte(tag[i]) {
			return errNotWellFormed("no white space between attributes")
		}
		i = skipSpaceAt(tag, i) + qnameLen(t.Attr[k].Name)
		i = skipSpaceAt(tag, i)
		if i >= len(tag) || tag[i] != '=' {
			return errNotWellFormed("lost track of a start tag")
		}
		i = skipSpaceAt(tag, i+1)
		if i >= len(tag) {
			return errNotWellFormed("lost track of a start tag")
		}
		end := bytes.IndexByte(tag[i+1:], tag[i])
		if end < 0 {
			return errNotWellFormed("lost track of a start tag")
		}
		i += end + 2
	}
	if len(t.Attr) == 0 {
		return nil // no values: no references
	}
	return checkCharRefs(tag)
}

func qnameLen(n xml.Name) int {
	if n.Space == "" {
		return len(n.Local)
	}
	return len(n.Space) + 1 + len(n.Local)
}

func skipSpaceAt(b []byte, i int) int {
	for i < len(b) && isSpaceByte(b[i]) {
		i++
	}
	return i
}

func isSpaceByte(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// checkCharRefs checks every character reference in raw text (not a CDATA
// section) or a start tag refers to a character XML allows. encoding/xml
// checked their syntax and every other character.
func checkCharRefs(b []byte) error {
	for {
		i := bytes.IndexByte(b, '&')
		if i < 0 {
			return nil
		}
		b = b[i+1:]
		if len(b) == 0 || b[0] != '#' {
			continue
		}
		end := bytes.IndexByte(b, ';')
		if end < 0 {
			return errNotWellFormed("unterminated character reference")
		}
		ref := string(b[1:end])
		base := 10
		if strings.HasPrefix(ref, "x") {
			ref, base = ref[1:], 16
		}
		n, err := strconv.ParseUint(ref, base, 32)
		if err != nil || !isXMLChar(rune(n)) {
			return errNotWellFormed("character reference &#" + string(b[1:end]) + "; to a character XML does not allow")
		}
		b = b[end+1:]
	}
}

// isURIReference reports whether a namespace name is made of the
// characters of RFC 3986 URI references only, percent-encoding included
// (Namespaces in XML §2.2: a namespace name is a URI reference). This is
// not pedantry: expat refuses a namespace name that holds the character
// its user splits expanded names on, if that is no URI character, and
// clients pick ' ' (nbxmpp), '}' (ElementTree, so slixmpp) or the byte
// 0xA1 (libstrophe, so any non-ASCII name): any of these would cut the
// receiver off.
func isURIReference(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~:/?#[]@!$&'()*+,;=", c) >= 0:
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// isXMLChar reports whether r is a Char of XML 1.0 §2.2.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// refuseCharset refuses every encoding but UTF-8 when encoding/xml asks
// for one.
func refuseCharset(string, io.Reader) (io.Reader, error) { return nil, ErrUnsupportedEncoding }

// CheckXMLDecl checks an XML declaration, "<?xml" to "?>" (XML 1.0 §2.8):
// version 1.0, encoding UTF-8 if any, standalone yes or no, in that order.
// Another version is unsupported-version, another encoding
// unsupported-encoding (RFC 6120 §11.6), anything else not well-formed.
func CheckXMLDecl(decl []byte) error {
	s, ok := strings.CutPrefix(string(decl), "<?xml")
	if !ok {
		return errNotWellFormed("not an XML declaration")
	}
	if s, ok = strings.CutSuffix(s, "?>"); !ok {
		return errNotWellFormed("unterminated XML declaration")
	}
	type pseudoAttr struct{ name, value string }
	var attrs []pseudoAttr
	for {
		rest := strings.TrimLeft(s, " \t\r\n")
		if rest == "" {
			break
		}
		if len(rest) == len(s) {
			return errNotWellFormed("no white space in the XML declaration")
		}
		name, after, ok := strings.Cut(rest, "=")
		if !ok {
			return errNotWellFormed("malformed XML declaration")
		}
		name = strings.TrimRight(name, " \t\r\n")
		after = strings.TrimLeft(after, " \t\r\n")
		if after == "" || after[0] != '"' && after[0] != '\'' {
			return errNotWellFormed("malformed XML declaration")
		}
		end := strings.IndexByte(after[1:], after[0])
		if end < 0 {
			return errNotWellFormed("malformed XML declaration")
		}
		attrs = append(attrs, pseudoAttr{name, after[1 : 1+end]})
		s = after[2+end:]
	}
	if len(attrs) == 0 || attrs[0].name != "version" {
		return errNotWellFormed("no version in the XML declaration")
	}
	if attrs[0].value != "1.0" {
		return ErrUnsupportedVersion
	}
	attrs = attrs[1:]
	if len(attrs) > 0 && attrs[0].name == "encoding" {
		if !isEncName(attrs[0].value) {
			return errNotWellFormed("malformed encoding name")
		}
		if !strings.EqualFold(attrs[0].value, "UTF-8") {
			return ErrUnsupportedEncoding
		}
		attrs = attrs[1:]
	}
	if len(attrs) > 0 && attrs[0].name == "standalone" && (attrs[0].value == "yes" || attrs[0].value == "no") {
		attrs = attrs[1:]
	}
	if len(attrs) > 0 {
		return errNotWellFormed("unexpected " + attrs[0].name + " in the XML declaration")
	}
	return nil
}

// isEncName checks the EncName production of XML 1.0 §4.3.3.
func isEncName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case i > 0 && (c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return s != ""
}

// headerNS is the namespace of the stream header's name.
func (s *nsScope) headerNS() string {
	if s.end.Space == "" {
		return s.uriAt(s.find(""))
	}
	return s.uriAt(s.find(s.end.Space))
}

// defaultNS is the default namespace the stream header declares.
func (s *nsScope) defaultNS() string { return s.uriAt(s.find("")) }

func (s *nsScope) uriAt(i int) string {
	if i < 0 {
		return ""
	}
	return s.binds[i].uri
}
