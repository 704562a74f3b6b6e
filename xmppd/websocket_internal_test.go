package xmppd

import (
	"dialtone/xmppd/wire"
	"strings"
	"testing"
)

func TestWSSplit(t *testing.T) {
	out := `<?xml version='1.0'?><stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams" id="abc" from="localhost" to="a@localhost" version="1.0" xml:lang="en">` +
		`<stream:features><mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><mechanism>SCRAM-SHA-256</mechanism></mechanisms></stream:features>` +
		"\n" + `<message to="a@localhost" id="x&gt;"><body a='>'><![CDATA[<not>an </element>]]></body></message>` +
		`<iq xmlns="jabber:client" type="result" id="1"/>` +
		`<success xmlns="urn:ietf:params:xml:ns:xmpp-sasl">=</success>` +
		`<stream:error><policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error></stream:stream>`
	want := []string{
		`<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" id="abc" from="localhost" to="a@localhost" version="1.0" xml:lang="en"/>`,
		`<stream:features xmlns:stream="http://etherx.jabber.org/streams"><mechanisms xmlns="urn:ietf:params:xml:ns:xmpp-sasl"><mechanism>SCRAM-SHA-256</mechanism></mechanisms></stream:features>`,
		`<message xmlns="jabber:client" to="a@localhost" id="x&gt;"><body a='>'><![CDATA[<not>an </element>]]></body></message>`,
		`<iq xmlns="jabber:client" type="result" id="1"/>`,
		`<success xmlns="urn:ietf:params:xml:ns:xmpp-sasl">=</success>`,
		`<stream:error xmlns:stream="http://etherx.jabber.org/streams"><policy-violation xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></stream:error>`,
		`<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`,
	}
	// Whole, and written in pieces of every size: the same frames.
	for step := 1; step <= len(out); step++ {
		var got []string
		var buf []byte
		for i := 0; i < len(out); i += step {
			buf = append(buf, out[i:min(i+step, len(out))]...)
			frames, rest := wsSplit(buf)
			for _, f := range frames {
				got = append(got, string(f))
			}
			buf = append([]byte(nil), rest...)
		}
		if len(buf) != 0 || strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("step %d: got\n%s\nrest %q", step, strings.Join(got, "\n"), buf)
		}
	}
}

func TestWSTranslateIn(t *testing.T) {
	for _, tc := range []struct{ in, out, err string }{
		{`<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0" xml:lang="de"/>`,
			`<stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams" to="localhost" version="1.0" xml:lang="de">`, ""},
		{`<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='a&quot; evil=&quot;1' version='1.0'></open>`,
			`<stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams" to="a&quot; evil=&quot;1" version="1.0">`, ""},
		{`<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`, `</stream:stream>`, ""},
		{`<message xmlns="jabber:client"><body>hi</body></message>`, `<message xmlns="jabber:client"><body>hi</body></message>`, ""},
		{`<open to="localhost" version="1.0"/>`, `<open to="localhost" version="1.0"/>`, ""},
		{`<message><body>hi</message>`, "", "not well-formed"},
		{`<message>`, "", "not well-formed"},
		{`<message>&bogus;</message>`, "", "syntax error"},
		{`<stream:stream xmlns:stream="http://etherx.jabber.org/streams">`, "", "not well-formed"},
	} {
		got, err := wsTranslateIn([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !wire.IsNotWellFormed(err) {
				t.Errorf("%s: got %q, %v; want %s", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.out {
			t.Errorf("%s: got %q, %v", tc.in, got, err)
		}
	}
}
