package xmppd

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"testing"
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
	dec := xml.NewDecoder(w)
	dec.Strict = true
	if _, err := dec.RawToken(); err != nil {
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
