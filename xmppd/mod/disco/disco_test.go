package disco

import (
	"context"
	"encoding/xml"
	"slices"
	"strings"
	"testing"

	"dialtone/xmppd/mod/blocking"
	"dialtone/xmppd/mod/internal/modtest"
	"dialtone/xmppd/mod/ping"
	"dialtone/xmppd/mod/version"
	"dialtone/xmppd/router"

	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/disco/info"
	"mellium.im/xmpp/stanza"
)

const (
	domain = modtest.Domain
	alice  = modtest.Alice
	bob    = modtest.Bob
)

func aliceFull() string { return alice + "@" + domain + "/phone" }

type discoInfoResult struct {
	XMLName    xml.Name `xml:"http://jabber.org/protocol/disco#info query"`
	Node       string   `xml:"node,attr"`
	Identities []struct {
		Category string `xml:"category,attr"`
		Type     string `xml:"type,attr"`
		Name     string `xml:"name,attr"`
	} `xml:"identity"`
	Features []struct {
		Var string `xml:"var,attr"`
	} `xml:"feature"`
}

func (r discoInfoResult) vars() []string {
	var v []string
	for _, f := range r.Features {
		v = append(v, f.Var)
	}
	return v
}

// newDiscoSetup registers a typical set of modules and Disco last.
func newDiscoSetup() (*router.Hooks, *modtest.Router, *Module) {
	h := router.NewHooks()
	r := modtest.NewRouter(domain, "+15550001111@"+domain)
	ping.New(r).Register(h)
	version.New("1.0").Register(h)
	blocking.New(r, modtest.NewBlock()).Register(h)
	h.AddFeature(router.ScopeServer, disco.NSInfo) // a duplicate must not show twice
	d := New(r, "Dialtone")
	d.Register(h)
	if err := h.Err(); err != nil {
		panic(err)
	}
	return h, r, d
}

func TestCapsVerXEP0115Example(t *testing.T) {
	// XEP-0115 §5.2.
	ids := []info.Identity{{Category: "client", Type: "pc", Name: "Exodus 0.9.1"}}
	feats := []string{
		"http://jabber.org/protocol/muc",
		"http://jabber.org/protocol/disco#info",
		"http://jabber.org/protocol/caps",
		"http://jabber.org/protocol/disco#items",
	}
	orig := slices.Clone(feats)
	if got, want := CapsVer(ids, feats), "QgayPKawpkPSDYmwT/WM94uAlu0="; got != want {
		t.Errorf("CapsVer = %q, want %q", got, want)
	}
	if !slices.Equal(feats, orig) {
		t.Errorf("CapsVer reordered its argument: %v", feats)
	}
}

func TestCapsVerOrdersIdentities(t *testing.T) {
	a := []info.Identity{{Category: "server", Type: "im"}, {Category: "pubsub", Type: "pep"}, {Category: "client", Type: "pc", Lang: "en", Name: "B"}, {Category: "client", Type: "pc", Lang: "en", Name: "A"}}
	b := []info.Identity{a[3], a[1], a[2], a[0]}
	if CapsVer(a, []string{"x"}) != CapsVer(b, []string{"x"}) {
		t.Error("CapsVer depends on identity order")
	}
	if CapsVer(a, []string{"x"}) == CapsVer(a[:3], []string{"x"}) {
		t.Error("CapsVer ignores an identity")
	}
}

func TestDiscoInfo(t *testing.T) {
	_, _, d := newDiscoSetup()
	ver := d.Ver()
	own := "+15550001111@" + domain + "/phone"
	tests := []struct {
		name      string
		server    bool
		to, inner string
		typ       string
		cond      stanza.Condition
		node      string
		identity  string // category/type/name
		features  []string
	}{
		{name: "server", server: true, to: domain, inner: `<query xmlns="http://jabber.org/protocol/disco#info"/>`,
			identity: "server/im/Dialtone",
			features: []string{"http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items", "jabber:iq:version", "urn:xmpp:blocking", "urn:xmpp:ping"}},
		{name: "server caps node", server: true, to: domain, inner: `<query xmlns="http://jabber.org/protocol/disco#info" node="` + CapsNode + `#` + ver + `"/>`,
			node: CapsNode + "#" + ver, identity: "server/im/Dialtone",
			features: []string{"http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items", "jabber:iq:version", "urn:xmpp:blocking", "urn:xmpp:ping"}},
		{name: "server stale caps node", server: true, to: domain, inner: `<query xmlns="http://jabber.org/protocol/disco#info" node="` + CapsNode + `#old"/>`, cond: stanza.ItemNotFound},
		{name: "server unknown node", server: true, to: domain, inner: `<query xmlns="http://jabber.org/protocol/disco#info" node="x"/>`, cond: stanza.ItemNotFound},
		{name: "server set", server: true, to: domain, typ: "set", inner: `<query xmlns="http://jabber.org/protocol/disco#info"/>`, cond: stanza.BadRequest},
		{name: "own account", to: "", inner: `<query xmlns="http://jabber.org/protocol/disco#info"/>`,
			identity: "account/registered/",
			features: []string{"http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items", "urn:xmpp:blocking", "urn:xmpp:ping"}},
		{name: "other local account", to: "+15550001111@" + domain, inner: `<query xmlns="http://jabber.org/protocol/disco#info"/>`,
			identity: "account/registered/",
			features: []string{"http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items", "urn:xmpp:blocking", "urn:xmpp:ping"}},
		// A number without an account answers like one with (SPEC.md).
		{name: "number without account", to: "+15559999999@" + domain, inner: `<query xmlns="http://jabber.org/protocol/disco#info"/>`,
			identity: "account/registered/",
			features: []string{"http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items", "urn:xmpp:blocking", "urn:xmpp:ping"}},
		{name: "account node", to: "", inner: `<query xmlns="http://jabber.org/protocol/disco#info" node="` + CapsNode + `#` + ver + `"/>`, cond: stanza.ItemNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ := tt.typ
			if typ == "" {
				typ = "get"
			}
			from := "+15550002222@" + domain + "/pc"
			if !tt.server && tt.to == "" {
				from = own
			}
			s := modtest.IQ(t, from, tt.to, typ, tt.inner)
			h := d.accountInfoIQ
			if tt.server {
				h = d.serverInfoIQ
			}
			b, err := h(context.Background(), s)
			if got := modtest.Condition(t, err); got != tt.cond {
				t.Fatalf("condition %q, want %q", got, tt.cond)
			}
			if tt.cond != "" {
				return
			}
			var res discoInfoResult
			modtest.Unmarshal(t, b, &res)
			if res.Node != tt.node {
				t.Errorf("node %q, want %q", res.Node, tt.node)
			}
			if len(res.Identities) != 1 {
				t.Fatalf("identities %+v", res.Identities)
			}
			id := res.Identities[0]
			if got := id.Category + "/" + id.Type + "/" + id.Name; got != tt.identity {
				t.Errorf("identity %q, want %q", got, tt.identity)
			}
			if !slices.Equal(res.vars(), tt.features) {
				t.Errorf("features %v, want %v", res.vars(), tt.features)
			}
		})
	}
}

func TestDiscoItems(t *testing.T) {
	_, _, d := newDiscoSetup()
	tests := []struct {
		name   string
		server bool
		to     string
		node   string
		cond   stanza.Condition
	}{
		{name: "server", server: true, to: domain},
		{name: "server node", server: true, to: domain, node: "x", cond: stanza.ItemNotFound},
		{name: "own account", to: ""},
		{name: "number without account", to: "+15559999999@" + domain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner := `<query xmlns="http://jabber.org/protocol/disco#items"`
			if tt.node != "" {
				inner += ` node="` + tt.node + `"`
			}
			s := modtest.IQ(t, "+15550001111@"+domain+"/a", tt.to, "get", inner+"/>")
			h := d.accountItemsIQ
			if tt.server {
				h = d.serverItemsIQ
			}
			b, err := h(context.Background(), s)
			if got := modtest.Condition(t, err); got != tt.cond {
				t.Fatalf("condition %q, want %q", got, tt.cond)
			}
			if tt.cond != "" {
				return
			}
			var res modtest.Elem
			modtest.Unmarshal(t, b, &res)
			if res.XMLName != (xml.Name{Space: disco.NSItems, Local: "query"}) || len(res.Children) != 0 {
				t.Errorf("items result %s", b)
			}
		})
	}
}

func TestCapsElement(t *testing.T) {
	_, _, d := newDiscoSetup()
	var c struct {
		XMLName xml.Name `xml:"http://jabber.org/protocol/caps c"`
		Hash    string   `xml:"hash,attr"`
		Node    string   `xml:"node,attr"`
		Ver     string   `xml:"ver,attr"`
	}
	modtest.Unmarshal(t, d.CapsElement(), &c)
	if c.Hash != "sha-1" || c.Node != CapsNode {
		t.Errorf("caps element %s", d.CapsElement())
	}
	// The ver must be what a client computes from the disco#info answer.
	b, err := d.serverInfoIQ(context.Background(), modtest.IQ(t, "+15550001111@"+domain+"/a", domain, "get", `<query xmlns="http://jabber.org/protocol/disco#info"/>`))
	if err != nil {
		t.Fatal(err)
	}
	var res discoInfoResult
	modtest.Unmarshal(t, b, &res)
	var ids []info.Identity
	for _, id := range res.Identities {
		ids = append(ids, info.Identity{Category: id.Category, Type: id.Type, Name: id.Name})
	}
	if want := CapsVer(ids, res.vars()); c.Ver != want {
		t.Errorf("ver %q, computed from disco#info %q", c.Ver, want)
	}
	if strings.Contains(string(d.CapsElement()), "'") {
		t.Error("unexpected quoting")
	}
}
