package xmppd

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"time"

	"mellium.im/xmpp/jid"
)

// Limits on what a peer may send.
const (
	// DefaultMaxStanzaSize is the largest stanza accepted (RFC 6120 §13.12
	// wants at least 10000 bytes).
	DefaultMaxStanzaSize = 256 << 10
	maxDepth             = 64
)

var (
	errStanzaTooBig  = errors.New("stanza too big")
	errTooDeep       = errors.New("element nesting too deep")
	errIdle          = errors.New("idle timeout")
	errRestrictedXML = errors.New("restricted XML")
)

// wireReader sits between the connection and encoding/xml: it hands the
// decoder bytes one at a time, records the raw bytes of the stanza being
// read (so it can be forwarded without re-encoding), enforces the size
// limit, and keeps read deadlines itself, because encoding/xml makes every
// read error permanent.
type wireReader struct {
	conn  net.Conn
	br    *bufio.Reader
	off   int64 // bytes handed to the decoder so far
	last  byte
	rec   bool
	buf   []byte
	count int // bytes since the last top-level element ended
	max   int

	// The recording copies br's buffer in runs, not byte by byte: seg is
	// the part of it not yet copied to buf, from offset segOff on; lost
	// is set when the recording cannot be trusted.
	seg    []byte
	segOff int64
	lost   bool

	// Deadlines: fixed (negotiation) or idle (after bind). On the first idle
	// expiry onIdle is called (to send a ping) and reading goes on for
	// grace; the second expiry ends the stream.
	deadline time.Time
	idle     time.Duration
	grace    time.Duration
	onIdle   func() bool
	pinged   bool

	rate *byteRate // what the peer may send (rate.go); nil: no limit
	// ns is the namespace context of the stream being read.
	ns nsScope
}

func newWireReader(conn net.Conn, max int) *wireReader {
	return &wireReader{conn: conn, br: bufio.NewReaderSize(readFunc(conn.Read), 1024), max: max}
}

// readFunc adapts a Read method to io.Reader without re-wrapping conn's type.
type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

// reset points the reader at a new connection (after STARTTLS).
func (w *wireReader) reset(conn net.Conn) {
	w.conn = conn
	w.br.Reset(readFunc(conn.Read))
}

// ReadByte implements io.ByteReader for encoding/xml.
func (w *wireReader) ReadByte() (byte, error) {
	if w.br.Buffered() == 0 {
		if w.rec {
			w.sync() // br's buffer is about to be overwritten
		}
		if err := w.fill(); err != nil {
			return 0, err
		}
		if w.rec {
			w.seg, _ = w.br.Peek(w.br.Buffered())
			w.segOff = w.off
		}
	}
	b, err := w.br.ReadByte()
	if err != nil {
		return 0, err
	}
	w.off++
	w.last = b
	w.count++
	if w.count > w.max {
		return 0, errStanzaTooBig
	}
	return b, nil
}

// fill waits for more input under the current deadline policy.
func (w *wireReader) fill() error {
	for {
		var dl time.Time
		switch {
		case !w.deadline.IsZero():
			dl = w.deadline
		case w.idle > 0 && w.pinged:
			dl = time.Now().Add(w.grace)
		case w.idle > 0:
			dl = time.Now().Add(w.idle)
		}
		if err := w.conn.SetReadDeadline(dl); err != nil {
			return err
		}
		_, err := w.br.Peek(1)
		if err == nil {
			w.pinged = false
			w.rate.take(w.br.Buffered())
			return nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && w.deadline.IsZero() && w.idle > 0 && !w.pinged && w.onIdle != nil {
			w.pinged = true
			if w.onIdle() {
				continue
			}
		}
		if errors.As(err, &ne) && ne.Timeout() {
			return errIdle
		}
		return err
	}
}

// skipSpace waits for input and drops whitespace (keep-alives) before the
// next top-level element. Only call it between elements: the bytes it
// drops never reach the decoder.
func (w *wireReader) skipSpace() error {
	for {
		if w.br.Buffered() == 0 {
			if err := w.fill(); err != nil {
				return err
			}
		}
		b, err := w.br.Peek(1)
		if err != nil {
			return err
		}
		switch b[0] {
		case ' ', '\t', '\r', '\n':
			w.br.ReadByte()
		default:
			return nil
		}
	}
}

// startCapture begins recording raw bytes at the decoder's position.
// Recording copies from the read buffer in runs (when the decoder's bytes
// are needed, and before the buffer is refilled), not byte by byte.
func (w *wireReader) startCapture(dec *xml.Decoder) {
	w.buf = w.buf[:0]
	w.lost = false
	if w.off > dec.InputOffset() { // the decoder holds back one byte
		w.buf = append(w.buf, w.last)
	}
	w.rec = true
	w.seg, _ = w.br.Peek(w.br.Buffered())
	w.segOff = w.off
}

// sync appends to buf the bytes of seg the decoder has read since.
func (w *wireReader) sync() {
	n := w.off - w.segOff
	if n < 0 || n > int64(len(w.seg)) {
		// Only ReadByte takes bytes from br while recording, and it syncs
		// before a refill: this cannot happen, but never forward a guess.
		w.lost = true
		n = 0
	}
	w.buf = append(w.buf, w.seg[:n]...)
	w.seg = w.seg[n:]
	w.segOff = w.off
}

// captured returns the bytes recorded so far: the decoder's bytes from
// startCapture on, and maybe its look-ahead byte.
func (w *wireReader) captured() ([]byte, error) {
	w.sync()
	if w.lost {
		return nil, errNotWellFormed("lost track of the input")
	}
	return w.buf, nil
}

// stopCapture ends recording and returns the bytes consumed by the decoder
// since startCapture, not including its look-ahead byte.
func (w *wireReader) stopCapture(dec *xml.Decoder, base int64) ([]byte, error) {
	buf, err := w.captured()
	w.rec = false
	w.seg = nil
	n := dec.InputOffset() - base
	if err == nil && (n < 0 || n > int64(len(buf))) {
		err = errNotWellFormed("lost track of the input")
	}
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// element is one top-level element read from a stream.
type element struct {
	start xml.StartElement // raw names: Space is the prefix
	name  xml.Name         // start's name, namespace resolved
	inner []byte           // raw children (nil when empty)
	first xml.Name         // first child, namespace resolved
	// carry are the declarations of the stream header that the element
	// uses: written on its start tag, they keep it namespace-well-formed
	// in any stream it is forwarded to.
	carry []xml.Attr
}

// readStreamHeader starts reading a stream (a new decoder for each
// restart): an optional XML declaration, white space, and the stream
// header, whose declarations become the namespace context of the stream's
// elements. It returns the header for the caller to check what it says.
func readStreamHeader(w *wireReader) (*xml.Decoder, xml.StartElement, error) {
	dec := xml.NewDecoder(w)
	dec.Strict = true
	dec.CharsetReader = refuseCharset
	w.count = 0
	w.off = 0 // offsets are the decoder's
	declared := false
	for {
		w.startCapture(dec)
		base := dec.InputOffset()
		tok, err := dec.RawToken()
		raw, rerr := w.stopCapture(dec, base)
		if err == nil {
			err = rerr
		}
		if err != nil {
			// encoding/xml refuses some declarations with errors that say
			// nothing to a program: ask our own check why.
			if !isSyntaxError(err) && bytes.HasPrefix(raw, []byte("<?xml")) && bytes.HasSuffix(raw, []byte("?>")) {
				if derr := checkXMLDecl(raw); derr != nil {
					return dec, xml.StartElement{}, derr
				}
			}
			return dec, xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target != "xml" {
				return dec, xml.StartElement{}, errRestrictedXML
			}
			if declared {
				return dec, xml.StartElement{}, errNotWellFormed("a second XML declaration")
			}
			declared = true
			if err := checkXMLDecl(raw); err != nil {
				return dec, xml.StartElement{}, err
			}
		case xml.CharData:
			if !isSpace(t) {
				return dec, xml.StartElement{}, errNotWellFormed("text before the stream header")
			}
		case xml.StartElement:
			if err := checkTagSyntax(raw, t); err != nil {
				return dec, t, err
			}
			return dec, t, w.ns.setHeader(t)
		default:
			return dec, xml.StartElement{}, errRestrictedXML
		}
	}
}

// readElement reads the next top-level element after the stream header
// and checks it is namespace-well-formed in the stream's context. It
// returns io.EOF when the peer closed the stream (the end tag of its
// header). Whitespace between elements (keep-alives) is skipped.
func readElement(dec *xml.Decoder, w *wireReader) (element, error) {
	var el element
	ns := &w.ns
	ns.reset()
	// The capture starts before the start tag, whose raw bytes are checked
	// too; base is the decoder offset of the capture's first byte.
	var base int64
	for {
		w.count = 0
		w.startCapture(dec)
		base = dec.InputOffset()
		tok, err := dec.RawToken()
		if err != nil {
			w.rec = false
			return el, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if !isSpace(t) {
				w.rec = false
				return el, errNotWellFormed("text outside a stanza")
			}
			continue
		case xml.EndElement:
			w.rec = false
			if t.Name != ns.end {
				return el, errNotWellFormed("end tag </" + qname(t.Name) + "> outside any element")
			}
			return el, io.EOF // the end of the stream element
		case xml.StartElement:
			el.start = t.Copy()
		default:
			w.rec = false
			return el, errRestrictedXML
		}
		break
	}
	tagEnd := dec.InputOffset() - base
	name, err := checkStart(w, ns, el.start, 0, tagEnd, true)
	if err != nil {
		w.rec = false
		return el, err
	}
	el.name = name
	for ns.depth() > 0 {
		from := dec.InputOffset() - base
		tok, err := dec.RawToken()
		if err != nil {
			w.rec = false
			return el, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if ns.depth() >= maxDepth {
				w.rec = false
				return el, errTooDeep
			}
			name, err := checkStart(w, ns, t, from, dec.InputOffset()-base, ns.depth() == 1 && el.first.Local == "")
			if err != nil {
				w.rec = false
				return el, err
			}
			if ns.depth() == 2 && el.first.Local == "" {
				el.first = name
			}
		case xml.EndElement:
			if !ns.endElement(t.Name) {
				w.rec = false
				return el, errNotWellFormed("element closed by </" + qname(t.Name) + ">")
			}
		case xml.CharData:
			// encoding/xml decodes a reference to a surrogate into
			// U+FFFD: only then are the raw bytes (unless a CDATA
			// section) worth a look.
			if bytes.Contains(t, []byte("\uFFFD")) {
				raw, err := rawToken(w, from, dec.InputOffset()-base)
				if err == nil && !bytes.HasPrefix(raw, []byte("<![CDATA[")) {
					err = checkCharRefs(raw)
				}
				if err != nil {
					w.rec = false
					return el, err
				}
			}
		default:
			w.rec = false
			return el, errRestrictedXML
		}
	}
	raw, err := w.stopCapture(dec, base)
	if err != nil {
		return el, err
	}
	// raw is the start tag, then the children and the end tag unless it
	// was self-closing.
	if int64(len(raw)) > tagEnd {
		if i := lastIndexByte(raw, '<'); int64(i) > tagEnd {
			el.inner = append([]byte(nil), raw[tagEnd:i]...)
		}
	}
	if len(ns.carry) > 0 {
		el.carry = append([]xml.Attr(nil), ns.carry...)
	}
	return el, nil
}

// checkStart checks a start tag, the captured bytes from:to, and opens
// its namespace scope. Its resolved name is returned when asked for.
func checkStart(w *wireReader, ns *nsScope, t xml.StartElement, from, to int64, resolve bool) (xml.Name, error) {
	tag, err := rawToken(w, from, to)
	if err != nil {
		return xml.Name{}, err
	}
	if err := checkTagSyntax(tag, t); err != nil {
		return xml.Name{}, err
	}
	return ns.start(t, resolve)
}

// rawToken returns the captured bytes from:to.
func rawToken(w *wireReader, from, to int64) ([]byte, error) {
	buf, err := w.captured()
	if err != nil {
		return nil, err
	}
	if from < 0 || to > int64(len(buf)) || from > to {
		return nil, errNotWellFormed("lost track of the input")
	}
	return buf[from:to], nil
}

func qname(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

func lastIndexByte(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func isSpace(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

type notWellFormed string

func (e notWellFormed) Error() string { return "not well-formed: " + string(e) }

func errNotWellFormed(s string) error { return notWellFormed(s) }

// attr returns the value of the raw attribute with the given prefix and local name.
func attr(el xml.StartElement, space, local string) (string, bool) {
	for _, a := range el.Attr {
		if a.Name.Space == space && a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

// stanzaFromElement builds a Stanza from a top-level element of a stream
// whose content namespace is ns. It checks the element is a stanza and
// parses (but does not trust) its addresses.
func stanzaFromElement(el element, ns string) (*Stanza, error) {
	return stanzaFrom(el, ns, nil)
}

// stanzaFrom is stanzaFromElement with a resolver for 'to': a session's
// cache of already parsed and normalised addresses.
func stanzaFrom(el element, ns string, resolve func(raw string) addrEntry) (*Stanza, error) {
	st := &Stanza{Inner: el.inner, Payload: el.first, Attrs: el.carry}
	if el.start.Name.Space != "" {
		return nil, errUnsupportedStanza
	}
	switch el.start.Name.Local {
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
	for _, a := range el.start.Attr {
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

// Read implements io.Reader; encoding/xml uses ReadByte, so this is only
// here to satisfy the interface.
func (w *wireReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b, err := w.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = b
	return 1, nil
}

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
