package xmppd

import (
	"bufio"
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

	// Deadlines: fixed (negotiation) or idle (after bind). On the first idle
	// expiry onIdle is called (to send a ping) and reading goes on for
	// grace; the second expiry ends the stream.
	deadline time.Time
	idle     time.Duration
	grace    time.Duration
	onIdle   func() bool
	pinged   bool

	rate *byteRate // what the peer may send (rate.go); nil: no limit
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
		if err := w.fill(); err != nil {
			return 0, err
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
	if w.rec {
		w.buf = append(w.buf, b)
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
func (w *wireReader) startCapture(dec *xml.Decoder) {
	w.buf = w.buf[:0]
	if w.off > dec.InputOffset() { // the decoder holds back one byte
		w.buf = append(w.buf, w.last)
	}
	w.rec = true
}

// stopCapture ends recording and returns the bytes consumed by the decoder
// since startCapture, not including its look-ahead byte.
func (w *wireReader) stopCapture(dec *xml.Decoder, base int64) []byte {
	w.rec = false
	n := dec.InputOffset() - base
	if n < 0 || int(n) > len(w.buf) {
		return nil
	}
	return w.buf[:n]
}

// element is one top-level element read from a stream.
type element struct {
	start xml.StartElement // raw names: Space is the prefix
	inner []byte           // raw children (nil when empty)
	first xml.Name         // first child, namespace resolved
}

// readElement reads the next top-level element after the stream header.
// It returns io.EOF when the peer closed the stream with </stream:stream>.
// Whitespace between elements (keep-alives) is skipped.
func readElement(dec *xml.Decoder, w *wireReader) (element, error) {
	var el element
	for {
		w.count = 0
		tok, err := dec.RawToken()
		if err != nil {
			return el, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if !isSpace(t) {
				return el, errNotWellFormed("text outside a stanza")
			}
			continue
		case xml.EndElement:
			return el, io.EOF // the end of the stream element
		case xml.StartElement:
			el.start = t.Copy()
		default:
			return el, errRestrictedXML
		}
		break
	}
	base := dec.InputOffset()
	w.startCapture(dec)
	stack := make([]xml.Name, 1, 8)
	stack[0] = el.start.Name
	for len(stack) > 0 {
		tok, err := dec.RawToken()
		if err != nil {
			w.rec = false
			return el, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) == 1 && el.first.Local == "" {
				el.first = resolveName(t, el.start)
			}
			if len(stack) >= maxDepth {
				w.rec = false
				return el, errTooDeep
			}
			stack = append(stack, t.Name)
		case xml.EndElement:
			if t.Name != stack[len(stack)-1] {
				w.rec = false
				return el, errNotWellFormed("element <" + qname(stack[len(stack)-1]) + "> closed by </" + qname(t.Name) + ">")
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
		default:
			w.rec = false
			return el, errRestrictedXML
		}
	}
	raw := w.stopCapture(dec, base)
	// raw ends with the element's end tag, unless it was self-closing.
	if i := lastIndexByte(raw, '<'); i >= 0 {
		el.inner = raw[:i]
	}
	if len(el.inner) == 0 {
		el.inner = nil
	} else {
		el.inner = append([]byte(nil), el.inner...)
	}
	return el, nil
}

// resolveName returns the namespace-resolved name of a raw child element,
// looking for its prefix's (or the default) declaration on the child itself
// and then on its parent.
func resolveName(child, parent xml.StartElement) xml.Name {
	want := "xmlns"
	if child.Name.Space != "" {
		want = child.Name.Space
	}
	for _, el := range []xml.StartElement{child, parent} {
		for _, a := range el.Attr {
			if (want == "xmlns" && a.Name.Space == "" && a.Name.Local == "xmlns") ||
				(want != "xmlns" && a.Name.Space == "xmlns" && a.Name.Local == want) {
				return xml.Name{Space: a.Value, Local: child.Name.Local}
			}
		}
	}
	if want == "xmlns" {
		return xml.Name{Space: NSClient, Local: child.Name.Local}
	}
	return xml.Name{Space: want, Local: child.Name.Local}
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
	st := &Stanza{Inner: el.inner, Payload: el.first}
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
