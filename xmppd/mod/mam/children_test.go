package mam

import (
	"slices"
	"testing"
	"time"

	"dialtone/archive"
	"dialtone/xmppd/wire"

	"dialtone/xmppd/router"
)

func TestEachChild(t *testing.T) {
	inner := `text<a x='>'><b/><c>t</c></a><!-- <d> --><e/><![CDATA[<f>]]><g:h xmlns:g='urn:g' y="a>b">x</g:h>`
	var names, raw []string
	eachChild([]byte(inner), func(start, end int, tag []byte) bool {
		names = append(names, string(tagName(tag)))
		raw = append(raw, inner[start:end])
		return true
	})
	if !slices.Equal(names, []string{"a", "e", "g:h"}) ||
		!slices.Equal(raw, []string{`<a x='>'><b/><c>t</c></a>`, `<e/>`, `<g:h xmlns:g='urn:g' y="a>b">x</g:h>`}) {
		t.Fatalf("children %q %q", names, raw)
	}
	se, ok := parseTag([]byte(`<g:h xmlns:g='urn:g' y="a>b">`))
	if !ok || se.Name.Space != "urn:g" || se.Name.Local != "h" || attr(se, "y") != "a>b" {
		t.Fatalf("parseTag: %+v %v", se, ok)
	}
}

func TestArchivable(t *testing.T) {
	for _, tc := range []struct {
		typ, inner string
		want       bool
	}{
		{"chat", `<body>hi</body>`, true},
		{"", `<active xmlns='http://jabber.org/protocol/chatstates'/><body xml:lang='en'>hi</body>`, true},
		{"normal", `<x xmlns='urn:x'><body>nested</body></x>`, false},
		{"chat", `<body xmlns='urn:other'>hi</body>`, false},
		{"chat", `<composing xmlns='http://jabber.org/protocol/chatstates'/>`, false},
		{"chat", `<received xmlns='urn:xmpp:receipts' id='1'/>`, false},
		{"groupchat", `<body>hi</body>`, false},
		{"headline", `<body>hi</body>`, false},
		{"error", `<body>hi</body>`, false},
		{"chat", `<body>hi</body><no-store xmlns='urn:xmpp:hints'/>`, false},
		{"chat", `<no-permanent-store xmlns='urn:xmpp:hints'/><body>hi</body>`, false},
		{"chat", `<body>hi</body><store xmlns='urn:xmpp:hints'/>`, true},
	} {
		st := &router.Stanza{Kind: router.KindMessage, Type: tc.typ, Inner: []byte(tc.inner)}
		if got := archivable(st); got != tc.want {
			t.Errorf("%s %s: %v, want %v", tc.typ, tc.inner, got, tc.want)
		}
	}
}

// The stanza-id written by hand is what wire.Builder writes, escaping
// included.
func TestAppendStanzaID(t *testing.T) {
	for _, bare := range []string{"+821012345678@localhost", `a&b"<c>@example.com`} {
		id := archive.FirstID(time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)) + 7
		want := wire.NewBuilder(nil).StartNS("stanza-id", NSSID, "by", bare, "id", archive.FormatID(id)).End().Bytes()
		if got := appendStanzaID([]byte("<x/>"), bare, id); string(got) != "<x/>"+string(want) {
			t.Errorf("got %s, want <x/>%s", got, want)
		}
	}
}
