package ping

import (
	"context"
	"dialtone/xmppd/mod/internal/modtest"
	"dialtone/xmppd/router"
	"testing"

	"mellium.im/xmpp/stanza"
)

const (
	domain = modtest.Domain
	alice  = modtest.Alice
	bob    = modtest.Bob
)

func aliceFull() string { return alice + "@" + domain + "/phone" }

func TestPing(t *testing.T) {
	r := modtest.NewRouter(domain, "+15550001111@"+domain)
	p := New(r)
	h := router.NewHooks()
	p.Register(h)
	for _, sc := range []router.Scope{router.ScopeServer, router.ScopeAccount} {
		if fs := h.DiscoFeatures(sc); len(fs) != 1 || fs[0] != "urn:xmpp:ping" {
			t.Errorf("features of scope %d: %v", sc, fs)
		}
	}
	tests := []struct {
		name   string
		server bool
		to     string
		typ    string
		cond   stanza.Condition
	}{
		{name: "server", server: true, to: domain, typ: "get"},
		{name: "server set", server: true, to: domain, typ: "set", cond: stanza.BadRequest},
		{name: "own account", to: "", typ: "get"},
		{name: "other local account", to: "+15550001111@" + domain, typ: "get"},
		{name: "number without account", to: "+15559999999@" + domain, typ: "get"},
		{name: "account set", to: "", typ: "set", cond: stanza.BadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := modtest.IQ(t, "+15550002222@"+domain+"/a", tt.to, tt.typ, `<ping xmlns="urn:xmpp:ping"/>`)
			h := p.account
			if tt.server {
				h = p.server
			}
			b, err := h(context.Background(), s)
			if got := modtest.Condition(t, err); got != tt.cond {
				t.Fatalf("condition %q, want %q", got, tt.cond)
			}
			if b != nil {
				t.Errorf("result payload %s, want none", b)
			}
		})
	}
}
