// Package payload reads the payload of an iq that modules handle
// themselves, and re-serialises client XML that a module stores (a vCard,
// private data) into standalone, well-formed XML, bounded in size and
// depth, whatever prefixes the client used.
package payload

import (
	"encoding/xml"
	"errors"
	"io"
	"strconv"

	"mellium.im/xmpp/stanza"

	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// nsXML is the namespace the decoder gives the reserved "xml" prefix.
const nsXML = "http://www.w3.org/XML/1998/namespace"

// MaxDepth bounds the nesting of elements the modules store, so that a
// stored blob never holds pathological structures.
const MaxDepth = 64

// Errors of Copy and Writer.
var (
	ErrTooLarge = errors.New("element too large")
	ErrTooDeep  = errors.New("element nested too deeply")
)

// Error maps an error from reading client XML to a stanza error: the size
// and depth limits are policy-violation, anything else bad-request. what
// names the data in the text.
func Error(err error, what string) error {
	switch {
	case errors.Is(err, ErrTooLarge):
		return router.NewError(stanza.Modify, stanza.PolicyViolation, what+" is too large")
	case errors.Is(err, ErrTooDeep):
		return router.NewError(stanza.Modify, stanza.PolicyViolation, what+" is nested too deeply")
	}
	return router.NewError(stanza.Modify, stanza.BadRequest, "")
}

// Open returns a token reader positioned just after the start of the
// iq's first child element, and that start element.
func Open(iq *router.Stanza) (xml.TokenReader, xml.StartElement, error) {
	r := iq.TokenReader()
	depth := 0
	for {
		tok, err := r.Token()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 {
				return r, t.Copy(), nil
			}
		case xml.EndElement:
			depth--
			if depth == 0 {
				return nil, xml.StartElement{}, errors.New("iq has no payload")
			}
		}
	}
}

// NextChild reads up to the next child element of the element whose start
// was last read at this level, skipping text, comments and processing
// instructions. It returns ok=false at the parent's end element.
func NextChild(r xml.TokenReader) (start xml.StartElement, ok bool, err error) {
	for {
		tok, err := r.Token()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return xml.StartElement{}, false, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t.Copy(), true, nil
		case xml.EndElement:
			return xml.StartElement{}, false, nil
		}
	}
}

// Skip consumes the rest of the element whose start was just read.
func Skip(r xml.TokenReader) error {
	depth := 1
	for depth > 0 {
		tok, err := r.Token()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		switch tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
		}
	}
	return nil
}

// Attr returns the value of the unqualified attribute local of start.
func Attr(start xml.StartElement, local string) (string, bool) {
	for _, a := range start.Attr {
		if a.Name.Space == "" && a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

// Writer re-serialises the tokens of one element (as resolved by
// encoding/xml: names carry namespace URIs, not prefixes) into standalone
// XML: the root declares its default namespace, children declare theirs
// only where it changes, namespaced attributes get prefixes of our own,
// comments and processing instructions are dropped. What comes out is
// well-formed whatever prefixes the client used, so it can be stored and
// later embedded in any stanza.
type Writer struct {
	b   wire.Builder
	max int      // maximum output length; 0 means no limit
	nss []string // open elements' default namespaces
	err error
}

// NewWriter returns a Writer whose output may be max bytes long (0: no
// limit).
func NewWriter(max int) *Writer { return &Writer{max: max} }

func (w *Writer) check() {
	if w.err == nil && w.max > 0 && w.b.Len() > w.max {
		w.err = ErrTooLarge
	}
}

// Start writes a start tag.
func (w *Writer) Start(t xml.StartElement) {
	if w.err != nil {
		return
	}
	if len(w.nss) >= MaxDepth {
		w.err = ErrTooDeep
		return
	}
	w.b.Start(t.Name.Local)
	if len(w.nss) == 0 || w.nss[len(w.nss)-1] != t.Name.Space {
		w.b.Attr("xmlns", t.Name.Space)
	}
	gen := 0
	for _, a := range t.Attr {
		switch {
		case a.Name.Space == "xmlns", a.Name.Space == "" && a.Name.Local == "xmlns":
			// Declarations are rewritten by us.
		case a.Name.Space == "":
			w.b.Attr(a.Name.Local, a.Value)
		case a.Name.Space == nsXML || a.Name.Space == "xml":
			w.b.Attr("xml:"+a.Name.Local, a.Value)
		default:
			p := "ns" + strconv.Itoa(gen)
			gen++
			w.b.Attr("xmlns:"+p, a.Name.Space)
			w.b.Attr(p+":"+a.Name.Local, a.Value)
		}
	}
	w.nss = append(w.nss, t.Name.Space)
	w.check()
}

// End closes the innermost open element.
func (w *Writer) End() {
	if w.err != nil || len(w.nss) == 0 {
		return
	}
	w.nss = w.nss[:len(w.nss)-1]
	w.b.End()
	w.check()
}

// Text writes escaped character data.
func (w *Writer) Text(s []byte) {
	if w.err != nil || len(s) == 0 || len(w.nss) == 0 {
		return
	}
	w.b.Text(string(s))
	w.check()
}

// CopyRest copies tokens from r until the element opened last (at the
// current depth) is closed.
func (w *Writer) CopyRest(r xml.TokenReader) error {
	depth := 1
	for depth > 0 {
		tok, err := r.Token()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			w.Start(t)
		case xml.EndElement:
			depth--
			w.End()
		case xml.CharData:
			w.Text(t)
		}
		if w.err != nil {
			return w.err
		}
	}
	return nil
}

// Bytes returns what was written, or the error that stopped it.
func (w *Writer) Bytes() ([]byte, error) {
	if w.err != nil {
		return nil, w.err
	}
	return w.b.Bytes(), nil
}

// Copy re-serialises the element whose start was just read from r,
// consuming it up to its end. The result is at most max bytes.
func Copy(r xml.TokenReader, start xml.StartElement, max int) ([]byte, error) {
	w := NewWriter(max)
	w.Start(start)
	if w.err != nil {
		return nil, w.err
	}
	if err := w.CopyRest(r); err != nil {
		return nil, err
	}
	return w.Bytes()
}

// Empty returns <local xmlns="space"/>.
func Empty(name xml.Name) []byte {
	return wire.NewBuilder(nil).Element(name.Local, name.Space, "").Bytes()
}
