package ext

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"

	"dialtone/xmppd/router"

	"mellium.im/xmpp/stanza"
)

// NSPrivate is the namespace of private XML storage (XEP-0049).
const NSPrivate = "jabber:iq:private"

// Private serves private XML storage (XEP-0049): an account stores
// arbitrary elements for itself, keyed by the element's qualified name
// ("{namespace}localname"), and gets them back. Nobody else may read or
// write them.
type Private struct {
	store PrivateStore
	// MaxSize is the largest element stored under one key, in bytes as
	// re-serialised; zero means DefaultMaxPrivate. Set it before Register.
	MaxSize int
}

// NewPrivate returns the private storage module.
func NewPrivate(store PrivateStore) *Private { return &Private{store: store} }

// Register adds the jabber:iq:private handler for accounts and advertises
// it on them.
func (p *Private) Register(h *router.Hooks) error {
	h.HandleIQ(router.ScopeAccount, router.IQGet|router.IQSet, name(NSPrivate, "query"), p.handle)
	h.AddFeature(router.ScopeAccount, NSPrivate)
	return nil
}

func (p *Private) max() int {
	if p.MaxSize > 0 {
		return p.MaxSize
	}
	return DefaultMaxPrivate
}

// PrivateKey returns the store key of a private element: "{namespace}local".
func PrivateKey(n xml.Name) string { return "{" + n.Space + "}" + n.Local }

// reservedPrivate lists the namespaces a stored element may not be in
// (XEP-0049 §3): they would make the stored data look like a stanza or
// like the storage protocol itself.
func reservedPrivate(ns string) bool {
	switch ns {
	case router.NSClient, router.NSServer, NSPrivate, "":
		return true
	}
	return false
}

var errPrivateReserved = stanzaErr(stanza.Modify, stanza.NotAcceptable, "")

type privateElem struct {
	name xml.Name
	data []byte // re-serialised element (set only)
}

func (p *Private) handle(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	if !isOwn(iq) {
		return nil, errForbidden
	}
	if iq.Type != iqGet && iq.Type != iqSet {
		return nil, errBadRequest
	}
	r, _, err := openPayload(iq)
	if err != nil {
		return nil, errBadRequest
	}
	// Read and check every child before touching the store, so that a
	// request is carried out whole or not at all.
	var elems []privateElem
	for {
		start, ok, err := nextChild(r)
		if err != nil {
			return nil, errBadRequest
		}
		if !ok {
			break
		}
		if reservedPrivate(start.Name.Space) {
			return nil, errPrivateReserved
		}
		e := privateElem{name: start.Name}
		if iq.Type == iqSet {
			e.data, err = copyElement(r, start, p.max())
			if err != nil {
				return nil, payloadError(err, "private data")
			}
		} else if err := skipElement(r); err != nil {
			return nil, errBadRequest
		}
		elems = append(elems, e)
	}
	if len(elems) == 0 {
		// XEP-0049 §3: at least one child element is required.
		return nil, errPrivateReserved
	}
	owner := iq.To.Localpart()

	if iq.Type == iqSet {
		for _, e := range elems {
			data := e.data
			if bytes.Equal(data, emptyElement(e.name)) {
				data = nil // storing the empty element is deleting
			}
			if err := p.store.PutPrivate(ctx, owner, PrivateKey(e.name), data); err != nil {
				return nil, fmt.Errorf("store private %s of %s: %w", PrivateKey(e.name), owner, err)
			}
		}
		return nil, nil
	}

	b := []byte(`<query xmlns="` + NSPrivate + `">`)
	for _, e := range elems {
		data, err := p.store.Private(ctx, owner, PrivateKey(e.name))
		switch {
		case notFound(err) || err == nil && len(data) == 0:
			data = emptyElement(e.name)
		case err != nil:
			return nil, fmt.Errorf("load private %s of %s: %w", PrivateKey(e.name), owner, err)
		}
		b = append(b, data...)
	}
	return append(b, "</query>"...), nil
}
