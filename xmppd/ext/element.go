package ext

import (
	"encoding/xml"
	"errors"
	"io"
	"strconv"

	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// nsXML is the namespace the decoder gives the reserved "xml" prefix.
const nsXML = "http://www.w3.org/XML/1998/namespace"

// maxDepth bounds the nesting of elements the modules store, so that a
// stored blob never holds pathological structures.
const maxDepth = 64

var (
	errTooLarge = errors.New("element too large")
	errTooDeep  = errors.New("element nested too deeply")
)

// openPayload returns a token reader positioned just after the start of the
// iq's first child element, and that start element.
func openPayload(iq *router.Stanza) (xml.TokenReader, xml.StartElement, error) {
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

// nextChild reads up to the next child element of the element whose start
// was last read at this level, skipping text, comments and processing
// instructions. It returns ok=false at the parent's end element.
func nextChild(r xml.TokenReader) (start xml.StartElement, ok bool, err error) {
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

// skipElement consumes the rest of the element whose start was just read.
func skipElement(r xml.TokenReader) error {
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

// attr returns the value of the unqualified attribute local of start.
func attr(start xml.StartElement, local string) (string, bool) {
	for _, a := range start.Attr {
		if a.Name.Space == "" && a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

// elementWriter re-serialises the tokens of one element (as resolved by
// encoding/xml: names carry namespace URIs, not prefixes) into standalone
// XML: the root declares its default namespace, children declare theirs
// only where it changes, namespaced attributes get prefixes of our own,
// comments and processing instructions are dropped. What comes out is
// well-formed whatever prefixes the client used, so it can be stored and
// later embedded in any stanza.
type elementWriter struct {
	b     []byte
	max   int      // maximum output length; 0 means no limit
	names []string // open elements' local names
	nss   []string // open elements' default namespaces
	open  bool     // the last start tag is not yet closed with '>'
	err   error
}

func newElementWriter(max int) *elementWriter { return &elementWriter{max: max} }

func (w *elementWriter) check() {
	if w.err == nil && w.max > 0 && len(w.b) > w.max {
		w.err = errTooLarge
	}
}

func (w *elementWriter) closeTag() {
	if w.open {
		w.b = append(w.b, '>')
		w.open = false
	}
}

// start writes a start tag.
func (w *elementWriter) start(t xml.StartElement) {
	if w.err != nil {
		return
	}
	if len(w.names) >= maxDepth {
		w.err = errTooDeep
		return
	}
	w.closeTag()
	w.b = append(w.b, '<')
	w.b = append(w.b, t.Name.Local...)
	if len(w.nss) == 0 || w.nss[len(w.nss)-1] != t.Name.Space {
		w.b = append(w.b, ` xmlns="`...)
		w.b = wire.AppendEscaped(w.b, t.Name.Space)
		w.b = append(w.b, '"')
	}
	gen := 0
	for _, a := range t.Attr {
		switch {
		case a.Name.Space == "xmlns", a.Name.Space == "" && a.Name.Local == "xmlns":
			// Declarations are rewritten by us.
			continue
		case a.Name.Space == "":
			w.b = append(w.b, ' ')
			w.b = append(w.b, a.Name.Local...)
		case a.Name.Space == nsXML || a.Name.Space == "xml":
			w.b = append(w.b, " xml:"...)
			w.b = append(w.b, a.Name.Local...)
		default:
			p := "ns" + strconv.Itoa(gen)
			gen++
			w.b = append(w.b, " xmlns:"...)
			w.b = append(w.b, p...)
			w.b = append(w.b, `="`...)
			w.b = wire.AppendEscaped(w.b, a.Name.Space)
			w.b = append(w.b, `" `...)
			w.b = append(w.b, p...)
			w.b = append(w.b, ':')
			w.b = append(w.b, a.Name.Local...)
		}
		w.b = append(w.b, `="`...)
		w.b = wire.AppendEscaped(w.b, a.Value)
		w.b = append(w.b, '"')
	}
	w.names = append(w.names, t.Name.Local)
	w.nss = append(w.nss, t.Name.Space)
	w.open = true
	w.check()
}

// end closes the innermost open element.
func (w *elementWriter) end() {
	if w.err != nil || len(w.names) == 0 {
		return
	}
	name := w.names[len(w.names)-1]
	w.names = w.names[:len(w.names)-1]
	w.nss = w.nss[:len(w.nss)-1]
	if w.open {
		w.b = append(w.b, "/>"...)
		w.open = false
	} else {
		w.b = append(w.b, "</"...)
		w.b = append(w.b, name...)
		w.b = append(w.b, '>')
	}
	w.check()
}

// text writes escaped character data.
func (w *elementWriter) text(s []byte) {
	if w.err != nil || len(s) == 0 || len(w.names) == 0 {
		return
	}
	w.closeTag()
	w.b = wire.AppendEscaped(w.b, string(s))
	w.check()
}

// copyRest copies tokens from r until the element opened last (at the
// current depth) is closed.
func (w *elementWriter) copyRest(r xml.TokenReader) error {
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
			w.start(t)
		case xml.EndElement:
			depth--
			w.end()
		case xml.CharData:
			w.text(t)
		}
		if w.err != nil {
			return w.err
		}
	}
	return nil
}

// copyElement re-serialises the element whose start was just read from r,
// consuming it up to its end. The result is at most max bytes.
func copyElement(r xml.TokenReader, start xml.StartElement, max int) ([]byte, error) {
	w := newElementWriter(max)
	w.start(start)
	if w.err != nil {
		return nil, w.err
	}
	if err := w.copyRest(r); err != nil {
		return nil, err
	}
	return w.b, nil
}

// emptyElement returns <local xmlns="space"/>.
func emptyElement(name xml.Name) []byte {
	w := newElementWriter(0)
	w.start(xml.StartElement{Name: name})
	w.end()
	return w.b
}
