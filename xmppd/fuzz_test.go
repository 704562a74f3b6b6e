package xmppd

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// pipeConn feeds fixed bytes to a wireReader as if from a peer.
type pipeConn struct {
	net.Conn
	r io.Reader
}

func (p pipeConn) Read(b []byte) (int, error)        { return p.r.Read(b) }
func (p pipeConn) SetReadDeadline(t time.Time) error { return nil }

const fuzzHeader = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`

// readAll reads every top-level element after the header.
func readAll(data []byte, max int) ([]*Stanza, error) {
	w := newWireReader(pipeConn{r: io.MultiReader(bytes.NewReader([]byte(fuzzHeader)), bytes.NewReader(data))}, max)
	dec, _, err := readStreamHeader(w)
	if err != nil {
		return nil, err
	}
	var out []*Stanza
	for i := 0; i < 100; i++ {
		el, err := readElement(dec, w)
		if err != nil {
			return out, err
		}
		st, err := stanzaFromElement(el, NSClient)
		if err != nil {
			return out, err
		}
		out = append(out, st)
	}
	return out, nil
}

// FuzzReadElement checks the raw-capture parser: whatever a peer sends, it
// never panics, and a stanza it accepts re-serialises to XML that parses
// back to the same stanza with the very same children bytes.
func FuzzReadElement(f *testing.F) {
	for _, s := range []string{
		`<message to='a@b' id='1' type='chat'><body>hi &amp; bye</body></message>`,
		`<presence/>`,
		`<iq type='get' id='x'><query xmlns='jabber:iq:roster'/></iq>`,
		`<message xmlns:x='urn:x' x:attr='v'><x:y>z</x:y></message>`,
		`<message><body><![CDATA[<not markup>]]></body></message>`,
		`<message><body>unclosed</message>`,
		`<message><!-- c --></message>`,
		`   <presence type='unavailable'><status>bye</status></presence>  `,
		`<message to='&quot;@x'/>`,
		`<foo/>`,
		`</stream:stream>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		stanzas, _ := readAll(data, 1<<16)
		for _, st := range stanzas {
			out := st.Bytes()
			again, err := readAll(out, 1<<20)
			if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("re-serialised stanza does not parse: %v\n%q\nfrom %q", err, out, data)
			}
			if len(again) != 1 {
				t.Fatalf("re-serialised %q parsed into %d stanzas", out, len(again))
			}
			b := again[0]
			if b.Kind != st.Kind || b.ID != st.ID || b.Type != st.Type || !b.To.Equal(st.To) || !bytes.Equal(b.Inner, st.Inner) || b.Payload != st.Payload {
				t.Fatalf("round trip changed the stanza:\n%q\n%q", st.Bytes(), b.Bytes())
			}
		}
	})
}

func TestReadElementKeepsRawChildren(t *testing.T) {
	in := `<message to='+821012345678@localhost' id='m1' type='chat' xml:lang='ko'><body>a &lt; b</body><x:y xmlns:x='urn:x'/></message><presence/>`
	got, err := readAll([]byte(in), 1<<16)
	if len(got) != 2 || !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %d stanzas, err %v", len(got), err)
	}
	m := got[0]
	if string(m.Inner) != `<body>a &lt; b</body><x:y xmlns:x='urn:x'/>` {
		t.Fatalf("inner %q", m.Inner)
	}
	if m.Payload != (xml.Name{Space: NSClient, Local: "body"}) || m.Lang != "ko" {
		t.Fatalf("payload %v lang %q", m.Payload, m.Lang)
	}
	want := `<message to="+821012345678@localhost" id="m1" type="chat" xml:lang="ko"><body>a &lt; b</body><x:y xmlns:x='urn:x'/></message>`
	if string(m.Bytes()) != want {
		t.Fatalf("bytes\n%s\nwant\n%s", m.Bytes(), want)
	}
	if got[1].Kind != KindPresence || got[1].Inner != nil {
		t.Fatalf("presence %+v", got[1])
	}
}

func TestStanzaSizeLimit(t *testing.T) {
	big := `<message><body>` + string(bytes.Repeat([]byte("a"), 5000)) + `</body></message>`
	if _, err := readAll([]byte(big), 4096); !errors.Is(err, errStanzaTooBig) {
		t.Fatalf("err = %v", err)
	}
	deep := bytes.Repeat([]byte("<a>"), 100)
	if _, err := readAll(append([]byte("<message>"), deep...), 1<<16); !errors.Is(err, errTooDeep) {
		t.Fatalf("err = %v", err)
	}
}

// FuzzWellFormed is differential: whatever the reader accepts, expat
// (namespace-aware, strict) accepts too: the sender's stream up to each
// element the reader accepted, and each stanza as the server forwards it,
// in every kind of stream it may be written to. The input is the whole
// stream from its first byte, so that the XML declaration and the header's
// declarations vary too.
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
		w := newWireReader(pipeConn{r: bytes.NewReader(data)}, 1<<16)
		dec, header, err := readStreamHeader(w)
		if err != nil {
			return
		}
		end := "</" + qname(header.Name) + ">"
		for i := 0; i < 20; i++ {
			el, err := readElement(dec, w)
			if err != nil {
				return
			}
			n := dec.InputOffset()
			if n < 0 || n > int64(len(data)) {
				t.Fatalf("element ends at %d of %d bytes", n, len(data))
			}
			// White space before the XML declaration is tolerated (it is
			// not forwarded anywhere); expat refuses it.
			sent := bytes.TrimLeft(data[:n], " \t\r\n")
			if err := expatCheck(t, append(append([]byte(nil), sent...), end...)); err != nil {
				t.Fatalf("the reader accepted <%s> in\n%q\nwhich is not well-formed: %v", qname(el.start.Name), sent, err)
			}
			if st, err := stanzaFromElement(el, NSClient); err == nil {
				checkForwardable(t, st, data)
			}
		}
	})
}

// BenchmarkReadMessage measures the reader alone on the message of
// BenchmarkRouteMessage: read, checked and parsed into a Stanza.
func BenchmarkReadMessage(b *testing.B) {
	msg := []byte(`<message type='chat' to='+821033334444@localhost/b'><body>Hello, this is a message of about a hundred bytes on the wire.</body></message>`)
	data := append([]byte(fuzzHeader), bytes.Repeat(msg, b.N)...)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	w := newWireReader(pipeConn{r: bytes.NewReader(data)}, 1<<16)
	dec, _, err := readStreamHeader(w)
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		el, err := readElement(dec, w)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := stanzaFromElement(el, NSClient); err != nil {
			b.Fatal(err)
		}
	}
}

// chunkReader returns at most n bytes a call, n cycling from 1 to 13, so
// that the read buffer is refilled everywhere inside tokens.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	c.n = c.n%13 + 1
	return c.r.Read(p[:min(len(p), c.n)])
}

// The raw capture copies the read buffer in runs: it must be exact
// whatever the refills, and across buffers bigger than the read buffer.
func TestCaptureAcrossRefills(t *testing.T) {
	inner := `<body>` + strings.Repeat(`a &lt; b &#x1F600; `, 300) + `</body><x:y xmlns:x='urn:x' x:a="1"><![CDATA[<&>]]></x:y>`
	stream := fuzzHeader + ` <message to='b@localhost' id='1'>` + inner + `</message>  <presence/><message>` + inner + `</message>`
	for _, r := range []io.Reader{strings.NewReader(stream), iotest.OneByteReader(strings.NewReader(stream)), &chunkReader{r: strings.NewReader(stream)}} {
		w := newWireReader(pipeConn{r: r}, 1<<16)
		dec, _, err := readStreamHeader(w)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []string{inner, "", inner} {
			el, err := readElement(dec, w)
			if err != nil {
				t.Fatalf("%T: element %d: %v", r, i, err)
			}
			if string(el.inner) != want {
				t.Fatalf("%T: element %d: inner\n%q\nwant\n%q", r, i, el.inner, want)
			}
		}
	}
}
