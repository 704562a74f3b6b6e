package wire

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"dialtone/xmppd/internal/wellformedtest"
)

const fuzzHeader = wellformedtest.Header

// readAll reads every top-level element after the header.
func readAll(data []byte, max int) ([]Element, error) {
	w := NewReader(wellformedtest.Conn{R: io.MultiReader(bytes.NewReader([]byte(fuzzHeader)), bytes.NewReader(data))}, max)
	if _, err := w.ReadHeader(); err != nil {
		return nil, err
	}
	var out []Element
	for i := 0; i < 100; i++ {
		el, err := w.ReadElement()
		if err != nil {
			return out, err
		}
		out = append(out, el)
	}
	return out, nil
}

func TestReadElementKeepsRawChildren(t *testing.T) {
	in := `<message to='+821012345678@localhost' id='m1' type='chat' xml:lang='ko'><body>a &lt; b</body><x:y xmlns:x='urn:x'/></message><presence/>`
	got, err := readAll([]byte(in), 1<<16)
	if len(got) != 2 || !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %d elements, err %v", len(got), err)
	}
	m := got[0]
	if string(m.Inner) != `<body>a &lt; b</body><x:y xmlns:x='urn:x'/>` {
		t.Fatalf("inner %q", m.Inner)
	}
	if m.First != (xml.Name{Space: "jabber:client", Local: "body"}) || m.Name != (xml.Name{Space: "jabber:client", Local: "message"}) {
		t.Fatalf("first child %v, name %v", m.First, m.Name)
	}
	if lang, _ := Attr(m.Start, "xml", "lang"); lang != "ko" {
		t.Fatalf("xml:lang %q", lang)
	}
	if got[1].Name.Local != "presence" || got[1].Inner != nil {
		t.Fatalf("presence %+v", got[1])
	}
}

func TestStanzaSizeLimit(t *testing.T) {
	big := `<message><body>` + string(bytes.Repeat([]byte("a"), 5000)) + `</body></message>`
	if _, err := readAll([]byte(big), 4096); !errors.Is(err, ErrStanzaTooBig) {
		t.Fatalf("err = %v", err)
	}
	deep := bytes.Repeat([]byte("<a>"), 100)
	if _, err := readAll(append([]byte("<message>"), deep...), 1<<16); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("err = %v", err)
	}
}

// FuzzWellFormed is differential: whatever the reader accepts, expat
// (namespace-aware, strict) accepts too: the sender's stream up to each
// element the reader accepted. The input is the whole stream from its
// first byte, so that the XML declaration and the header's declarations
// vary too. (That the stanzas made of those elements are well-formed
// where the server forwards them is FuzzForwarded's, in package router.)
func FuzzWellFormed(f *testing.F) {
	header := `<?xml version='1.0'?>` + fuzzHeader
	for _, s := range []string{
		header + `<message to='a@b' id='1' type='chat'><body>hi &amp; bye &#x1F600;</body></message>`,
		header + `<presence/><iq type='get' id='x'><query xmlns='jabber:iq:roster'/></iq>`,
		header + `<message xmlns:x='urn:x' x:attr='v'><x:y x:z='1'>z</x:y></message>`,
		header + `<message><body><![CDATA[<not markup> &#xD800;]]></body></message>`,
		header + `<message xml:lang='en'><body xml:lang='ko' xmlns=''>x</body></message>`,
		header + `<message><stream:x/></message>`,
		header + `<message><x xmlns='urn:x' a='1' a='2'/></message>`,
		header + `<message><p:x/></message>`,
		header + `<message><x xmlns:xml='urn:bad'/></message>`,
		header + `<message><x xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='en'/></message>`,
		header + `<message><x xmlns:p='' /></message>`,
		header + `<message><body>&#xD800;</body></message>`,
		header + `<message><x a='1'b='2'/></message>`,
		header + `<message to='a@b' to='c@d'/>`,
		header + `</foo>`,
		`<?xml version='1.1'?>` + fuzzHeader,
		`<?xml version='1.0' encoding='ISO-8859-1'?>` + fuzzHeader,
		`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:h='urn:h' version='2.0'><message h:a='1'><h:x/></message>`,
		`<s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams' xmlns:p='urn:p'><message><p:x xmlns:p='urn:q'/><p:y/></message></s:stream>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		w := NewReader(wellformedtest.Conn{R: bytes.NewReader(data)}, 1<<16)
		header, err := w.ReadHeader()
		if err != nil {
			return
		}
		end := "</" + QName(header.Name) + ">"
		for i := 0; i < 20; i++ {
			// Not ReadElement: the white space it skips would not count in
			// the decoder's offset, which says where the element ends.
			el, err := readElement(w.dec, w)
			if err != nil {
				return
			}
			n := w.dec.InputOffset()
			if n < 0 || n > int64(len(data)) {
				t.Fatalf("element ends at %d of %d bytes", n, len(data))
			}
			// White space before the XML declaration is tolerated (it is
			// not forwarded anywhere); expat refuses it.
			sent := bytes.TrimLeft(data[:n], " \t\r\n")
			if err := wellformedtest.Expat(t, append(append([]byte(nil), sent...), end...)); err != nil {
				t.Fatalf("the reader accepted <%s> in\n%q\nwhich is not well-formed: %v", QName(el.Start.Name), sent, err)
			}
		}
	})
}

// chunkReader returns at most n bytes a call, n cycling from 1 to 13, so
// that the read buffer is refilled everywhere inside tokens.
type chunkReader struct {
	r io.Reader
	n int
	// each, when set, is the length of every read instead.
	each int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.each > 0 {
		return c.r.Read(p[:min(len(p), c.each)])
	}
	c.n = c.n%13 + 1
	return c.r.Read(p[:min(len(p), c.n)])
}

// The raw capture copies the read buffer in runs: it must be exact
// whatever the refills, and across buffers bigger than the read buffer.
func TestCaptureAcrossRefills(t *testing.T) {
	inner := `<body>` + strings.Repeat(`a &lt; b &#x1F600; `, 300) + `</body><x:y xmlns:x='urn:x' x:a="1"><![CDATA[<&>]]></x:y>`
	stream := fuzzHeader + ` <message to='b@localhost' id='1'>` + inner + `</message>  <presence/><message>` + inner + `</message>`
	for _, r := range []io.Reader{strings.NewReader(stream), iotest.OneByteReader(strings.NewReader(stream)), &chunkReader{r: strings.NewReader(stream)}} {
		w := NewReader(wellformedtest.Conn{R: r}, 1<<16)
		if _, err := w.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		for i, want := range []string{inner, "", inner} {
			el, err := w.ReadElement()
			if err != nil {
				t.Fatalf("%T: element %d: %v", r, i, err)
			}
			if string(el.Inner) != want {
				t.Fatalf("%T: element %d: inner\n%q\nwant\n%q", r, i, el.Inner, want)
			}
		}
	}
}
