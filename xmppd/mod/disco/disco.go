// Package disco answers service discovery (XEP-0030) and computes the
// server's entity capabilities (XEP-0115).
package disco

import (
	"context"
	"encoding/xml"
	"sort"
	"sync"

	"dialtone/xmppd/mod/internal/payload"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"

	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/disco/info"
	"mellium.im/xmpp/stanza"
)

// Module answers service discovery (XEP-0030) for the server and, on their
// behalf, for local numbers (accounts or not): disco#info with the
// identities and features the modules registered on the Hooks, disco#items
// with the items they listed (none for accounts). It also computes the
// server's entity capabilities (XEP-0115).
type Module struct {
	hooks *router.Hooks
	r     router.Routing
	name  string

	once                sync.Once
	serverIDs, accIDs   []info.Identity
	serverInfo, accInfo func(b *wire.Builder) // children of the disco#info queries
	serverItems         func(b *wire.Builder)
	ver                 string
	capsElem            []byte
}

// New returns the disco module. name is the server identity's name
// (e.g. "Dialtone"). The features are read from the Hooks it is registered
// on when the first request (or CapsElement) comes, so every module must
// have registered by then.
func New(r router.Routing, name string) *Module {
	return &Module{r: r, name: name}
}

// Register adds the disco#info and disco#items handlers for the server and
// for accounts, advertises both namespaces, and offers the entity
// capabilities in the stream features (XEP-0115 §6.3).
func (d *Module) Register(h *router.Hooks) error {
	d.hooks = h
	both := router.IQGet | router.IQSet
	h.HandleIQ(router.ScopeServer, both, xml.Name{Space: disco.NSInfo, Local: "query"}, d.serverInfoIQ)
	h.HandleIQ(router.ScopeAccount, both, xml.Name{Space: disco.NSInfo, Local: "query"}, d.accountInfoIQ)
	h.HandleIQ(router.ScopeServer, both, xml.Name{Space: disco.NSItems, Local: "query"}, d.serverItemsIQ)
	h.HandleIQ(router.ScopeAccount, both, xml.Name{Space: disco.NSItems, Local: "query"}, d.accountItemsIQ)
	h.AddFeature(router.ScopeServer|router.ScopeAccount, disco.NSInfo)
	h.AddFeature(router.ScopeServer|router.ScopeAccount, disco.NSItems)
	h.AddIdentity(router.ScopeServer, router.Identity{Category: "server", Type: "im", Name: d.name})
	h.AddIdentity(router.ScopeAccount, router.Identity{Category: "account", Type: "registered"})
	h.StreamFeature(router.PostAuth, func(router.ConnInfo) []byte { return d.CapsElement() })
	return nil
}

// identities returns the identities registered in scope.
func (d *Module) identities(scope router.Scope) []info.Identity {
	var out []info.Identity
	for _, id := range d.hooks.DiscoIdentities(scope) {
		out = append(out, info.Identity{Category: id.Category, Type: id.Type, Name: id.Name, Lang: id.Lang})
	}
	return out
}

// ServerFeatures returns the sorted features the server announces.
func (d *Module) ServerFeatures() []string {
	return uniqueSorted(append([]string(nil), d.hooks.DiscoFeatures(router.ScopeServer)...))
}

// AccountFeatures returns the sorted features announced for accounts.
func (d *Module) AccountFeatures() []string {
	return uniqueSorted(append([]string(nil), d.hooks.DiscoFeatures(router.ScopeAccount)...))
}

// Ver returns the server's XEP-0115 verification string.
func (d *Module) Ver() string {
	d.init()
	return d.ver
}

func (d *Module) init() {
	d.once.Do(func() {
		d.serverIDs, d.accIDs = d.identities(router.ScopeServer), d.identities(router.ScopeAccount)
		feats, accFeats := d.ServerFeatures(), d.AccountFeatures()
		d.serverInfo = func(b *wire.Builder) { appendInfo(b, d.serverIDs, feats) }
		d.accInfo = func(b *wire.Builder) { appendInfo(b, d.accIDs, accFeats) }
		items := d.hooks.DiscoItems(router.ScopeServer)
		d.serverItems = func(b *wire.Builder) {
			for _, it := range items {
				b.Start("item", "jid", it.JID, "node", it.Node, "name", it.Name).End()
			}
		}
		d.ver = CapsVer(d.serverIDs, feats)
		d.capsElem = capsElement(d.ver)
	})
}

func uniqueSorted(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func appendInfo(b *wire.Builder, ids []info.Identity, feats []string) {
	for _, id := range ids {
		b.Start("identity", "category", id.Category, "type", id.Type, "name", id.Name, "xml:lang", id.Lang).End()
	}
	for _, f := range feats {
		b.Start("feature", "var", f).End()
	}
}

// query returns <query xmlns=ns node=node> around the children fill writes.
func query(ns, node string, fill func(b *wire.Builder)) []byte {
	b := wire.NewBuilder(nil)
	b.StartNS("query", ns, "node", node)
	if fill != nil {
		fill(b)
	}
	return b.End().Bytes()
}

// discoNode checks the type of a disco request and returns its node.
func discoNode(iq *router.Stanza) (string, error) {
	if iq.Type != "get" {
		return "", router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	_, start, err := payload.Open(iq)
	if err != nil {
		return "", router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	node, _ := payload.Attr(start, "node")
	return node, nil
}

func (d *Module) serverInfoIQ(_ context.Context, iq *router.Stanza) ([]byte, error) {
	node, err := discoNode(iq)
	if err != nil {
		return nil, err
	}
	d.init()
	if node != "" && node != CapsNode+"#"+d.ver {
		return nil, router.NewError(stanza.Cancel, stanza.ItemNotFound, "")
	}
	return query(disco.NSInfo, node, d.serverInfo), nil
}

// accountInfoIQ answers disco#info on a bare JID of the local domain with
// the same identity and features for every valid number, whether an
// account exists or not (SPEC.md: that is not visible to other users).
func (d *Module) accountInfoIQ(_ context.Context, iq *router.Stanza) ([]byte, error) {
	node, err := discoNode(iq)
	if err != nil {
		return nil, err
	}
	if node != "" {
		return nil, router.NewError(stanza.Cancel, stanza.ItemNotFound, "")
	}
	d.init()
	return query(disco.NSInfo, "", d.accInfo), nil
}

func (d *Module) serverItemsIQ(_ context.Context, iq *router.Stanza) ([]byte, error) {
	node, err := discoNode(iq)
	if err != nil {
		return nil, err
	}
	if node != "" {
		return nil, router.NewError(stanza.Cancel, stanza.ItemNotFound, "")
	}
	d.init()
	return query(disco.NSItems, "", d.serverItems), nil
}

// accountItemsIQ answers disco#items on a bare JID: an empty list, the
// same for every valid number.
func (d *Module) accountItemsIQ(_ context.Context, iq *router.Stanza) ([]byte, error) {
	node, err := discoNode(iq)
	if err != nil {
		return nil, err
	}
	if node != "" {
		return nil, router.NewError(stanza.Cancel, stanza.ItemNotFound, "")
	}
	return query(disco.NSItems, "", nil), nil
}
