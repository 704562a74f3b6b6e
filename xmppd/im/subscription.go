package im

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"dialtone/auth"
	"dialtone/xmppd"

	"mellium.im/xmpp/jid"
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

// update reads the item of contact in user's roster (a new "none" item
// when there is none), lets fn change it, and stores the result: deleted
// when it holds nothing and is not in the roster. The account lock is held
// only around the store calls.
func (m *Module) update(ctx context.Context, user, contact jid.JID, fn func(*Item)) (change, error) {
	owner := user.Localpart()
	key := contact.String()
	unlock := m.accounts.lock(owner)
	defer unlock()

	sctx, cancel := storeCtx(ctx)
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
	if sameState(c.old, c.new) {
		return c, nil
	}
	if !it.InRoster && empty(it) {
		if !c.existed {
			return c, nil
		}
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
func (m *Module) outboundSubscription(ctx context.Context, p *xmppd.Stanza) {
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
func (m *Module) inboundSubscription(ctx context.Context, p *xmppd.Stanza) {
	user := p.To.Bare()
	contact := p.From.Bare()
	if contact.Equal(jid.JID{}) || contact.Equal(user) {
		return
	}
	if !m.accountExists(ctx, user, p) {
		return
	}
	var (
		c       change
		err     error
		auto    bool // answer 'subscribed' on the user's behalf
		deliver bool
	)
	switch p.Type {
	case typeSubscribe:
		c, err = m.update(ctx, user, contact, func(it *Item) {
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
		c, err = m.update(ctx, user, contact, func(it *Item) { *it = inSubscribed(*it) })
		deliver = c.changed
	case typeUnsubscribe:
		c, err = m.update(ctx, user, contact, func(it *Item) { *it = inUnsubscribe(*it) })
		deliver = c.changed
	case typeUnsubscribed:
		c, err = m.update(ctx, user, contact, func(it *Item) { *it = inUnsubscribed(*it) })
		deliver = c.changed
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
		m.r.Route(ctx, &xmppd.Stanza{Kind: xmppd.KindPresence, Type: typeSubscribed, From: user, To: contact})
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
		out := s.Presence.Clone()
		out.From, out.To, out.ToAbsent, out.ID = s.JID, to, false, ""
		m.r.Route(ctx, out)
		n++
	}
	if n == 0 && orUnavailable {
		m.r.Route(ctx, &xmppd.Stanza{Kind: xmppd.KindPresence, Type: typeUnavailable, From: user, To: to})
	}
}

// sendUnavailableOf routes unavailable presence from each available
// resource of user to the address to (§3.2.2, §3.3.3).
func (m *Module) sendUnavailableOf(ctx context.Context, user, to jid.JID) {
	for _, s := range m.r.Sessions(user) {
		if s.Available() {
			m.r.Route(ctx, &xmppd.Stanza{Kind: xmppd.KindPresence, Type: typeUnavailable, From: s.JID, To: to})
		}
	}
}

// isNotFound reports whether a store error means "no such item".
func isNotFound(err error) bool { return errors.Is(err, auth.ErrNotFound) }

// accountExists reports whether the addressee of an inbound subscription
// stanza or probe has an account. The core hands over presence for every
// address of the local domain, latent numbers included; for those nothing
// is stored, and a request or probe is answered with 'unsubscribed'
// (RFC 6121 §8.5.1), other stanzas are ignored.
func (m *Module) accountExists(ctx context.Context, user jid.JID, p *xmppd.Stanza) bool {
	sctx, cancel := storeCtx(ctx)
	ok, err := m.r.IsLocal(sctx, user)
	cancel()
	if err != nil {
		m.log.Error("account lookup", "user", user.String(), "err", err)
		return false
	}
	if !ok && (p.Type == typeSubscribe || p.Type == typeProbe) {
		m.r.Route(ctx, &xmppd.Stanza{Kind: xmppd.KindPresence, Type: typeUnsubscribed, From: user, To: p.From.Bare()})
	}
	return ok
}
