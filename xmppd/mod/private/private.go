// Package private serves private XML storage (XEP-0049).
package private

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"

	"dialtone/auth"
	"dialtone/xmppd/mod/internal/payload"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// NS is the namespace of private XML storage (XEP-0049).
const NS = "jabber:iq:private"

// DefaultMax is the largest element stored under one key by default.
const DefaultMax = 64 << 10

// Module serves private XML storage (XEP-0049): an account stores
// arbitrary elements for itself, keyed by the element's qualified name
// ("{namespace}localname"), and gets them back. Nobody else may read or
// write them.
type Module struct {
	r         router.Routing
	store     Store
	observers []Observer
	// MaxSize is the largest element stored under one key, in bytes as
	// re-serialised; zero means DefaultMax. Set it before Register.
	MaxSize int
}

// Observer is told of an element an account stored (data nil: it
// removed it), by its key, after it is stored; the XEP-0402 bookmarks
// compatibility is one.
type Observer func(ctx context.Context, owner jid.JID, key string, data []byte)

// Observe adds an observer of what accounts store. Call it before
// Register.
func (p *Module) Observe(o Observer) { p.observers = append(p.observers, o) }

// New returns the private storage module.
func New(r router.Routing, store Store) *Module { return &Module{r: r, store: store} }

// Register adds the jabber:iq:private handler for accounts and advertises
// it on them.
func (p *Module) Register(h *router.Hooks) error {
	h.HandleIQ(router.ScopeAccount, router.IQGet|router.IQSet, xml.Name{Space: NS, Local: "query"}, p.handle)
	h.AddFeature(router.ScopeAccount, NS)
	return nil
}

func (p *Module) max() int {
	if p.MaxSize > 0 {
		return p.MaxSize
	}
	return DefaultMax
}

// Key returns the store key of a private element: "{namespace}local".
func Key(n xml.Name) string { return "{" + n.Space + "}" + n.Local }

// reservedPrivate lists the namespaces a stored element may not be in
// (XEP-0049 §3): they would make the stored data look like a stanza or
// like the storage protocol itself.
func reservedPrivate(ns string) bool {
	switch ns {
	case router.NSClient, router.NSServer, NS, "":
		return true
	}
	return false
}

var errPrivateReserved = router.NewError(stanza.Modify, stanza.NotAcceptable, "")

type privateElem struct {
	name xml.Name
	data []byte // re-serialised element (set only)
}

func (p *Module) handle(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	if !iq.ToOwnAccount() {
		return nil, router.NewError(stanza.Auth, stanza.Forbidden, "")
	}
	if iq.Type != "get" && iq.Type != "set" {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	r, _, err := payload.Open(iq)
	if err != nil {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	// Read and check every child before touching the store, so that a
	// request is carried out whole or not at all.
	var elems []privateElem
	for {
		start, ok, err := payload.NextChild(r)
		if err != nil {
			return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
		}
		if !ok {
			break
		}
		if reservedPrivate(start.Name.Space) {
			return nil, errPrivateReserved
		}
		e := privateElem{name: start.Name}
		if iq.Type == "set" {
			e.data, err = payload.Copy(r, start, p.max())
			if err != nil {
				return nil, payload.Error(err, "private data")
			}
		} else if err := payload.Skip(r); err != nil {
			return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
		}
		elems = append(elems, e)
	}
	if len(elems) == 0 {
		// XEP-0049 §3: at least one child element is required.
		return nil, errPrivateReserved
	}
	owner := iq.To.Localpart()
	sctx, cancel := p.r.StoreContext(ctx)
	defer cancel()

	if iq.Type == "set" {
		for _, e := range elems {
			data := e.data
			if bytes.Equal(data, payload.Empty(e.name)) {
				data = nil // storing the empty element is deleting
			}
			if err := p.store.PutPrivate(sctx, owner, Key(e.name), data); err != nil {
				return nil, fmt.Errorf("store private %s of %s: %w", Key(e.name), owner, err)
			}
			for _, o := range p.observers {
				o(ctx, iq.To.Bare(), Key(e.name), data)
			}
		}
		return nil, nil
	}

	b := wire.NewBuilder(nil)
	b.StartNS("query", NS)
	for _, e := range elems {
		data, err := p.store.Private(sctx, owner, Key(e.name))
		switch {
		case errors.Is(err, auth.ErrNotFound) || err == nil && len(data) == 0:
			data = payload.Empty(e.name)
		case err != nil:
			return nil, fmt.Errorf("load private %s of %s: %w", Key(e.name), owner, err)
		}
		b.Raw(data)
	}
	return b.End().Bytes(), nil
}

// Store keeps per-account XML blobs under a key ("{namespace}local").
// Implemented by package storage; owner is the account's canonical number.
type Store interface {
	// Private returns the stored XML for key, or auth.ErrNotFound.
	Private(ctx context.Context, owner, key string) ([]byte, error)
	// PutPrivate stores (replaces) the XML for key; an empty value deletes it.
	PutPrivate(ctx context.Context, owner, key string, data []byte) error
}
