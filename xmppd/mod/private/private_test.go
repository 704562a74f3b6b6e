package private

import (
	"context"
	"dialtone/xmppd/mod/internal/modtest"
	"strings"
	"testing"

	"mellium.im/xmpp/stanza"
)

const (
	domain = modtest.Domain
	alice  = modtest.Alice
	bob    = modtest.Bob
)

func aliceFull() string { return alice + "@" + domain + "/phone" }

func TestPrivate(t *testing.T) {
	const bookmarks = `<storage xmlns="storage:bookmarks"><conference jid="room@muc.example" autojoin="true"/></storage>`
	tests := []struct {
		name   string
		to     string
		typ    string
		inner  string
		cond   stanza.Condition
		result string            // canonical query result (get)
		stored map[string]string // key → value after the request ("" = absent)
	}{
		{name: "get stored", typ: "get", inner: `<query xmlns="jabber:iq:private"><storage xmlns="storage:bookmarks"/></query>`,
			result: `<query xmlns="jabber:iq:private">` + bookmarks + `</query>`},
		{name: "get missing returns empty element", typ: "get", inner: `<query xmlns="jabber:iq:private"><p:prefs xmlns:p="exodus:prefs"><x/></p:prefs></query>`,
			result: `<query xmlns="jabber:iq:private"><prefs xmlns="exodus:prefs"/></query>`},
		{name: "get two", typ: "get", inner: `<query xmlns="jabber:iq:private"><prefs xmlns="exodus:prefs"/><storage xmlns="storage:bookmarks"/></query>`,
			result: `<query xmlns="jabber:iq:private"><prefs xmlns="exodus:prefs"/>` + bookmarks + `</query>`},
		{name: "get no child", typ: "get", inner: `<query xmlns="jabber:iq:private"/>`, cond: stanza.NotAcceptable},
		{name: "get other account", to: bob + "@" + domain, typ: "get", inner: `<query xmlns="jabber:iq:private"><storage xmlns="storage:bookmarks"/></query>`, cond: stanza.Forbidden},
		{name: "set several", typ: "set",
			inner: `<query xmlns="jabber:iq:private"><prefs xmlns="exodus:prefs"><nick>Ham &amp; let</nick></prefs><storage xmlns="storage:bookmarks"/></query>`,
			stored: map[string]string{
				"{exodus:prefs}prefs":        `<prefs xmlns="exodus:prefs"><nick>Ham &amp; let</nick></prefs>`,
				"{storage:bookmarks}storage": "",
			}},
		{name: "set reserved client", typ: "set", inner: `<query xmlns="jabber:iq:private"><prefs xmlns="exodus:prefs"/><message xmlns="jabber:client"/></query>`, cond: stanza.NotAcceptable,
			stored: map[string]string{"{exodus:prefs}prefs": "", "{storage:bookmarks}storage": bookmarks}},
		{name: "set reserved server", typ: "set", inner: `<query xmlns="jabber:iq:private"><x xmlns="jabber:server"/></query>`, cond: stanza.NotAcceptable},
		{name: "set reserved private (inherited)", typ: "set", inner: `<query xmlns="jabber:iq:private"><x/></query>`, cond: stanza.NotAcceptable},
		{name: "get reserved", typ: "get", inner: `<query xmlns="jabber:iq:private"><query xmlns="jabber:iq:private"/></query>`, cond: stanza.NotAcceptable},
		{name: "set other account", to: bob + "@" + domain, typ: "set", inner: `<query xmlns="jabber:iq:private"><prefs xmlns="exodus:prefs"/></query>`, cond: stanza.Forbidden},
		{name: "set too large", typ: "set", inner: `<query xmlns="jabber:iq:private"><prefs xmlns="exodus:prefs">` + strings.Repeat("y", DefaultMax) + `</prefs></query>`, cond: stanza.PolicyViolation,
			stored: map[string]string{"{exodus:prefs}prefs": ""}},
		{name: "set too deep", typ: "set", inner: `<query xmlns="jabber:iq:private"><prefs xmlns="exodus:prefs">` + strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100) + `</prefs></query>`, cond: stanza.PolicyViolation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := modtest.NewPrivate()
			st.PutPrivate(context.Background(), alice, "{storage:bookmarks}storage", []byte(bookmarks))
			p := New(modtest.NewRouter(domain), st)
			b, err := p.handle(context.Background(), modtest.IQ(t, aliceFull(), tt.to, tt.typ, tt.inner))
			if got := modtest.Condition(t, err); got != tt.cond {
				t.Fatalf("condition %q, want %q", got, tt.cond)
			}
			if tt.result != "" {
				if got := modtest.Canonical(t, b); got != tt.result {
					t.Errorf("result %s\nwant   %s", got, tt.result)
				}
			} else if b != nil {
				t.Errorf("unexpected result %s", b)
			}
			for k, want := range tt.stored {
				got, _ := st.Get(alice, k)
				if string(got) != want {
					t.Errorf("%s: stored %q, want %q", k, got, want)
				}
			}
		})
	}
}
