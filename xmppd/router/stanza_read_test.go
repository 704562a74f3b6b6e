package router_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"

	"dialtone/xmppd/internal/wellformedtest"
	"dialtone/xmppd/router"
	"dialtone/xmppd/websocket"
	"dialtone/xmppd/wire"
)

const fuzzHeader = wellformedtest.Header

// readStream reads the stanzas of a whole stream, from its first byte.
func readStream(stream io.Reader, max int) ([]*router.Stanza, error) {
	w := wire.NewReader(wellformedtest.Conn{R: stream}, max)
	if _, err := w.ReadHeader(); err != nil {
		return nil, err
	}
	var out []*router.Stanza
	for i := 0; i < 100; i++ {
		el, err := w.ReadElement()
		if err != nil {
			return out, err
		}
		st, err := router.Parse(el, router.NSClient, nil)
		if err != nil {
			return out, err
		}
		out = append(out, st)
	}
	return out, nil
}

// readAll reads every stanza after the header.
func readAll(data []byte, max int) ([]*router.Stanza, error) {
	return readStream(io.MultiReader(strings.NewReader(fuzzHeader), bytes.NewReader(data)), max)
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

// FuzzForwarded: every stanza the reader accepts is namespace-well-formed
// (by expat) where the server writes it: in a c2s stream, in an s2s stream,
// alone in a WebSocket frame. The input is the whole stream from its first
// byte, so that the header's declarations, which forwarded stanzas carry,
// vary too.
func FuzzForwarded(f *testing.F) {
	header := `<?xml version='1.0'?>` + fuzzHeader
	for _, s := range []string{
		header + `<message to='a@b' id='1' type='chat'><body>hi &amp; bye &#x1F600;</body></message>`,
		header + `<message xmlns:x='urn:x' x:attr='v'><x:y x:z='1'>z</x:y></message>`,
		header + `<message xml:lang='en'><body xml:lang='ko' xmlns=''>x</body></message>`,
		header + `<message><stream:x/></message>`,
		`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:h='urn:h' version='2.0'><message h:a='1'><h:x/></message>`,
		`<s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams' xmlns:p='urn:p'><message><p:x xmlns:p='urn:q'/><p:y/></message></s:stream>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		stanzas, _ := readStream(bytes.NewReader(data), 1<<16)
		for _, st := range stanzas {
			checkForwardable(t, st, data)
		}
	})
}

func TestStanzaKeepsRawChildren(t *testing.T) {
	in := `<message to='+821012345678@localhost' id='m1' type='chat' xml:lang='ko'><body>a &lt; b</body><x:y xmlns:x='urn:x'/></message><presence/>`
	got, err := readAll([]byte(in), 1<<16)
	if len(got) != 2 || !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %d stanzas, err %v", len(got), err)
	}
	m := got[0]
	if m.Payload != (xml.Name{Space: router.NSClient, Local: "body"}) || m.Lang != "ko" {
		t.Fatalf("payload %v lang %q", m.Payload, m.Lang)
	}
	want := `<message to="+821012345678@localhost" id="m1" type="chat" xml:lang="ko"><body>a &lt; b</body><x:y xmlns:x='urn:x'/></message>`
	if string(m.Bytes()) != want {
		t.Fatalf("bytes\n%s\nwant\n%s", m.Bytes(), want)
	}
	if got[1].Kind != router.KindPresence || got[1].Inner != nil {
		t.Fatalf("presence %+v", got[1])
	}
	// A hook that adds a child: the serialisation cached above is
	// dropped, the rest of the stanza written as it was.
	m.SetInner(append(append([]byte(nil), m.Inner...), "<z xmlns='urn:z'/>"...))
	want = `<message to="+821012345678@localhost" id="m1" type="chat" xml:lang="ko"><body>a &lt; b</body><x:y xmlns:x='urn:x'/><z xmlns='urn:z'/></message>`
	if string(m.Bytes()) != want {
		t.Fatalf("after SetInner\n%s\nwant\n%s", m.Bytes(), want)
	}
}

// headerPrefixStream declares a prefix only on the sender's stream header.
const headerPrefixStream = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:h='urn:h' to='localhost' version='1.0'>`

// What the reader accepts is forwarded well-formed, with the header's
// declarations it uses carried onto the stanza.
func TestWellFormedForwarded(t *testing.T) {
	for _, tc := range []struct{ stream, want string }{
		{fuzzHeader + `<message xml:lang='en'><x xmlns='urn:x' xml:lang='ko'/></message>`, `<message xml:lang="en"><x xmlns='urn:x' xml:lang='ko'/></message>`},
		{fuzzHeader + `<message><x xmlns:xml='http://www.w3.org/XML/1998/namespace' xmlns='urn:x'/></message>`, ``},
		{fuzzHeader + `<message><x xmlns='urn:x'><y xmlns=''/></x></message>`, ``},
		{fuzzHeader + `<message><p:éa xmlns:p='urn:p' p:ñ='1'/></message>`, ``},
		{fuzzHeader + `<message><x xmlns:p='urn:p' p:a='1' a='1'><p:y/></x><p:z xmlns:p='urn:q'/></message>`, ``},
		{fuzzHeader + `<message><body>&#x1F600; &#55295; &#xE000; &#xFFFD; <![CDATA[&#xD800;]]></body></message>`, ``},
		{headerPrefixStream + `<message h:a='1'><h:x/><stream:y/></message>`, `<message xmlns:h="urn:h" xmlns:stream="http://etherx.jabber.org/streams" h:a="1"><h:x/><stream:y/></message>`},
		{headerPrefixStream + `<message><h:x xmlns:h='urn:other'/></message>`, `<message><h:x xmlns:h='urn:other'/></message>`},
	} {
		got, err := readStream(strings.NewReader(tc.stream), 1<<16)
		if len(got) != 1 {
			t.Errorf("%q: %v", tc.stream, err)
			continue
		}
		st := got[0]
		if tc.want != "" && string(st.Bytes()) != tc.want {
			t.Errorf("%q forwarded as\n%s\nwant\n%s", tc.stream, st.Bytes(), tc.want)
		}
		checkForwardable(t, st, []byte(tc.stream))
	}
}

// BenchmarkReadMessage measures the reader alone on the message of
// BenchmarkRouteMessage: read, checked and parsed into a Stanza.
func BenchmarkReadMessage(b *testing.B) {
	msg := []byte(`<message type='chat' to='+821033334444@localhost/b'><body>Hello, this is a message of about a hundred bytes on the wire.</body></message>`)
	data := append([]byte(fuzzHeader), bytes.Repeat(msg, b.N)...)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	w := wire.NewReader(wellformedtest.Conn{R: bytes.NewReader(data)}, 1<<16)
	if _, err := w.ReadHeader(); err != nil {
		b.Fatal(err)
	}
	for range b.N {
		el, err := w.ReadElement()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := router.Parse(el, router.NSClient, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// Receivers' stream headers, as the server writes them.
const (
	c2sReceiverHeader = `<?xml version='1.0'?><stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams" id="x" from="localhost" version="1.0" xml:lang="en">`
	s2sReceiverHeader = `<?xml version='1.0'?><stream:stream xmlns="jabber:server" xmlns:stream="http://etherx.jabber.org/streams" xmlns:db="jabber:server:dialback" from="localhost" version="1.0" xml:lang="en">`
)

// checkForwardable fails the test unless a stanza the reader accepted is
// namespace-well-formed everywhere the server may write it: in a c2s
// stream, an s2s stream, and alone in a WebSocket frame.
func checkForwardable(t testing.TB, st *router.Stanza, from []byte) {
	t.Helper()
	b := st.Bytes()
	for _, doc := range []string{
		c2sReceiverHeader + string(b) + `</stream:stream>`,
		s2sReceiverHeader + string(b) + `</stream:stream>`,
		string(websocket.FrameElement(b)),
	} {
		if err := wellformedtest.Expat(t, []byte(doc)); err != nil {
			t.Fatalf("the reader accepted %q and forwards\n%s\nwhich is not well-formed: %v", from, doc, err)
		}
	}
}

// SetInner changes the children a stanza is written with, after Bytes
// was cached, and leaves a Clone made before it as it was.
func TestStanzaSetInner(t *testing.T) {
	got, _ := readAll([]byte(`<message to='+821012345678@localhost' id='m1' type='chat'><body>hi</body></message>`), 1<<16)
	if len(got) != 1 {
		t.Fatalf("got %d stanzas", len(got))
	}
	m := got[0]
	before := string(m.Bytes())
	c := m.Clone()
	m.SetInner(append(m.Inner[:len(m.Inner):len(m.Inner)], `<stanza-id xmlns="urn:xmpp:sid:0" by="x" id="1"/>`...))
	want := `<message to="+821012345678@localhost" id="m1" type="chat"><body>hi</body><stanza-id xmlns="urn:xmpp:sid:0" by="x" id="1"/></message>`
	if string(m.Bytes()) != want {
		t.Fatalf("bytes\n%s\nwant\n%s", m.Bytes(), want)
	}
	if string(c.Bytes()) != before {
		t.Fatalf("clone changed: %s", c.Bytes())
	}
}

// AppendChild adds a child after Bytes was cached and serialises once:
// the new bytes and Inner agree with SetInner's, an append to Inner does
// not write into the bytes, and a Clone made before is unchanged.
func TestStanzaAppendChild(t *testing.T) {
	for _, in := range []string{
		`<message to='+821012345678@localhost' id='m1' type='chat'><body>hi</body></message>`,
		`<message to='+821012345678@localhost' id='m2'/>`,
	} {
		got, _ := readAll([]byte(in), 1<<16)
		if len(got) != 1 {
			t.Fatalf("got %d stanzas", len(got))
		}
		m := got[0]
		before := string(m.Bytes())
		c := m.Clone()
		child := `<stanza-id xmlns="urn:xmpp:sid:0" by="x" id="1"/>`
		ref := m.Clone()
		ref.SetInner(append(m.Inner[:len(m.Inner):len(m.Inner)], child...))
		wantInner, want := string(ref.Inner), string(ref.Bytes())
		b := m.AppendChild([]byte(child))
		if string(b) != want || string(m.Bytes()) != want {
			t.Fatalf("bytes\n%s\nwant\n%s", b, want)
		}
		if string(m.Inner) != wantInner {
			t.Fatalf("inner %s, want %s", m.Inner, wantInner)
		}
		_ = append(m.Inner, "<x/>"...)
		if string(m.Bytes()) != want {
			t.Fatalf("an append to Inner changed the bytes: %s", m.Bytes())
		}
		if string(c.Bytes()) != before {
			t.Fatalf("clone changed: %s", c.Bytes())
		}
	}
}
