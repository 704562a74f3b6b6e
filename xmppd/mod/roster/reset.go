package roster

import (
	"context"
	"errors"
	"fmt"

	"dialtone/auth"
	"dialtone/roster"
	"dialtone/xmppd/router"

	"mellium.im/xmpp/jid"
)

// Reset empties owner's roster the way the user removing every item would
// (RFC 6121 §2.5.2): each contact is sent unsubscribed and unsubscribe for
// the subscriptions and requests that exist, so local contacts' rosters
// change (and are pushed) at once, and the item is deleted. Items kept
// only for a pending inbound request are removed too, the request denied.
// It is the first step of recycling a number for a new owner (SPEC.md
// "Accounts"), who must not inherit the old owner's contacts.
func (m *Module) Reset(ctx context.Context, owner jid.JID) error {
	user := owner.Bare()
	sctx, cancel := m.storeCtx(ctx)
	items, _, err := m.store.Roster(sctx, user.Localpart())
	cancel()
	if err != nil {
		return fmt.Errorf("roster: reset roster of %s: %w", user, err)
	}
	var errs []error
	for _, listed := range items {
		contact, err := jid.Parse(listed.Contact)
		if err != nil {
			// Stored by this module, so it parsed once; drop it regardless.
			contact = jid.JID{}
		}
		it, version, err := m.deleteItem(ctx, user.Localpart(), listed.Contact)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if it == nil {
			continue // gone meanwhile
		}
		if it.InRoster {
			m.push(user, *it, true, version)
		}
		if contact.Equal(jid.JID{}) {
			continue
		}
		if roster.HasFrom(*it) || it.PendingIn {
			m.r.Route(ctx, &router.Stanza{Kind: router.KindPresence, Type: "unsubscribed", From: user, To: contact})
			if roster.HasFrom(*it) {
				m.unavailableOf(ctx, user, contact)
			}
		}
		if roster.HasTo(*it) || it.PendingOut {
			m.r.Route(ctx, &router.Stanza{Kind: router.KindPresence, Type: "unsubscribe", From: user, To: contact})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("roster: reset roster of %s: %w", user, err)
	}
	return nil
}

// deleteItem reads and deletes one item under the account lock and
// returns it as it was (nil when it was already gone) with the version
// after the delete.
func (m *Module) deleteItem(ctx context.Context, owner, contact string) (*roster.Item, int64, error) {
	unlock := m.accounts.lock(owner)
	defer unlock()
	sctx, cancel := m.storeCtx(ctx)
	defer cancel()
	it, err := m.store.RosterItem(sctx, owner, contact)
	if errors.Is(err, auth.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read item %s: %w", contact, err)
	}
	version, err := m.store.DeleteRosterItem(sctx, owner, contact)
	if err != nil {
		return nil, 0, fmt.Errorf("delete item %s: %w", contact, err)
	}
	return &it, version, nil
}

// unavailableOf routes unavailable presence from each available resource
// of user to the address to (RFC 6121 §3.2.2, §3.3.3): the contact no
// longer sees the user.
func (m *Module) unavailableOf(ctx context.Context, user, to jid.JID) {
	for _, s := range m.r.Sessions(user) {
		if s.Available() {
			m.r.Route(ctx, &router.Stanza{Kind: router.KindPresence, Type: "unavailable", From: s.JID(), To: to})
		}
	}
}
