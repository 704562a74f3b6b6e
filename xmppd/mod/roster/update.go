package roster

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/auth"
	"dialtone/roster"
)

// Change is the outcome of one read-modify-write of a roster item.
type Change struct {
	Old, New roster.Item
	Existed  bool  // an item was stored before
	Deleted  bool  // the item was removed (no state left, not in roster)
	Changed  bool  // the store was written
	Version  int64 // roster version after the write
}

// pushNeeded reports whether the change is visible to the user's clients.
func (c Change) pushNeeded() bool { return c.Changed && !roster.SameView(c.Old, c.New) }

// ErrFull means that a change would add an item to a roster that already
// holds MaxItems.
var ErrFull = errors.New("roster: the roster is full")

// FullError is the error a client gets for one item more than MaxItems
// (SPEC.md "Limits on what clients send").
func (m *Module) FullError() stanza.Error {
	return stanza.Error{Type: stanza.Cancel, Condition: stanza.NotAllowed, Text: map[string]string{
		"": fmt.Sprintf("policy-violation: a roster holds at most %d items", m.MaxItems)}}
}

// Mode says on whose behalf Update runs.
type Mode int

const (
	// OwnChange: the user changes its own roster.
	OwnChange Mode = iota
	// FromOther: a stanza from another user changes it. Its cost must not
	// tell the sender whether the addressee has an account or what its
	// roster holds (SPEC.md: whether a number has an account is not
	// visible to other users), so the store is asked the same things
	// whatever the outcome: the item, the count, and one write.
	FromOther
	// FromOtherLatent: as FromOther, for a number without an account:
	// nothing is stored and no change is reported, and the write is one
	// that stores nothing.
	FromOtherLatent
)

// noContact is a contact no roster holds (contacts are JIDs): deleting it
// is a write transaction that changes nothing.
const noContact = ""

// Update reads the item of contact in user's roster (a new "none" item
// when there is none), lets fn change it, and stores the result: deleted
// when it holds nothing and is not in the roster. A new item beyond
// MaxItems is ErrFull. The account lock is held only around the store
// calls.
func (m *Module) Update(ctx context.Context, user, contact jid.JID, mode Mode, fn func(*roster.Item)) (Change, error) {
	owner := user.Localpart()
	key := contact.String()
	unlock := m.accounts.lock(owner)
	defer unlock()

	sctx, cancel := m.storeCtx(ctx)
	defer cancel()
	it, err := m.store.RosterItem(sctx, owner, key)
	var c Change
	switch {
	case err == nil:
		c.Existed = true
		if it.Subscription == "" {
			it.Subscription = roster.SubNone
		}
	case errors.Is(err, auth.ErrNotFound):
		it = roster.Item{Contact: key, Subscription: roster.SubNone}
	default:
		return c, fmt.Errorf("roster: read roster item %s of %s: %w", key, owner, err)
	}
	c.Old = it
	c.Old.Groups = slices.Clone(it.Groups)
	fn(&it)
	c.New = it

	write := !roster.SameState(c.Old, c.New)
	remove := write && !it.InRoster && roster.Empty(it)
	if remove && !c.Existed {
		write = false // nothing to delete
	}
	grows := write && !remove && !c.Existed
	uniform := mode != OwnChange
	full := false
	if grows || uniform {
		if full, err = m.isFull(sctx, owner); err != nil {
			return c, err
		}
	}
	refused := grows && full
	if !write || refused || mode == FromOtherLatent {
		if uniform {
			if _, err := m.store.DeleteRosterItem(sctx, owner, noContact); err != nil {
				return c, fmt.Errorf("roster: roster of %s: %w", owner, err)
			}
		}
		c.New = c.Old
		if refused {
			return c, ErrFull
		}
		return c, nil
	}
	if remove {
		c.Version, err = m.store.DeleteRosterItem(sctx, owner, key)
		if err != nil {
			return c, fmt.Errorf("roster: delete roster item %s of %s: %w", key, owner, err)
		}
		c.Deleted, c.Changed = true, true
		return c, nil
	}
	c.Version, err = m.store.PutRosterItem(sctx, owner, it)
	if err != nil {
		return c, fmt.Errorf("roster: store roster item %s of %s: %w", key, owner, err)
	}
	c.Changed = true
	return c, nil
}

// isFull reports whether owner's roster holds MaxItems items or more.
func (m *Module) isFull(ctx context.Context, owner string) (bool, error) {
	if m.MaxItems <= 0 {
		return false, nil
	}
	n, err := m.store.RosterCount(ctx, owner)
	if err != nil {
		return false, fmt.Errorf("roster: count roster items of %s: %w", owner, err)
	}
	return n >= m.MaxItems, nil
}

// Push sends a roster push for c when the user's clients would see it.
func (m *Module) Push(user jid.JID, c Change) {
	if c.pushNeeded() {
		m.push(user, c.New, false, c.Version)
	}
}

// Items returns the user's items (those kept only for a pending request
// included); a store error is logged and reported as ok=false.
func (m *Module) Items(ctx context.Context, user jid.JID) (items []roster.Item, ok bool) {
	sctx, cancel := m.storeCtx(ctx)
	defer cancel()
	items, _, err := m.store.Roster(sctx, user.Localpart())
	if err != nil {
		m.log.Error("load roster", "user", user.String(), "err", err)
		return nil, false
	}
	return items, true
}

// Item returns the user's item of contact, or auth.ErrNotFound.
func (m *Module) Item(ctx context.Context, user, contact jid.JID) (roster.Item, error) {
	sctx, cancel := m.storeCtx(ctx)
	defer cancel()
	return m.store.RosterItem(sctx, user.Localpart(), contact.String())
}
