package im

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"dialtone/auth"
	"dialtone/xmppd/router"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// The transitions of RFC 6121 Appendix A on the server-side state of one
// roster item (Subscription, PendingOut, PendingIn). Each returns the new
// item; "no state change" returns it unchanged. They do not touch Approved
// or InRoster, which the callers handle (§3.4, §3.1.3).

// outSubscribe is A.2.1: the user sends subscribe to the contact.
func outSubscribe(it Item) Item {
	if (it.Subscription == SubNone || it.Subscription == SubFrom) && !it.PendingOut {
		it.PendingOut = true
	}
	return it
}

// outUnsubscribe is A.2.2: the user sends unsubscribe to the contact.
func outUnsubscribe(it Item) Item {
	it.PendingOut = false
	it.Subscription = dropTo(it.Subscription)
	return it
}

// outSubscribed is A.2.3: the user approves the contact's request.
func outSubscribed(it Item) Item {
	if it.PendingIn {
		it.PendingIn = false
		it.Subscription = addFrom(it.Subscription)
	}
	return it
}

// outUnsubscribed is A.2.4: the user denies or cancels the contact's
// subscription.
func outUnsubscribed(it Item) Item {
	it.PendingIn = false
	it.Subscription = dropFrom(it.Subscription)
	return it
}

// inSubscribe is A.3.1: the contact asks for the user's presence. A
// contact that already has 'from' is auto-answered by the caller.
func inSubscribe(it Item) Item {
	if (it.Subscription == SubNone || it.Subscription == SubTo) && !it.PendingIn {
		it.PendingIn = true
	}
	return it
}

// inUnsubscribe is A.3.2: the contact no longer wants the user's presence.
func inUnsubscribe(it Item) Item {
	it.PendingIn = false
	it.Subscription = dropFrom(it.Subscription)
	return it
}

// inSubscribed is A.3.3: the contact approved the user's request.
func inSubscribed(it Item) Item {
	if it.PendingOut {
		it.PendingOut = false
		it.Subscription = addTo(it.Subscription)
	}
	return it
}

// inUnsubscribed is A.3.4: the contact denied or cancelled the user's
// subscription.
func inUnsubscribed(it Item) Item {
	it.PendingOut = false
	it.Subscription = dropTo(it.Subscription)
	return it
}

func addFrom(s string) string {
	switch s {
	case SubNone:
		return SubFrom
	case SubTo:
		return SubBoth
	}
	return s
}

func addTo(s string) string {
	switch s {
	case SubNone:
		return SubTo
	case SubFrom:
		return SubBoth
	}
	return s
}

func dropFrom(s string) string {
	switch s {
	case SubFrom:
		return SubNone
	case SubBoth:
		return SubTo
	}
	return s
}

func dropTo(s string) string {
	switch s {
	case SubTo:
		return SubNone
	case SubBoth:
		return SubFrom
	}
	return s
}

// hasFrom reports whether the contact receives the user's presence.
func hasFrom(it Item) bool { return it.Subscription == SubFrom || it.Subscription == SubBoth }

// hasTo reports whether the user receives the contact's presence.
func hasTo(it Item) bool { return it.Subscription == SubTo || it.Subscription == SubBoth }

// empty reports whether an item holds no subscription state at all.
func empty(it Item) bool {
	return it.Subscription == SubNone && !it.PendingIn && !it.PendingOut && !it.Approved
}

// sameState reports whether two items have the same stored state (groups
// compared in order).
func sameState(a, b Item) bool {
	return a.Contact == b.Contact && a.Name == b.Name && a.Subscription == b.Subscription &&
		a.PendingOut == b.PendingOut && a.PendingIn == b.PendingIn && a.Approved == b.Approved &&
		a.InRoster == b.InRoster && slices.Equal(a.Groups, b.Groups)
}

// sameView reports whether a client would see the same roster item
// (RFC 6121 §2.1.2: pending-in is not shown; items not in the roster are
// not shown at all).
func sameView(a, b Item) bool {
	if !a.InRoster && !b.InRoster {
		return true
	}
	return a.InRoster == b.InRoster && a.Name == b.Name && a.Subscription == b.Subscription &&
		a.PendingOut == b.PendingOut && a.Approved == b.Approved && slices.Equal(a.Groups, b.Groups)
}

// change is the outcome of one read-modify-write of a roster item.
type change struct {
	old, new Item
	existed  bool  // an item was stored before
	deleted  bool  // the item was removed (no state left, not in roster)
	changed  bool  // the store was written
	version  int64 // roster version after the write
}

// pushNeeded reports whether the change is visible to the user's clients.
func (c change) pushNeeded() bool { return c.changed && !sameView(c.old, c.new) }

// errRosterFull means that a change would add an item to a roster that
// already holds MaxItems.
var errRosterFull = errors.New("im: the roster is full")

// rosterFull is the error a client gets for one item more than MaxItems
// (SPEC.md "Limits on what clients send").
func (m *Module) rosterFull() stanza.Error {
	return stanza.Error{Type: stanza.Cancel, Condition: stanza.NotAllowed, Text: map[string]string{
		"": fmt.Sprintf("policy-violation: a roster holds at most %d items", m.MaxItems)}}
}

// update reads the item of contact in user's roster (a new "none" item
// when there is none), lets fn change it, and stores the result: deleted
// when it holds nothing and is not in the roster. A new item beyond
// MaxItems is errRosterFull. The account lock is held only around the
// store calls.
func (m *Module) update(ctx context.Context, user, contact jid.JID, fn func(*Item)) (change, error) {
	return m.updateItem(ctx, user, contact, ownChange, fn)
}

// updateMode says on whose behalf updateItem runs.
type updateMode int

const (
	// ownChange: the user changes its own roster.
	ownChange updateMode = iota
	// fromOther: a stanza from another user changes it. Its cost must not
	// tell the sender whether the addressee has an account or what its
	// roster holds (SPEC.md: whether a number has an account is not
	// visible to other users), so the store is asked the same things
	// whatever the outcome: the item, the count, and one write.
	fromOther
	// fromOtherLatent: as fromOther, for a number without an account:
	// nothing is stored and no change is reported, and the write is one
	// that stores nothing.
	fromOtherLatent
)

// noContact is a contact no roster holds (contacts are JIDs): deleting it
// is a write transaction that changes nothing.
const noContact = ""

func (m *Module) updateItem(ctx context.Context, user, contact jid.JID, mode updateMode, fn func(*Item)) (change, error) {
	owner := user.Localpart()
	key := contact.String()
	unlock := m.accounts.lock(owner)
	defer unlock()

	sctx, cancel := m.storeCtx(ctx)
	defer cancel()
	it, err := m.store.RosterItem(sctx, owner, key)
	var c change
	switch {
	case err == nil:
		c.existed = true
		if it.Subscription == "" {
			it.Subscription = SubNone
		}
	case errors.Is(err, auth.ErrNotFound):
		it = Item{Contact: key, Subscription: SubNone}
	default:
		return c, fmt.Errorf("im: read roster item %s of %s: %w", key, owner, err)
	}
	c.old = it
	c.old.Groups = slices.Clone(it.Groups)
	fn(&it)
	c.new = it

	write := !sameState(c.old, c.new)
	remove := write && !it.InRoster && empty(it)
	if remove && !c.existed {
		write = false // nothing to delete
	}
	grows := write && !remove && !c.existed
	uniform := mode != ownChange
	full := false
	if grows || uniform {
		if full, err = m.isFull(sctx, owner); err != nil {
			return c, err
		}
	}
	refused := grows && full
	if !write || refused || mode == fromOtherLatent {
		if uniform {
			if _, err := m.store.DeleteRosterItem(sctx, owner, noContact); err != nil {
				return c, fmt.Errorf("im: roster of %s: %w", owner, err)
			}
		}
		c.new = c.old
		if refused {
			return c, errRosterFull
		}
		return c, nil
	}
	if remove {
		c.version, err = m.store.DeleteRosterItem(sctx, owner, key)
		if err != nil {
			return c, fmt.Errorf("im: delete roster item %s of %s: %w", key, owner, err)
		}
		c.deleted, c.changed = true, true
		return c, nil
	}
	c.version, err = m.store.PutRosterItem(sctx, owner, it)
	if err != nil {
		return c, fmt.Errorf("im: store roster item %s of %s: %w", key, owner, err)
	}
	c.changed = true
	return c, nil
}

// isFull reports whether owner's roster holds MaxItems items or more.
func (m *Module) isFull(ctx context.Context, owner string) (bool, error) {
	if m.MaxItems <= 0 {
		return false, nil
	}
	n, err := m.store.RosterCount(ctx, owner)
	if err != nil {
		return false, fmt.Errorf("im: count roster items of %s: %w", owner, err)
	}
	return n >= m.MaxItems, nil
}

// pushChange sends a roster push for c when the user's clients would see it.
func (m *Module) pushChange(user jid.JID, c change) {
	if c.pushNeeded() {
		m.push(user, c.new, false, c.version)
	}
}

// outboundSubscription handles subscribe, subscribed, unsubscribe and
// unsubscribed sent by a local session (RFC 6121 §3.1.2, §3.1.5, §3.2.2,
// §3.3.2, §3.4): the user's item changes per Appendix A.2, the change is
// pushed, and the stanza is routed to the contact from the user's bare JID.
// The push goes first so that the user's clients never see it after the
// contact's answer, which for a local contact arrives during Route.
func (m *Module) outboundSubscription(ctx context.Context, p *router.Stanza) {
	user := p.From.Bare()
	if p.To.Equal(jid.JID{}) || p.ToAbsent {
		m.presenceError(p, badRequest("subscription presence needs a 'to'"))
		return
	}
	contact, err := m.r.Normalize(p.To.Bare())
	if err != nil {
		m.presenceError(p, asStanzaError(err))
		return
	}
	contact = contact.Bare()
	if contact.Equal(user) {
		// One is always subscribed to oneself (RFC 6121 §4.2.2); nothing to do.
		return
	}
	out := p.Clone()
	out.From, out.To, out.ToAbsent = user, contact, false

	var (
		c         change
		route     = true
		sendPres  bool // send the user's presence to the contact
		sendUnav  bool // send unavailable from the user's resources
		preapprov bool
	)
	switch p.Type {
	case typeSubscribe:
		c, err = m.update(ctx, user, contact, func(it *Item) {
			*it = outSubscribe(*it)
			it.InRoster = true
		})
	case typeUnsubscribe:
		c, err = m.update(ctx, user, contact, func(it *Item) { *it = outUnsubscribe(*it) })
	case typeSubscribed:
		c, err = m.update(ctx, user, contact, func(it *Item) {
			switch {
			case it.PendingIn:
				*it = outSubscribed(*it)
				it.Approved = false
				it.InRoster = true
			case it.Subscription == SubNone || it.Subscription == SubTo:
				// Pre-approval (§3.4): remembered, not routed.
				preapprov = true
				it.Approved = true
				it.InRoster = true
			}
		})
		route = !preapprov
		sendPres = !preapprov
	case typeUnsubscribed:
		c, err = m.update(ctx, user, contact, func(it *Item) {
			*it = outUnsubscribed(*it)
			it.Approved = false
		})
	}
	if errors.Is(err, errRosterFull) {
		m.presenceError(p, m.rosterFull())
		return
	}
	if err != nil {
		m.log.Error("outbound subscription", "type", p.Type, "from", p.From.String(), "to", contact.String(), "err", err)
		m.presenceError(p, internalError())
		return
	}
	if p.Type == typeUnsubscribed {
		sendUnav = hasFrom(c.old) && !hasFrom(c.new)
	}
	m.pushChange(user, c)
	if route {
		m.r.Route(ctx, out)
	}
	if sendPres {
		m.sendPresenceOf(ctx, user, contact, false)
	}
	if sendUnav {
		m.sendUnavailableOf(ctx, user, contact)
	}
}

// inboundSubscription handles subscription stanzas addressed to a local
// account (RFC 6121 §3.1.3, §3.1.6, §3.2.3, §3.3.3; Appendix A.3). A
// stanza that changes nothing is not delivered.
//
// A latent number (no account) stores nothing and answers nothing: a
// request to it stays pending for the sender (RFC 6121 §3.1.3 lets the
// server keep it so), exactly as one to an account whose owner has not
// answered, so that the sender cannot tell the two apart (SPEC.md).
func (m *Module) inboundSubscription(ctx context.Context, p *router.Stanza) {
	user := p.To.Bare()
	contact := p.From.Bare()
	if contact.Equal(jid.JID{}) || contact.Equal(user) {
		return
	}
	exists, err := m.hasAccount(ctx, user)
	if err != nil {
		m.log.Error("account lookup", "user", user.String(), "err", err)
		return
	}
	mode := fromOther
	if !exists {
		mode = fromOtherLatent
	}
	update := func(fn func(*Item)) (change, error) {
		return m.updateItem(ctx, user, contact, mode, fn)
	}
	var (
		c       change
		auto    bool // answer 'subscribed' on the user's behalf
		deliver bool
	)
	switch p.Type {
	case typeSubscribe:
		c, err = update(func(it *Item) {
			switch {
			case hasFrom(*it):
				auto = true
			case it.Approved:
				// Pre-approved (§3.4): approve now, without asking the user.
				auto = true
				it.Approved = false
				it.PendingIn = false
				it.Subscription = addFrom(it.Subscription)
				it.InRoster = true
			default:
				*it = inSubscribe(*it)
			}
		})
		deliver = !auto && c.changed
	case typeSubscribed:
		c, err = update(func(it *Item) { *it = inSubscribed(*it) })
		deliver = c.changed
	case typeUnsubscribe:
		c, err = update(func(it *Item) { *it = inUnsubscribe(*it) })
		deliver = c.changed
	case typeUnsubscribed:
		c, err = update(func(it *Item) { *it = inUnsubscribed(*it) })
		deliver = c.changed
	}
	if errors.Is(err, errRosterFull) {
		// Kept silent like any unanswered request: an answer would tell
		// the sender that the number has an account.
		m.log.Debug("subscription request to a full roster dropped", "from", contact.String(), "to", user.String())
		return
	}
	if err != nil {
		m.log.Error("inbound subscription", "type", p.Type, "from", p.From.String(), "to", user.String(), "err", err)
		return
	}
	m.pushChange(user, c)
	if deliver {
		in := p.Clone()
		in.From, in.To, in.ToAbsent = contact, user, false
		m.deliverAvailable(user, in)
	}
	if auto {
		m.r.Route(ctx, &router.Stanza{Kind: router.KindPresence, Type: typeSubscribed, From: user, To: contact})
		m.sendPresenceOf(ctx, user, contact, false)
	}
	if p.Type == typeUnsubscribe && hasFrom(c.old) && !hasFrom(c.new) {
		// §3.3.3: the contact stops receiving the user's presence.
		m.sendUnavailableOf(ctx, user, contact)
	}
}

// sendPresenceOf routes the current presence of each available resource of
// user to the address to; with none available and orUnavailable set, an
// unavailable presence from the bare JID instead.
func (m *Module) sendPresenceOf(ctx context.Context, user, to jid.JID, orUnavailable bool) {
	n := 0
	for _, s := range m.r.Sessions(user) {
		if !s.Available() {
			continue
		}
		out := s.Presence().Clone()
		out.From, out.To, out.ToAbsent, out.ID = s.JID(), to, false, ""
		m.r.Route(ctx, out)
		n++
	}
	if n == 0 && orUnavailable {
		m.r.Route(ctx, &router.Stanza{Kind: router.KindPresence, Type: typeUnavailable, From: user, To: to})
	}
}

// sendUnavailableOf routes unavailable presence from each available
// resource of user to the address to (§3.2.2, §3.3.3).
func (m *Module) sendUnavailableOf(ctx context.Context, user, to jid.JID) {
	for _, s := range m.r.Sessions(user) {
		if s.Available() {
			m.r.Route(ctx, &router.Stanza{Kind: router.KindPresence, Type: typeUnavailable, From: s.JID(), To: to})
		}
	}
}

// isNotFound reports whether a store error means "no such item".
func isNotFound(err error) bool { return errors.Is(err, auth.ErrNotFound) }

// hasAccount reports whether user is an account here (unclaimed or
// active) rather than a latent number. The core hands over presence for
// every valid number of the local domain.
func (m *Module) hasAccount(ctx context.Context, user jid.JID) (bool, error) {
	sctx, cancel := m.storeCtx(ctx)
	defer cancel()
	return m.r.IsLocal(sctx, user)
}
