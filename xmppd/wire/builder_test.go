package wire

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

func TestBuilder(t *testing.T) {
	tests := []struct {
		name  string
		build func(b *Builder)
		want  string
	}{
		{"empty element", func(b *Builder) { b.Start("a").End() }, `<a/>`},
		{"attributes escaped, empty ones left out", func(b *Builder) {
			b.Start("iq", "to", `a"b<c>&'`, "id", "", "type", "get").End()
		}, `<iq to="a&quot;b&lt;c&gt;&amp;&apos;" type="get"/>`},
		{"nested with namespace and text", func(b *Builder) {
			b.Start("message", "to", "x@y").StartNS("body", "jabber:client").Text("1 < 2 & 3").End().End()
		}, `<message to="x@y"><body xmlns="jabber:client">1 &lt; 2 &amp; 3</body></message>`},
		{"raw payload", func(b *Builder) {
			b.StartNS("forwarded", "urn:xmpp:forward:0").Raw([]byte(`<message/>`)).End()
		}, `<forwarded xmlns="urn:xmpp:forward:0"><message/></forwarded>`},
		{"Bytes closes what is open", func(b *Builder) { b.Start("a").Start("b").Text("t") }, `<a><b>t</b></a>`},
		{"element helper", func(b *Builder) { b.Element("x", "urn:x", "").Element("y", "", "v") }, `<x xmlns="urn:x"/><y>v</y>`},
		{"attr after start keeps empty values", func(b *Builder) { b.Start("a").Attr("v", "").End() }, `<a v=""/>`},
		{"StartNS with attributes", func(b *Builder) { b.StartNS("a", "urn:a", "k", "v").End() }, `<a xmlns="urn:a" k="v"/>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Builder
			tt.build(&b)
			if got := string(b.Bytes()); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestAppendEscapedIsWellFormed(t *testing.T) {
	for _, s := range []string{"plain", "a\x00b", "\x01\x1f", "tab\tnl\ncr\r", "\xff\xfe", "\uFFFE\uFFFF", "ünï©ødé 😀", `<&>"'`} {
		var b Builder
		b.Start("a", "v", s).Text(s).End()
		out := b.Bytes()
		d := xml.NewDecoder(bytes.NewReader(out))
		var attr, text string
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%q: %s does not parse: %v", s, out, err)
			}
			switch tt := tok.(type) {
			case xml.StartElement:
				attr = tt.Attr[0].Value
			case xml.CharData:
				text += string(tt)
			}
		}
		if attr != text {
			t.Errorf("%q: attribute %q and text %q differ", s, attr, text)
		}
	}
}

func FuzzAppendEscaped(f *testing.F) {
	f.Add("a<b>&c")
	f.Add("\x00\xff")
	f.Fuzz(func(t *testing.T, s string) {
		var b Builder
		b.Start("a", "v", s).Text(s).End()
		d := xml.NewDecoder(bytes.NewReader(b.Bytes()))
		for {
			_, err := d.Token()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("%q: %s: %v", s, b.Bytes(), err)
			}
		}
	})
}

func BenchmarkBuilderCarbon(b *testing.B) {
	inner := []byte(`<message from="+12025550123@example.org/phone" to="+12025550124@example.org" type="chat" id="abc"><body>hello there</body></message>`)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		w := NewBuilder(buf[:0])
		w.Start("message", "from", "+12025550124@example.org", "to", "+12025550124@example.org/laptop", "type", "chat")
		w.StartNS("received", "urn:xmpp:carbons:2").StartNS("forwarded", "urn:xmpp:forward:0").Raw(inner)
		buf = w.Bytes()
	}
}

func TestBuilderStreamParts(t *testing.T) {
	b := NewBuilder(nil)
	b.Declaration().Start("stream:stream", "xmlns", "jabber:client", "id", `a"b`)
	if got := string(b.Opened()); got != `<?xml version='1.0'?><stream:stream xmlns="jabber:client" id="a&quot;b">` {
		t.Fatalf("header %s", got)
	}
	if got := string(NewBuilder(nil).EndOf("stream:stream").Bytes()); got != `</stream:stream>` {
		t.Fatalf("end %s", got)
	}
	deep := NewBuilder(nil)
	for i := 0; i < 12; i++ {
		deep.Start("e")
	}
	if got := string(deep.Text("x").Bytes()); got != strings.Repeat("<e>", 12)+"x"+strings.Repeat("</e>", 12) {
		t.Fatalf("deep %s", got)
	}
}
