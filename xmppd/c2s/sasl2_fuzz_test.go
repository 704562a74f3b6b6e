package c2s

import (
	"encoding/xml"
	"strings"
	"testing"
	"unicode/utf8"

	"mellium.im/xmpp/jid"

	"dialtone/xmppd/wire"
)

// FuzzSASL2Request feeds <authenticate/> bodies to the request decoder
// and the Bind2 resource maker: no panic, and any tag and user-agent id
// make a resource that forms a valid JID with at most maxTag runes of
// the tag.
func FuzzSASL2Request(f *testing.F) {
	for _, s := range []string{
		`<initial-response>biwsbj11c2VyLHI9YWJj</initial-response><user-agent id='x'><software>a</software></user-agent><bind xmlns='urn:xmpp:bind:0'><tag>Phone</tag><enable xmlns='urn:xmpp:carbons:2'/></bind>`,
		`<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/><fast xmlns='urn:xmpp:fast:0' invalidate='true'/>`,
		`<bind xmlns='urn:xmpp:bind:0'><tag>` + strings.Repeat("é/@", 40) + `</tag></bind>`,
		`<x:y xmlns:x='urn:a'><z/></x:y><initial-response/>`,
		``, `<`, `<initial-response>&amp;</initial-response>`,
	} {
		f.Add(s, "PLAIN")
	}
	f.Fuzz(func(t *testing.T, inner, mech string) {
		el := wire.Element{Start: xml.StartElement{Name: xml.Name{Local: "authenticate"}, Attr: []xml.Attr{{Name: xml.Name{Local: "mechanism"}, Value: mech}}},
			Name: xml.Name{Space: nsSASL2, Local: "authenticate"}, Inner: []byte(inner)}
		var req authenticateReq
		if err := decodeElement(el, &req); err != nil {
			return
		}
		for _, x := range req.Inline {
			x.element()
		}
		tag, ua := "", ""
		if req.Bind != nil {
			tag = req.Bind.Tag
			for _, x := range req.Bind.Inline {
				x.element()
			}
		}
		if req.UserAgent != nil {
			ua = req.UserAgent.ID
		}
		res := resourceFrom(tag, ua)
		head, _, ok := strings.Cut(res, "~")
		if !ok || utf8.RuneCountInString(head) > maxTag || strings.ContainsAny(head, "/@") {
			t.Fatalf("resource %q from tag %q", res, tag)
		}
		if _, err := jid.New("+821012345678", "example.com", res); err != nil && utf8.ValidString(tag) {
			t.Fatalf("resource %q from tag %q: %v", res, tag, err)
		}
	})
}
