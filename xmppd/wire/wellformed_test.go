package wire

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	"dialtone/xmppd/internal/wellformedtest"
)

// headerPrefixStream declares a prefix only on the sender's stream header:
// elements that use it are well-formed in the sender's stream, so accepted,
// and carry the declaration.
const headerPrefixStream = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:h='urn:h' to='localhost' version='1.0'>`

// readOne reads the first element after the header of stream.
func readOne(t *testing.T, stream string) (Element, error) {
	t.Helper()
	w := NewReader(wellformedtest.Conn{R: strings.NewReader(stream)}, 1<<16)
	if _, err := w.ReadHeader(); err != nil {
		return Element{}, err
	}
	return w.ReadElement()
}

func TestNotWellFormedRefused(t *testing.T) {
	for name, s := range wellformedtest.NotWellFormed {
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
	for _, tc := range []struct {
		stream string
		carry  []xml.Attr // header declarations the element uses
	}{
		// xml: is always bound; declaring it with its own name is allowed.
		{stream: fuzzHeader + `<message xml:lang='en'><x xmlns='urn:x' xml:lang='ko'/></message>`},
		{stream: fuzzHeader + `<message><x xmlns:xml='http://www.w3.org/XML/1998/namespace' xmlns='urn:x'/></message>`},
		{stream: fuzzHeader + `<message><x xmlns='urn:x'><y xmlns=''/></x></message>`},
		{stream: fuzzHeader + `<message><p:éa xmlns:p='urn:p' p:ñ='1'/></message>`},
		{stream: fuzzHeader + `<message><x xmlns:p='urn:p' p:a='1' a='1'><p:y/></x><p:z xmlns:p='urn:q'/></message>`},
		{stream: fuzzHeader + `<message><body>&#x1F600; &#55295; &#xE000; &#xFFFD; <![CDATA[&#xD800;]]></body></message>`},
		{stream: fuzzHeader + `<message><x xmlns='http://jabber.org/protocol/disco#info' a = '1'	b="2"
/></message>`},
		// The header's own prefixes: carried onto the element.
		{stream: headerPrefixStream + `<message h:a='1'><h:x/><stream:y/></message>`, carry: []xml.Attr{
			{Name: xml.Name{Space: "xmlns", Local: "h"}, Value: "urn:h"},
			{Name: xml.Name{Space: "xmlns", Local: "stream"}, Value: "http://etherx.jabber.org/streams"},
		}},
		{stream: headerPrefixStream + `<message><h:x xmlns:h='urn:other'/></message>`},
	} {
		el, err := readOne(t, tc.stream)
		if err != nil {
			t.Errorf("%q: %v", tc.stream, err)
			continue
		}
		if fmt.Sprint(el.Carry) != fmt.Sprint(tc.carry) {
			t.Errorf("%q carries %v, want %v", tc.stream, el.Carry, tc.carry)
		}
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
		w := NewReader(wellformedtest.Conn{R: strings.NewReader(tc.prologue + fuzzHeader)}, 1<<16)
		_, err := w.ReadHeader()
		if got := conditionOf(err); got != tc.cond {
			t.Errorf("%q: %v (%q), want %q", tc.prologue, err, got, tc.cond)
		}
	}
}

// conditionOf is the stream error a reading error ends the stream with
// (package stream maps them the same way).
func conditionOf(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrUnsupportedVersion):
		return "unsupported-version"
	case errors.Is(err, ErrUnsupportedEncoding):
		return "unsupported-encoding"
	case errors.Is(err, ErrRestrictedXML):
		return "restricted-xml"
	case IsNotWellFormed(err):
		return "not-well-formed"
	}
	return err.Error()
}

// With many declarations in scope the lookups go through an index (a
// linear search would let a peer make every name cost thousands of
// comparisons): it must resolve exactly as the search does, through
// shadowing and the end of elements.
func TestScopeIndex(t *testing.T) {
	var scope nsScope
	header := xml.StartElement{Name: xml.Name{Space: "stream", Local: "stream"}, Attr: []xml.Attr{
		{Name: xml.Name{Local: "xmlns"}, Value: "jabber:client"},
		{Name: xml.Name{Space: "xmlns", Local: "stream"}, Value: "http://etherx.jabber.org/streams"},
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
