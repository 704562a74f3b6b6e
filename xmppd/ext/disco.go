package ext

import (
	"context"
	"sort"
	"sync"

	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"

	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/disco/info"
)

// Disco answers service discovery (XEP-0030) for the server and, on their
// behalf, for local numbers (accounts or not): disco#info with the features the modules
// registered on the Mux, disco#items with an empty list. It also computes
// the server's entity capabilities (XEP-0115).
type Disco struct {
	hooks *router.Hooks
	r     router.Routing
	name  string

	once       sync.Once
	serverInfo []byte // children of the server's disco#info query
	accInfo    []byte // children of an account's disco#info query
	ver        string
	capsElem   []byte
}

// NewDisco returns the disco module. name is the server identity's name
// (e.g. "Dialtone"). The features are read from the Hooks it is registered
// on when the first request (or CapsElement) comes, so every module must
// have registered by then.
func NewDisco(r router.Routing, name string) *Disco {
	return &Disco{r: r, name: name}
}

// Register adds the disco#info and disco#items handlers for the server and
// for accounts, advertises both namespaces, and offers the entity
// capabilities in the stream features (XEP-0115 §6.3).
func (d *Disco) Register(h *router.Hooks) error {
	d.hooks = h
	both := router.IQGet | router.IQSet
	h.HandleIQ(router.ScopeServer, both, name(disco.NSInfo, "query"), d.serverInfoIQ)
	h.HandleIQ(router.ScopeAccount, both, name(disco.NSInfo, "query"), d.accountInfoIQ)
	h.HandleIQ(router.ScopeServer, both, name(disco.NSItems, "query"), d.serverItemsIQ)
	h.HandleIQ(router.ScopeAccount, both, name(disco.NSItems, "query"), d.accountItemsIQ)
	h.AddFeature(router.ScopeServer|router.ScopeAccount, disco.NSInfo)
	h.AddFeature(router.ScopeServer|router.ScopeAccount, disco.NSItems)
	h.StreamFeature(router.PostAuth, func(router.ConnInfo) []byte { return d.CapsElement() })
	return nil
}

// ServerIdentity returns the identity the server announces.
func (d *Disco) ServerIdentity() info.Identity {
	return info.Identity{Category: "server", Type: "im", Name: d.name}
}

// ServerFeatures returns the sorted features the server announces.
func (d *Disco) ServerFeatures() []string {
	return uniqueSorted(append([]string(nil), d.hooks.DiscoFeatures(router.ScopeServer)...))
}

// AccountFeatures returns the sorted features announced for accounts.
func (d *Disco) AccountFeatures() []string {
	return uniqueSorted(append([]string(nil), d.hooks.DiscoFeatures(router.ScopeAccount)...))
}

// Ver returns the server's XEP-0115 verification string.
func (d *Disco) Ver() string {
	d.init()
	return d.ver
}

func (d *Disco) init() {
	d.once.Do(func() {
		id := d.ServerIdentity()
		feats := d.ServerFeatures()
		d.serverInfo = appendInfo(nil, []info.Identity{id}, feats)
		d.ver = CapsVer([]info.Identity{id}, feats)
		d.capsElem = capsElement(d.ver)
		d.accInfo = appendInfo(nil, []info.Identity{{Category: "account", Type: "registered"}}, d.AccountFeatures())
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

func appendInfo(b []byte, ids []info.Identity, feats []string) []byte {
	for _, id := range ids {
		b = append(b, `<identity category="`...)
		b = wire.AppendEscaped(b, id.Category)
		b = append(b, `" type="`...)
		b = wire.AppendEscaped(b, id.Type)
		b = append(b, '"')
		if id.Name != "" {
			b = append(b, ` name="`...)
			b = wire.AppendEscaped(b, id.Name)
			b = append(b, '"')
		}
		b = append(b, "/>"...)
	}
	for _, f := range feats {
		b = append(b, `<feature var="`...)
		b = wire.AppendEscaped(b, f)
		b = append(b, `"/>`...)
	}
	return b
}

// query wraps children in <query xmlns=ns node=node>.
func query(ns, node string, children []byte) []byte {
	b := make([]byte, 0, len(children)+len(ns)+len(node)+40)
	b = append(b, `<query xmlns="`...)
	b = wire.AppendEscaped(b, ns)
	b = append(b, '"')
	if node != "" {
		b = append(b, ` node="`...)
		b = wire.AppendEscaped(b, node)
		b = append(b, '"')
	}
	if len(children) == 0 {
		return append(b, "/>"...)
	}
	b = append(b, '>')
	b = append(b, children...)
	return append(b, "</query>"...)
}

// discoNode checks the type of a disco request and returns its node.
func discoNode(iq *router.Stanza) (string, error) {
	if iq.Type != iqGet {
		return "", errBadRequest
	}
	_, start, err := openPayload(iq)
	if err != nil {
		return "", errBadRequest
	}
	node, _ := attr(start, "node")
	return node, nil
}

func (d *Disco) serverInfoIQ(_ context.Context, iq *router.Stanza) ([]byte, error) {
	node, err := discoNode(iq)
	if err != nil {
		return nil, err
	}
	d.init()
	if node != "" && node != CapsNode+"#"+d.ver {
		return nil, errItemNotFound
	}
	return query(disco.NSInfo, node, d.serverInfo), nil
}

// accountInfoIQ answers disco#info on a bare JID of the local domain with
// the same identity and features for every valid number, whether an
// account exists or not (SPEC.md: that is not visible to other users).
func (d *Disco) accountInfoIQ(_ context.Context, iq *router.Stanza) ([]byte, error) {
	node, err := discoNode(iq)
	if err != nil {
		return nil, err
	}
	if node != "" {
		return nil, errItemNotFound
	}
	d.init()
	return query(disco.NSInfo, "", d.accInfo), nil
}

func (d *Disco) serverItemsIQ(_ context.Context, iq *router.Stanza) ([]byte, error) {
	node, err := discoNode(iq)
	if err != nil {
		return nil, err
	}
	if node != "" {
		return nil, errItemNotFound
	}
	return query(disco.NSItems, "", nil), nil
}

// accountItemsIQ answers disco#items on a bare JID: an empty list, the
// same for every valid number.
func (d *Disco) accountItemsIQ(_ context.Context, iq *router.Stanza) ([]byte, error) {
	node, err := discoNode(iq)
	if err != nil {
		return nil, err
	}
	if node != "" {
		return nil, errItemNotFound
	}
	return query(disco.NSItems, "", nil), nil
}
