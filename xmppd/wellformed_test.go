package xmppd

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
)

// notWellFormedStanzas are stanzas encoding/xml accepts that are not
// namespace-well-formed: each must end the sender's stream and reach no
// one. The socket tests send them too.
var notWellFormedStanzas = map[string]string{
	"duplicate attribute":              `<message to='%s'><x xmlns='urn:x' a='1' a='2'/></message>`,
	"duplicate expanded name":          `<message to='%s'><x xmlns:p='urn:u' xmlns:q='urn:u' p:a='1' q:a='2'/></message>`,
	"duplicate to":                     `<message to='%s' to='%[1]s'><body>x</body></message>`,
	"duplicate declaration":            `<message to='%s'><x xmlns:p='urn:a' xmlns:p='urn:b'/></message>`,
	"undeclared prefix":                `<message to='%s'><p:x/></message>`,
	"undeclared attribute prefix":      `<message to='%s'><x p:a='1'/></message>`,
	"prefix out of scope":              `<message to='%s'><x xmlns:p='urn:p'/><p:y/></message>`,
	"xml rebound":                      `<message to='%s'><x xmlns:xml='urn:bad'/></message>`,
	"xmlns declared":                   `<message to='%s'><x xmlns:xmlns='urn:x'/></message>`,
	"prefix bound to the xml name":     `<message to='%s'><x xmlns:p='http://www.w3.org/XML/1998/namespace'/></message>`,
	"prefix bound to the xmlns name":   `<message to='%s'><x xmlns:p='http://www.w3.org/2000/xmlns/'/></message>`,
	"default bound to the xml name":    `<message to='%s'><x xmlns='http://www.w3.org/XML/1998/namespace'/></message>`,
	"prefix undeclared (NS 1.1 only)":  `<message to='%s'><x xmlns:p=''/></message>`,
	"element with prefix xmlns":        `<message to='%s'><xmlns:x/></message>`,
	"colon first":                      `<message to='%s'><:x/></message>`,
	"colon last":                       `<message to='%s'><x: xmlns:x='urn:x'/></message>`,
	"local part starts with a digit":   `<message to='%s'><p:1x xmlns:p='urn:p'/></message>`,
	"local part starts with a mark":    "<message to='%s'><p:\u0301x xmlns:p='urn:p'/></message>",
	"namespace name with a space":      `<message to='%s'><x xmlns='urn: x'/></message>`,
	"namespace name with a brace":      `<message to='%s'><x xmlns='urn:}x'/></message>`,
	"namespace name not ASCII":         `<message to='%s'><x xmlns='urn:é'/></message>`,
	"surrogate reference in text":      `<message to='%s'><body>&#xD800;</body></message>`,
	"surrogate reference in attribute": `<message to='%s'><x xmlns='urn:x' a='&#56320;'/></message>`,
	"reference to NUL":                 `<message to='%s'><body>&#0;</body></message>`,
	"reference to a control character": `<message to='%s'><body>&#x1;</body></message>`,
	"reference to U+FFFE":              `<message to='%s'><body>&#xFFFE;</body></message>`,
	"reference beyond Unicode":         `<message to='%s'><body>&#x110000;</body></message>`,
	"raw control character":            "<message to='%s'><body>\x01</body></message>",
	"raw U+FFFE":                       "<message to='%s'><body>\uFFFE</body></message>",
	"raw U+FFFF":                       "<message to='%s'><x xmlns='urn:x' a='\uFFFF'/></message>",
	"no space between attributes":      `<message to='%s'><x xmlns='urn:x' a='1'b='2'/></message>`,
	"stray end tag":                    `</message>%.0s`,
}

// headerStanzas use a prefix declared only on the sender's stream header:
// well-formed in the sender's stream, so accepted, and forwarded with the
// declaration carried onto the stanza.
const headerPrefixStream = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:h='urn:h' to='localhost' version='1.0'>`

func readOne(t *testing.T, stream string) (*Stanza, error) {
	t.Helper()
	w := newWireReader(pipeConn{r: strings.NewReader(stream)}, 1<<16)
	dec, _, err := readStreamHeader(w)
	if err != nil {
		return nil, err
	}
	el, err := readElement(dec, w)
	if err != nil {
		return nil, err
	}
	return stanzaFromElement(el, NSClient)
}

func TestNotWellFormedRefused(t *testing.T) {
	for name, s := range notWellFormedStanzas {
		in := fuzzHeader + fmt.Sprintf(s, "b@localhost")
		if strings.Contains(in, "%!") {
			t.Fatalf("%s: %s", name, in)
		}
		_, err := readOne(t, in)
		if conditionOf(err) != "not-well-formed" || errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: %q read with err %v, want not-well-formed", name, in, err)
		}
	}
}

func TestWellFormedAccepted(t *testing.T) {
	for _, tc := range []struct{ stream, want string }{
		// xml: is always bound; declaring it with its own name is allowed.
		{fuzzHeader + `<message xml:lang='en'><x xmlns='urn:x' xml:lang='ko'/></message>`, `<message xml:lang="en"><x xmlns='urn:x' xml:lang='ko'/></message>`},
		{fuzzHeader + `<message><x xmlns:xml='http://www.w3.org/XML/1998/namespace' xmlns='urn:x'/></message>`, ``},
		{fuzzHeader + `<message><x xmlns='urn:x'><y xmlns=''/></x></message>`, ``},
		{fuzzHeader + `<message><p:éa xmlns:p='urn:p' p:ñ='1'/></message>`, ``},
		{fuzzHeader + `<message><x xmlns:p='urn:p' p:a='1' a='1'><p:y/></x><p:z xmlns:p='urn:q'/></message>`, ``},
		{fuzzHeader + `<message><body>&#x1F600; &#55295; &#xE000; &#xFFFD; <![CDATA[&#xD800;]]></body></message>`, ``},
		{fuzzHeader + `<message><x xmlns='http://jabber.org/protocol/disco#info' a = '1'	b="2"
/></message>`, ``},
		// The header's own prefixes: carried onto the stanza.
		{headerPrefixStream + `<message h:a='1'><h:x/><stream:y/></message>`, `<message xmlns:h="urn:h" xmlns:stream="http://etherx.jabber.org/streams" h:a="1"><h:x/><stream:y/></message>`},
		{headerPrefixStream + `<message><h:x xmlns:h='urn:other'/></message>`, `<message><h:x xmlns:h='urn:other'/></message>`},
	} {
		st, err := readOne(t, tc.stream)
		if err != nil {
			t.Errorf("%q: %v", tc.stream, err)
			continue
		}
		if tc.want != "" && string(st.Bytes()) != tc.want {
			t.Errorf("%q forwarded as\n%s\nwant\n%s", tc.stream, st.Bytes(), tc.want)
		}
		checkForwardable(t, st, []byte(tc.stream))
	}
}

func TestStreamPrologue(t *testing.T) {
	for _, tc := range []struct{ prologue, cond string }{
		{`<?xml version='1.0'?>`, ""},
		{`<?xml version="1.0" encoding="utf-8" standalone='yes' ?>`, ""},
		{"\n<?xml version='1.0'?>\n", ""},
		{`<?xml version='1.1'?>`, "unsupported-version"},
		{`<?xml version = "1.1"?>`, "unsupported-version"},
		{`<?xml version='1.0' encoding='ISO-8859-1'?>`, "unsupported-encoding"},
		{`<?xml version='1.0' encoding='UTF-16'?>`, "unsupported-encoding"},
		{`<?xml encoding='UTF-8'?>`, "not-well-formed"},
		{`<?xml version='1.0' foo='bar'?>`, "not-well-formed"},
		{`<?xml version='1.0'encoding='UTF-8'?>`, "not-well-formed"},
		{`<?xml version='1.0'?><?xml version='1.0'?>`, "not-well-formed"},
		{`<?other?>`, "restricted-xml"},
	} {
		w := newWireReader(pipeConn{r: strings.NewReader(tc.prologue + fuzzHeader)}, 1<<16)
		_, _, err := readStreamHeader(w)
		if got := conditionOf(err); got != tc.cond {
			t.Errorf("%q: %v (%q), want %q", tc.prologue, err, got, tc.cond)
		}
	}
}

// conditionOf is the stream error a reading error ends the stream with.
func conditionOf(err error) string {
	var se *streamError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &se):
		return se.cond
	case errors.Is(err, errRestrictedXML):
		return "restricted-xml"
	case isSyntaxError(err):
		return "not-well-formed"
	}
	return err.Error()
}

func TestSupportedVersion(t *testing.T) {
	for v, want := range map[string]bool{"1.0": true, "2.0": true, "1.10": true, "01.0": true, "0.9": false, "": false, "1": false, "1.x": false, "-1.0": false, "99999999999999999999.0": true} {
		if supportedVersion(v) != want {
			t.Errorf("supportedVersion(%q) = %v", v, !want)
		}
	}
}

// With many declarations in scope the lookups go through an index (a
// linear search would let a peer make every name cost thousands of
// comparisons): it must resolve exactly as the search does, through
// shadowing and the end of elements.
func TestScopeIndex(t *testing.T) {
	var scope nsScope
	header := xml.StartElement{Name: xml.Name{Space: "stream", Local: "stream"}, Attr: []xml.Attr{
		{Name: xml.Name{Local: "xmlns"}, Value: NSClient},
		{Name: xml.Name{Space: "xmlns", Local: "stream"}, Value: nsStream},
	}}
	for i := range 10 {
		header.Attr = append(header.Attr, xml.Attr{Name: xml.Name{Space: "xmlns", Local: "h" + strconv.Itoa(i)}, Value: "urn:h" + strconv.Itoa(i)})
	}
	if err := scope.setHeader(header); err != nil {
		t.Fatal(err)
	}
	start := func(prefix string, decl ...string) string {
		t.Helper()
		el := xml.StartElement{Name: xml.Name{Space: prefix, Local: "e"}}
		for i := 0; i < len(decl); i += 2 {
			el.Attr = append(el.Attr, xml.Attr{Name: xml.Name{Space: "xmlns", Local: decl[i]}, Value: decl[i+1]})
		}
		name, err := scope.start(el, true)
		if err != nil {
			t.Fatalf("<%s:e %v>: %v", prefix, decl, err)
		}
		return name.Space
	}
	end := func(prefix string) {
		t.Helper()
		if !scope.endElement(xml.Name{Space: prefix, Local: "e"}) {
			t.Fatalf("</%s:e> refused", prefix)
		}
	}
	for round := range 2 {
		var decl []string
		for i := range 20 {
			decl = append(decl, "p"+strconv.Itoa(i), "urn:p"+strconv.Itoa(i))
		}
		if got := start("p3", append(decl, "h1", "urn:inner")...); got != "urn:p3" || scope.index == nil {
			t.Fatalf("round %d: p3 = %q, index %v", round, got, scope.index != nil)
		}
		if got := start("h1"); got != "urn:inner" {
			t.Fatalf("h1 = %q", got)
		}
		end("h1")
		if got := start("p3", "p3", "urn:shadow"); got != "urn:shadow" {
			t.Fatalf("shadowed p3 = %q", got)
		}
		end("p3")
		if got := start("p3"); got != "urn:p3" {
			t.Fatalf("p3 after the shadow = %q", got)
		}
		end("p3")
		if got := start("h2"); got != "urn:h2" {
			t.Fatalf("h2 = %q", got)
		}
		end("h2")
		end("p3")
		if scope.index != nil || len(scope.binds) != scope.header {
			t.Fatalf("after the element: %d bindings, index %v", len(scope.binds), scope.index != nil)
		}
		if got := start("h1"); got != "urn:h1" {
			t.Fatalf("h1 after the element = %q", got)
		}
		if _, err := scope.start(xml.StartElement{Name: xml.Name{Space: "p3", Local: "e"}}, true); err == nil {
			t.Fatal("p3 resolved out of its scope")
		}
		scope.reset()
	}
	if len(scope.carry) != 0 {
		t.Fatalf("carry after reset: %v", scope.carry)
	}
}
