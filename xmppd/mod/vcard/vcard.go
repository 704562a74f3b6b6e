// Package vcard serves vcard-temp (XEP-0054).
package vcard

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"

	"dialtone/auth"
	"dialtone/xmppd/mod/internal/payload"
	"dialtone/xmppd/router"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// NS is the vcard-temp namespace (XEP-0054).
const NS = "vcard-temp"

// DefaultMax is the largest vCard (re-serialised) stored by default.
const DefaultMax = 64 << 10

// vcardKey is the PrivateStore key of the vCard.
const vcardKey = NS

// Module serves vcard-temp (XEP-0054): anyone may get the vCard of a
// local number (empty when none is stored, account or not); only the
// account itself may set it. The vCard is kept as the XML
// the client sent, re-serialised (so it is well-formed on its own whatever
// prefixes the client used) and bounded in size.
type Module struct {
	r         router.Routing
	store     Store
	observers []Observer
	// MaxSize is the largest vCard stored, in bytes as re-serialised;
	// zero means DefaultMax. Set it before Register.
	MaxSize int
}

// Observer is told of the vCard an account set (nil: it removed it),
// after it is stored; the avatar conversion (XEP-0398) is one.
type Observer func(ctx context.Context, owner jid.JID, card []byte)

// Observe adds an observer of vCards set by accounts. Call it before
// Register.
func (v *Module) Observe(o Observer) { v.observers = append(v.observers, o) }

// New returns the vCard module.
func New(r router.Routing, store Store) *Module {
	return &Module{r: r, store: store}
}

// Register adds the vcard-temp handler for accounts and advertises the
// feature on them and on the server (XEP-0054 §3).
func (v *Module) Register(h *router.Hooks) error {
	h.HandleIQ(router.ScopeAccount, router.IQGet|router.IQSet, xml.Name{Space: NS, Local: "vCard"}, v.handle)
	h.AddFeature(router.ScopeServer|router.ScopeAccount, NS)
	return nil
}

func (v *Module) max() int {
	if v.MaxSize > 0 {
		return v.MaxSize
	}
	return DefaultMax
}

var emptyVCard = payload.Empty(xml.Name{Space: NS, Local: "vCard"})

func (v *Module) handle(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	switch iq.Type {
	case "get":
		// Every valid number has a vCard to others, empty unless its owner
		// stored one: a latent number's reads exactly like an account's
		// without one (SPEC.md: whether a number has an account is not
		// visible to other users).
		return v.load(ctx, iq.To.Localpart())
	case "set":
		if !iq.ToOwnAccount() {
			return nil, router.NewError(stanza.Auth, stanza.Forbidden, "")
		}
		r, start, err := payload.Open(iq)
		if err != nil {
			return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
		}
		b, err := payload.Copy(r, start, v.max())
		if err != nil {
			return nil, payload.Error(err, "vCard")
		}
		if bytes.Equal(b, emptyVCard) {
			b = nil // an empty vCard deletes the stored one
		}
		sctx, cancel := v.r.StoreContext(ctx)
		defer cancel()
		if err := v.store.PutPrivate(sctx, iq.To.Localpart(), vcardKey, b); err != nil {
			return nil, fmt.Errorf("store vCard of %s: %w", iq.To.Localpart(), err)
		}
		for _, o := range v.observers {
			o(ctx, iq.To.Bare(), b)
		}
		return nil, nil
	}
	return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
}

// load returns the stored vCard of owner, or an empty one.
func (v *Module) load(ctx context.Context, owner string) ([]byte, error) {
	sctx, cancel := v.r.StoreContext(ctx)
	defer cancel()
	b, err := v.store.Private(sctx, owner, vcardKey)
	switch {
	case errors.Is(err, auth.ErrNotFound) || err == nil && len(b) == 0:
		return emptyVCard[:len(emptyVCard):len(emptyVCard)], nil
	case err != nil:
		return nil, fmt.Errorf("load vCard of %s: %w", owner, err)
	}
	return b, nil
}

// FullName returns the FN (formatted name) of owner's vCard, "" when it
// has none (for the account page).
func (v *Module) FullName(ctx context.Context, owner string) (string, error) {
	b, err := v.load(ctx, owner)
	if err != nil {
		return "", err
	}
	var card struct {
		FN string `xml:"vcard-temp FN"`
	}
	if err := xml.Unmarshal(b, &card); err != nil {
		return "", fmt.Errorf("stored vCard of %s: %w", owner, err)
	}
	return card.FN, nil
}

// SetFullName sets the FN (formatted name) of owner's vCard, keeping the
// rest of it; an empty fn removes FN. owner is the account's number, as
// the store keys it.
func (v *Module) SetFullName(ctx context.Context, owner, fn string) error {
	return v.replace(ctx, owner, "FN", func(w *payload.Writer) {
		if fn != "" {
			w.Start(xml.StartElement{Name: xml.Name{Space: NS, Local: "FN"}})
			w.Text([]byte(fn))
			w.End()
		}
	})
}

// Photo returns the PHOTO of owner's vCard (XEP-0153): its TYPE and the
// decoded BINVAL; no data when it has none (or only an EXTVAL).
func (v *Module) Photo(ctx context.Context, owner string) (typ string, data []byte, err error) {
	b, err := v.load(ctx, owner)
	if err != nil {
		return "", nil, err
	}
	typ, data = parsePhoto(b)
	return typ, data, nil
}

// parsePhoto reads the PHOTO of a vCard: its TYPE and decoded BINVAL
// (whitespace in the base64 allowed); nothing when there is none or it
// does not decode.
func parsePhoto(card []byte) (typ string, data []byte) {
	var c struct {
		Photo struct {
			Type   string `xml:"vcard-temp TYPE"`
			BinVal string `xml:"vcard-temp BINVAL"`
		} `xml:"vcard-temp PHOTO"`
	}
	if xml.Unmarshal(card, &c) != nil || c.Photo.BinVal == "" {
		return "", nil
	}
	data, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(c.Photo.BinVal), ""))
	if err != nil || len(data) == 0 {
		return "", nil
	}
	return strings.TrimSpace(c.Photo.Type), data
}

// SetPhoto sets the PHOTO of owner's vCard to an image of MIME type typ,
// keeping the rest of it; no data removes PHOTO. The observers are not
// told: this is the server converting, not the account setting its vCard.
func (v *Module) SetPhoto(ctx context.Context, owner, typ string, data []byte) error {
	return v.replace(ctx, owner, "PHOTO", func(w *payload.Writer) {
		if len(data) == 0 {
			return
		}
		w.Start(xml.StartElement{Name: xml.Name{Space: NS, Local: "PHOTO"}})
		if typ != "" {
			w.Start(xml.StartElement{Name: xml.Name{Space: NS, Local: "TYPE"}})
			w.Text([]byte(typ))
			w.End()
		}
		w.Start(xml.StartElement{Name: xml.Name{Space: NS, Local: "BINVAL"}})
		w.Text([]byte(base64.StdEncoding.EncodeToString(data)))
		w.End()
		w.End()
	})
}

// replace rewrites owner's stored vCard with its child elements named
// local replaced by what write writes (first), the rest kept as it is.
func (v *Module) replace(ctx context.Context, owner, local string, write func(w *payload.Writer)) error {
	old, err := v.load(ctx, owner)
	if err != nil {
		return err
	}
	d := xml.NewDecoder(bytes.NewReader(old))
	start, ok, err := payload.NextChild(d)
	if err != nil || !ok || start.Name != (xml.Name{Space: NS, Local: "vCard"}) {
		return fmt.Errorf("stored vCard of %s is not a vCard: %v", owner, err)
	}
	w := payload.NewWriter(v.max())
	w.Start(start)
	write(w)
	for {
		child, ok, err := payload.NextChild(d)
		if err != nil {
			return fmt.Errorf("stored vCard of %s: %w", owner, err)
		}
		if !ok {
			break
		}
		if child.Name == (xml.Name{Space: NS, Local: local}) {
			if err := payload.Skip(d); err != nil {
				return fmt.Errorf("stored vCard of %s: %w", owner, err)
			}
			continue
		}
		w.Start(child)
		if err := w.CopyRest(d); err != nil {
			if errors.Is(err, payload.ErrTooLarge) || errors.Is(err, payload.ErrTooDeep) {
				return router.NewError(stanza.Modify, stanza.PolicyViolation, "vCard is too large")
			}
			return fmt.Errorf("stored vCard of %s: %w", owner, err)
		}
	}
	w.End()
	b, err := w.Bytes()
	if err != nil {
		return router.NewError(stanza.Modify, stanza.PolicyViolation, "vCard is too large")
	}
	if bytes.Equal(b, emptyVCard) {
		b = nil
	}
	sctx, cancel := v.r.StoreContext(ctx)
	defer cancel()
	if err := v.store.PutPrivate(sctx, owner, vcardKey, b); err != nil {
		return fmt.Errorf("store vCard of %s: %w", owner, err)
	}
	return nil
}

// Store keeps each account's vCard as XML under a key. Implemented by
// package storage. owner is the account's canonical number ("+8210…"), the
// localpart of its JID; the value is a standalone XML element that declares
// its own namespace.
type Store interface {
	// Private returns the stored XML for key, or auth.ErrNotFound.
	Private(ctx context.Context, owner, key string) ([]byte, error)
	// PutPrivate stores (replaces) the XML for key; an empty value deletes it.
	PutPrivate(ctx context.Context, owner, key string, data []byte) error
}
