package register

import (
	"context"
	"errors"
	"strings"
	"testing"

	"dialtone/auth"
	"dialtone/xmppd/mod/internal/modtest"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

const (
	domain = modtest.Domain
	alice  = modtest.Alice
	bob    = modtest.Bob
)

func aliceFull() string { return alice + "@" + domain + "/phone" }

func TestRegister(t *testing.T) {
	const (
		user  = "+821011111111"
		other = "+821022222222"
		full  = user + "@" + domain + "/phone"
	)
	parser, err := auth.NewNumberParser("KR", nil)
	if err != nil {
		t.Fatal(err)
	}
	setQuery := func(username, password string) string {
		return `<query xmlns="jabber:iq:register"><username>` + username + `</username><password>` + password + `</password></query>`
	}
	tests := []struct {
		name     string
		from, to string
		typ      string
		inner    string
		cond     stanza.Condition
		text     string // in the error text
		setErr   error
		result   string // canonical result
		password string // what set got; "" when not called
	}{
		{name: "get", typ: "get", inner: `<query xmlns="jabber:iq:register"/>`,
			result: `<query xmlns="jabber:iq:register"><registered/><username>` + user + `</username></query>`},
		{name: "change", typ: "set", inner: setQuery(user, "correct horse"), password: "correct horse"},
		{name: "change to the server", to: domain, typ: "set", inner: setQuery(user, "0123456789"), password: "0123456789"},
		{name: "national username", typ: "set", inner: setQuery("010-1111-1111", "ünïcødé pässwörd"), password: "ünïcødé pässwörd"},
		{name: "another account's username", typ: "set", inner: setQuery(other, "0123456789abc"), cond: stanza.Forbidden},
		{name: "username not a number", typ: "set", inner: setQuery("juliet", "0123456789abc"), cond: stanza.Forbidden},
		{name: "to another account", to: other + "@" + domain, typ: "set", inner: setQuery(other, "0123456789abc"), cond: stanza.Forbidden},
		{name: "from a peer's user", from: user + "@evil.example/x", to: domain, typ: "set", inner: setQuery(user, "0123456789abc"), cond: stanza.Forbidden},
		{name: "too short", typ: "set", inner: setQuery(user, "123456789"), cond: stanza.NotAcceptable, text: "at least 10 characters"},
		{name: "too long", typ: "set", inner: setQuery(user, strings.Repeat("x", maxPasswordBytes+1)), cond: stanza.NotAcceptable},
		{name: "no password", typ: "set", inner: `<query xmlns="jabber:iq:register"><username>` + user + `</username></query>`, cond: stanza.BadRequest},
		{name: "no username", typ: "set", inner: `<query xmlns="jabber:iq:register"><password>0123456789abc</password></query>`, cond: stanza.BadRequest},
		{name: "remove", typ: "set", inner: `<query xmlns="jabber:iq:register"><remove/></query>`, cond: stanza.NotAllowed},
		{name: "store fails", typ: "set", inner: setQuery(user, "0123456789abc"), setErr: errors.New("disk full"), password: "0123456789abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotN auth.Number
			var gotSession jid.JID
			var gotPassword string
			m := New(modtest.NewRouter(domain), parser, func(_ context.Context, n auth.Number, session jid.JID, password string) error {
				gotN, gotSession, gotPassword = n, session, password
				return tt.setErr
			})
			from := tt.from
			if from == "" {
				from = full
			}
			b, err := m.handle(context.Background(), modtest.IQ(t, from, tt.to, tt.typ, tt.inner))
			if tt.setErr != nil {
				if !errors.Is(err, tt.setErr) {
					t.Fatalf("err = %v, want the store's", err)
				}
			} else if got := modtest.Condition(t, err); got != tt.cond {
				t.Fatalf("condition %q, want %q", got, tt.cond)
			}
			if tt.text != "" {
				var se stanza.Error
				errors.As(err, &se)
				if !strings.Contains(se.Text[""], tt.text) {
					t.Errorf("error text %q, want it to say %q", se.Text[""], tt.text)
				}
			}
			if tt.result != "" {
				if got := modtest.Canonical(t, b); got != tt.result {
					t.Errorf("result %s\nwant   %s", got, tt.result)
				}
			} else if b != nil {
				t.Errorf("unexpected result %s", b)
			}
			if gotPassword != tt.password {
				t.Fatalf("set got password %q, want %q", gotPassword, tt.password)
			}
			if tt.password != "" && (gotN != user || gotSession.String() != full) {
				t.Errorf("set for %s from %s, want %s from %s", gotN, gotSession, user, full)
			}
		})
	}
}
