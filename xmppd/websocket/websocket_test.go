package websocket

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"dialtone/xmppd/internal/wellformedtest"
	"dialtone/xmppd/wire"
)

// What the server writes is framed element by element, each made to stand
// alone: stanzas in jabber:client, stream elements with their prefix.
func TestFrameElement(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`<message to="a@localhost" id="x&gt;"><body a='>'><![CDATA[<not>an </element>]]></body></message>`,
			`<message xmlns="jabber:client" to="a@localhost" id="x&gt;"><body a='>'><![CDATA[<not>an </element>]]></body></message>`},
		{`<iq type="result" id="1"/>`, `<iq xmlns="jabber:client" type="result" id="1"/>`},
		{`<presence/>`, `<presence xmlns="jabber:client"/>`},
		{`<iq xmlns="jabber:client" type="result" id="1"/>`, `<iq xmlns="jabber:client" type="result" id="1"/>`},
		{`<message id=" xmlns=&quot;x"/>`, `<message xmlns="jabber:client" id=" xmlns=&quot;x"/>`},
		{`<stream:features><mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><mechanism>SCRAM-SHA-256</mechanism></mechanisms></stream:features>`,
			`<stream:features xmlns:stream="http://etherx.jabber.org/streams"><mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><mechanism>SCRAM-SHA-256</mechanism></mechanisms></stream:features>`},
		{`<stream:error><policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>`,
			`<stream:error xmlns:stream="http://etherx.jabber.org/streams"><policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>`},
		{`<success xmlns="urn:ietf:params:xml:ns:xmpp-sasl">=</success>`, `<success xmlns="urn:ietf:params:xml:ns:xmpp-sasl">=</success>`},
		{`<messages/>`, `<messages/>`},
	} {
		got := string(FrameElement([]byte(tc.in)))
		if got != tc.want {
			t.Errorf("%s\nframed as\n%s\nwant\n%s", tc.in, got, tc.want)
		}
		if err := wellformedtest.Expat(t, []byte(got)); err != nil {
			t.Errorf("%s: %v", got, err)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		in        string
		open      string // the header's attributes, when <open/>
		close     bool
		data, err string
	}{
		{in: `<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0" xml:lang="de"/>`, open: `to=localhost version=1.0 xml:lang=de`},
		{in: `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='a&quot; evil=&quot;1' version='1.0'></open>`, open: `to=a" evil="1 version=1.0`},
		{in: `<?xml version='1.0'?> <open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0"/>`, open: `to=localhost version=1.0`},
		{in: `<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`, close: true},
		{in: `<message xmlns="jabber:client"><body>hi</body></message>`, data: `<message xmlns="jabber:client"><body>hi</body></message>`},
		{in: `<open to="localhost" version="1.0"/>`, data: `<open to="localhost" version="1.0"/>`},
		{in: `<opener/>`, data: `<opener/>`},
		{in: `<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0"`, err: "syntax error"},
		{in: `<open xmlns="urn:ietf:params:xml:ns:xmpp-framing"><x>`, err: "incomplete"},
		{in: `<?xml version='1.1'?><open xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`, err: "XML 1.0 only"},
	} {
		f, err := classify(rawFrame{typ: websocket.MessageText, b: []byte(tc.in)}, 1<<16)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %s", tc.in, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.in, err)
		case tc.open != "":
			if f.Open == nil {
				t.Errorf("%s: not <open/>: %+v", tc.in, f)
				continue
			}
			var attrs []string
			for _, a := range f.Open.Attr {
				if a.Name.Local != "xmlns" && a.Name.Space != "xmlns" {
					attrs = append(attrs, wire.QName(a.Name)+"="+a.Value)
				}
			}
			if got := strings.Join(attrs, " "); got != tc.open {
				t.Errorf("%s: header attributes %q, want %q", tc.in, got, tc.open)
			}
		case tc.close:
			if !f.Close {
				t.Errorf("%s: not <close/>: %+v", tc.in, f)
			}
		default:
			if string(f.Data) != tc.data {
				t.Errorf("%s: data %q", tc.in, f.Data)
			}
		}
	}
	if _, err := classify(rawFrame{typ: websocket.MessageBinary, b: []byte(`<presence/>`)}, 1<<16); !wire.IsNotWellFormed(err) {
		t.Errorf("binary frame: %v", err)
	}
	if _, err := classify(rawFrame{typ: websocket.MessageText, b: []byte(`<presence/>`)}, 5); !errors.Is(err, wire.ErrStanzaTooBig) {
		t.Errorf("frame over the limit: %v", err)
	}
}

// frames is a FrameSource of fixed frames.
type frames struct{ list []rawFrame }

func (f *frames) NextFrame() (wire.Frame, error) {
	if len(f.list) == 0 {
		return wire.Frame{}, errors.New("no more frames")
	}
	r := f.list[0]
	f.list = f.list[1:]
	return classify(r, 1<<16)
}

func (f *frames) SetReadDeadline(time.Time) error { return nil }

func text(s ...string) *frames {
	f := &frames{}
	for _, b := range s {
		f.list = append(f.list, rawFrame{typ: websocket.MessageText, b: []byte(b)})
	}
	return f
}

const open = `<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0"/>`

// The stream's reader reads frame by frame: elements as they come (white
// space and several elements in one frame allowed), an element that does
// not end in its frame refused, <close/> the end of the stream.
func TestFrameReader(t *testing.T) {
	r := wire.NewFrameReader(text(open, `<message xmlns="jabber:client"><body>one</body></message>`,
		" <presence xmlns='jabber:client'/>\n<iq xmlns='jabber:client' type='get' id='1'/> ", "  ",
		`<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`), 1<<16)
	h, err := r.ReadHeader()
	if err != nil || h.Name.Local != "stream" || r.DefaultNS() != "jabber:client" || r.HeaderNS() != "http://etherx.jabber.org/streams" {
		t.Fatalf("header %v %v", h, err)
	}
	for _, want := range []string{"message", "presence", "iq"} {
		el, err := r.ReadElement()
		if err != nil || el.Name.Local != want || el.Name.Space != "jabber:client" {
			t.Fatalf("got %v %v, want %s", el.Name, err, want)
		}
	}
	if el, err := r.ReadElement(); !errors.Is(err, wire.ErrPeerClosed) {
		t.Fatalf("after <close/>: %v %v", el.Name, err)
	}

	for _, bad := range [][]string{
		{`<message xmlns="jabber:client"><body>`, `</body></message>`},
		{`<message xmlns="jabber:client"/><presence xmlns="jabber:client">`, `</presence>`},
		{`<message xmlns="jabber:client"><body>x</message>`},
		{`text`},
	} {
		r := wire.NewFrameReader(text(append([]string{open}, bad...)...), 1<<16)
		if _, err := r.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		var err error
		for range 3 {
			if _, err = r.ReadElement(); err != nil {
				break
			}
		}
		if !wire.IsNotWellFormed(err) {
			t.Errorf("%q: %v, want not well-formed", bad, err)
		}
	}
}

// FuzzFrames: whatever frames a client sends, the reader never panics, and
// an element it accepts is well-formed on its own (by expat), as is the
// frame the server would write of it.
func FuzzFrames(f *testing.F) {
	for _, s := range [][2]string{
		{`<message xmlns="jabber:client"><body>hi</body></message>`, `<presence/>`},
		{`<message xmlns="jabber:client"><body>`, `</body></message>`},
		{`<?xml version='1.0'?><open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0"/>`, `<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`},
		{`<iq xmlns="jabber:client" type="get"><x:y xmlns:x="urn:x" x:a="1"/></iq>`, " \n "},
		{`<message xmlns='jabber:client'><body>&#xD800;</body></message>`, `<a/><b/>`},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		r := wire.NewFrameReader(text(open, a, b), 1<<16)
		if _, err := r.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		for range 10 {
			el, err := r.ReadElement()
			if err != nil {
				return
			}
			if el.Start.Name.Local == "stream" {
				continue // a second <open/>
			}
			// The element as the stream carries it, with what it carries
			// of the header (the stream's content namespace).
			bld := wire.NewBuilder(nil)
			bld.Start(wire.QName(el.Start.Name))
			bld.Attr("xmlns:stream", "http://etherx.jabber.org/streams")
			if _, ok := wire.Attr(el.Start, "", "xmlns"); !ok {
				bld.Attr("xmlns", "jabber:client")
			}
			for _, at := range el.Start.Attr {
				if at.Name.Space == "xmlns" && at.Name.Local == "stream" {
					continue
				}
				bld.Attr(wire.QName(at.Name), at.Value)
			}
			bld.Raw(el.Inner)
			doc := bld.Bytes()
			if err := wellformedtest.Expat(t, doc); err != nil {
				t.Fatalf("frames %q %q: accepted <%s> is not well-formed on its own: %v\n%s", a, b, wire.QName(el.Start.Name), err, doc)
			}
		}
	})
}
