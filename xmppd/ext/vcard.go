package ext

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"

	"dialtone/xmppd/router"

	"mellium.im/xmpp/stanza"
)

// NSVCard is the vcard-temp namespace (XEP-0054).
const NSVCard = "vcard-temp"

// vcardKey is the PrivateStore key of the vCard.
const vcardKey = NSVCard

// VCard serves vcard-temp (XEP-0054): anyone may get the vCard of a
// local number (empty when none is stored, account or not); only the
// account itself may set it. The vCard is kept as the XML
// the client sent, re-serialised (so it is well-formed on its own whatever
// prefixes the client used) and bounded in size.
type VCard struct {
	r     router.Routing
	store PrivateStore
	// MaxSize is the largest vCard stored, in bytes as re-serialised;
	// zero means DefaultMaxVCard. Set it before Register.
	MaxSize int
}

// NewVCard returns the vCard module.
func NewVCard(r router.Routing, store PrivateStore) *VCard {
	return &VCard{r: r, store: store}
}

// Register adds the vcard-temp handler for accounts and advertises the
// feature on them and on the server (XEP-0054 §3).
func (v *VCard) Register(h *router.Hooks) error {
	h.HandleIQ(router.ScopeAccount, router.IQGet|router.IQSet, name(NSVCard, "vCard"), v.handle)
	h.AddFeature(router.ScopeServer|router.ScopeAccount, NSVCard)
	return nil
}

func (v *VCard) max() int {
	if v.MaxSize > 0 {
		return v.MaxSize
	}
	return DefaultMaxVCard
}

var emptyVCard = emptyElement(name(NSVCard, "vCard"))

func (v *VCard) handle(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	switch iq.Type {
	case iqGet:
		// Every valid number has a vCard to others, empty unless its owner
		// stored one: a latent number's reads exactly like an account's
		// without one (SPEC.md: whether a number has an account is not
		// visible to other users).
		return v.load(ctx, iq.To.Localpart())
	case iqSet:
		if !isOwn(iq) {
			return nil, errForbidden
		}
		r, start, err := openPayload(iq)
		if err != nil {
			return nil, errBadRequest
		}
		b, err := copyElement(r, start, v.max())
		if err != nil {
			return nil, payloadError(err, "vCard")
		}
		if bytes.Equal(b, emptyVCard) {
			b = nil // an empty vCard deletes the stored one
		}
		if err := v.store.PutPrivate(ctx, iq.To.Localpart(), vcardKey, b); err != nil {
			return nil, fmt.Errorf("store vCard of %s: %w", iq.To.Localpart(), err)
		}
		return nil, nil
	}
	return nil, errBadRequest
}

// load returns the stored vCard of owner, or an empty one.
func (v *VCard) load(ctx context.Context, owner string) ([]byte, error) {
	b, err := v.store.Private(ctx, owner, vcardKey)
	switch {
	case notFound(err) || err == nil && len(b) == 0:
		return emptyVCard[:len(emptyVCard):len(emptyVCard)], nil
	case err != nil:
		return nil, fmt.Errorf("load vCard of %s: %w", owner, err)
	}
	return b, nil
}

// FullName returns the FN (formatted name) of owner's vCard, "" when it
// has none (for the account page).
func (v *VCard) FullName(ctx context.Context, owner string) (string, error) {
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
func (v *VCard) SetFullName(ctx context.Context, owner, fn string) error {
	old, err := v.load(ctx, owner)
	if err != nil {
		return err
	}
	d := xml.NewDecoder(bytes.NewReader(old))
	start, ok, err := nextChild(d)
	if err != nil || !ok || start.Name != name(NSVCard, "vCard") {
		return fmt.Errorf("stored vCard of %s is not a vCard: %v", owner, err)
	}
	w := newElementWriter(v.max())
	w.start(start)
	if fn != "" {
		w.start(xml.StartElement{Name: name(NSVCard, "FN")})
		w.text([]byte(fn))
		w.end()
	}
	for {
		child, ok, err := nextChild(d)
		if err != nil {
			return fmt.Errorf("stored vCard of %s: %w", owner, err)
		}
		if !ok {
			break
		}
		if child.Name == name(NSVCard, "FN") {
			if err := skipElement(d); err != nil {
				return fmt.Errorf("stored vCard of %s: %w", owner, err)
			}
			continue
		}
		w.start(child)
		if err := w.copyRest(d); err != nil {
			if errors.Is(err, errTooLarge) || errors.Is(err, errTooDeep) {
				return stanzaErr(stanza.Modify, stanza.PolicyViolation, "vCard is too large")
			}
			return fmt.Errorf("stored vCard of %s: %w", owner, err)
		}
	}
	w.end()
	if w.err != nil {
		return stanzaErr(stanza.Modify, stanza.PolicyViolation, "vCard is too large")
	}
	b := w.b
	if bytes.Equal(b, emptyVCard) {
		b = nil
	}
	if err := v.store.PutPrivate(ctx, owner, vcardKey, b); err != nil {
		return fmt.Errorf("store vCard of %s: %w", owner, err)
	}
	return nil
}
