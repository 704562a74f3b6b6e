package im

import (
	"context"

	"dialtone/xmppd/router"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// OutboundPresence handles presence sent by the local session sess (RFC
// 6121 §4): broadcast presence (no 'to'), directed presence, subscription
// stanzas and probes.
func (m *Module) OutboundPresence(ctx context.Context, sess *router.Session, p *router.Stanza) {
	broadcast := p.To.Equal(jid.JID{}) || p.ToAbsent
	switch p.Type {
	case typeAvailable:
		if broadcast {
			m.available(ctx, sess, p)
			return
		}
		addDirected(sess, p.To)
		m.routeAs(ctx, p, p.From)
	case typeUnavailable:
		if broadcast {
			m.unavailable(ctx, sess, p)
			return
		}
		removeDirected(sess, p.To)
		m.routeAs(ctx, p, p.From)
	case typeSubscribe, typeSubscribed, typeUnsubscribe, typeUnsubscribed:
		m.outboundSubscription(ctx, p)
	case typeProbe:
		// Clients should not probe (§4.3); if one does, it probes as its
		// account, and the contact's server decides what to reveal.
		if broadcast {
			m.presenceError(p, badRequest("probe needs a 'to'"))
			return
		}
		m.routeAs(ctx, p, p.From.Bare())
	case typeError:
		if !broadcast {
			m.routeAs(ctx, p, p.From)
		}
	default:
		m.presenceError(p, badRequest("unknown presence type"))
	}
}

// InboundPresence handles presence addressed to a local account or one of
// its resources (RFC 6121 §3, §4.3.2, §4.4.3, §8.5).
func (m *Module) InboundPresence(ctx context.Context, p *router.Stanza) {
	switch p.Type {
	case typeSubscribe, typeSubscribed, typeUnsubscribe, typeUnsubscribed:
		// To a full JID: handled as if sent to the bare JID (§3.1.3, §8.5.3.2.1).
		m.inboundSubscription(ctx, p)
	case typeProbe:
		m.inboundProbe(ctx, p)
	case typeAvailable, typeUnavailable, typeError:
		if p.To.Resourcepart() == "" {
			// §8.5.2.1.1: to every available resource; none: ignored.
			m.deliverAvailable(p.To.Bare(), p)
			return
		}
		// §8.5.3.1: to that resource whatever its state; §8.5.3.2.1: a
		// resource that does not exist makes the server ignore it.
		for _, s := range m.r.Sessions(p.To.Bare()) {
			if s.JID().Equal(p.To) {
				m.r.Deliver(s.JID(), p)
				return
			}
		}
	}
}

// SessionClosed sends unavailable presence on behalf of a session that
// ended without it (RFC 6121 §4.5.3.2) to its subscribers, to the user's
// other resources and to everyone it sent directed presence to.
func (m *Module) SessionClosed(ctx context.Context, sess *router.Session) {
	p := &router.Stanza{Kind: router.KindPresence, Type: typeUnavailable, From: sess.JID()}
	m.unavailableBroadcast(ctx, sess, p, sess.Available())
}

// available handles broadcast available presence (§4.2.2 initial, §4.4.2
// subsequent).
func (m *Module) available(ctx context.Context, sess *router.Session, p *router.Stanza) {
	full := p.From
	user := full.Bare()
	initial := !sess.Available()
	m.r.SetPresence(ctx, sess, p)

	items, ok := m.roster(ctx, user)
	for _, it := range items {
		if hasFrom(it) {
			if to, ok := parseContact(it.Contact); ok {
				m.routeTo(ctx, p, full, to)
			}
		}
	}
	// The user is implicitly subscribed to its own presence: every
	// available resource, the sending one included, gets it.
	own := m.r.Sessions(user)
	for _, s := range own {
		if s.Available() {
			out := p.Clone()
			out.From, out.To, out.ToAbsent = full, s.JID(), false
			m.r.Deliver(s.JID(), out)
		}
	}
	if !initial {
		return
	}
	// The new resource learns the presence of the user's other resources.
	for _, s := range own {
		if s.Available() && !s.JID().Equal(full) {
			out := s.Presence().Clone()
			out.From, out.To, out.ToAbsent, out.ID = s.JID(), full, false, ""
			m.r.Deliver(full, out)
		}
	}
	if !ok {
		return
	}
	// Probes to the contacts whose presence the user receives (§4.3.1),
	// from the bare JID.
	for _, it := range items {
		if hasTo(it) {
			if to, ok := parseContact(it.Contact); ok {
				m.r.Route(ctx, &router.Stanza{Kind: router.KindPresence, Type: typeProbe, From: user, To: to})
			}
		}
	}
	// Subscription requests that waited for an available resource (§3.1.3),
	// except those of contacts the user blocked meanwhile (XEP-0191 §3.3:
	// nothing from a blocked entity is delivered). They stay stored, so an
	// unblocked contact's request comes at a later login.
	for _, it := range items {
		if it.PendingIn {
			if from, ok := parseContact(it.Contact); ok && !m.blocked(ctx, user, from) {
				m.r.Deliver(full, &router.Stanza{Kind: router.KindPresence, Type: typeSubscribe, From: from, To: user})
			}
		}
	}
}

// blocked reports whether user blocks contact; when that cannot be known
// it says yes, like the blocking filter, which fails closed too.
func (m *Module) blocked(ctx context.Context, user, contact jid.JID) bool {
	if m.Blocked == nil {
		return false
	}
	sctx, cancel := m.storeCtx(ctx)
	defer cancel()
	b, err := m.Blocked(sctx, user, contact)
	if err != nil {
		m.log.Error("blocklist lookup", "user", user.String(), "contact", contact.String(), "err", err)
		return true
	}
	return b
}

// unavailable handles broadcast unavailable presence from a session (§4.5.2).
func (m *Module) unavailable(ctx context.Context, sess *router.Session, p *router.Stanza) {
	m.unavailableBroadcast(ctx, sess, p, sess.Available())
	m.r.SetPresence(ctx, sess, nil)
}

// unavailableBroadcast sends p (unavailable from the session) to the
// subscribers and the user's available resources when the session was
// available, and to every recipient of its directed presence, each
// address once.
func (m *Module) unavailableBroadcast(ctx context.Context, sess *router.Session, p *router.Stanza, wasAvailable bool) {
	full := sess.JID()
	user := full.Bare()
	sent := make(map[string]bool)
	if wasAvailable {
		items, _ := m.roster(ctx, user)
		for _, it := range items {
			if hasFrom(it) {
				if to, ok := parseContact(it.Contact); ok {
					sent[to.String()] = true
					m.routeTo(ctx, p, full, to)
				}
			}
		}
		for _, s := range m.r.Sessions(user) {
			if s.Available() {
				out := p.Clone()
				out.From, out.To, out.ToAbsent = full, s.JID(), false
				m.r.Deliver(s.JID(), out)
			}
		}
	}
	for _, to := range takeDirected(sess) {
		if sent[to.String()] || sent[to.Bare().String()] || (wasAvailable && to.Bare().Equal(user)) {
			continue
		}
		m.routeTo(ctx, p, full, to)
	}
}

// inboundProbe answers a probe (§4.3.2): a subscriber gets the presence of
// every available resource (or unavailable from the bare JID); anyone else
// gets 'unsubscribed', which repairs a subscription its server believes in.
// A latent number has no subscribers, so it answers 'unsubscribed' by the
// same path as an account (§4.3.2 wants that for a missing account too),
// without asking whether the account exists.
func (m *Module) inboundProbe(ctx context.Context, p *router.Stanza) {
	user := p.To.Bare()
	prober := p.From.Bare()
	if prober.Equal(jid.JID{}) {
		return
	}
	subscribed := prober.Equal(user)
	if !subscribed {
		owner := user.Localpart()
		sctx, cancel := m.storeCtx(ctx)
		it, err := m.store.RosterItem(sctx, owner, prober.String())
		cancel()
		switch {
		case err == nil:
			subscribed = hasFrom(it)
		case isNotFound(err):
		default:
			m.log.Error("probe", "user", user.String(), "from", p.From.String(), "err", err)
			return
		}
	}
	if !subscribed {
		m.r.Route(ctx, &router.Stanza{Kind: router.KindPresence, Type: typeUnsubscribed, From: user, To: prober})
		return
	}
	m.sendPresenceOf(ctx, user, p.From, true)
}

// roster loads the user's items; a store error is logged and reported as
// ok=false with no items.
func (m *Module) roster(ctx context.Context, user jid.JID) ([]Item, bool) {
	sctx, cancel := m.storeCtx(ctx)
	defer cancel()
	items, _, err := m.store.Roster(sctx, user.Localpart())
	if err != nil {
		m.log.Error("load roster for presence", "user", user.String(), "err", err)
		return nil, false
	}
	return items, true
}

// deliverAvailable delivers s to every available resource of user.
func (m *Module) deliverAvailable(user jid.JID, s *router.Stanza) {
	// Serialise once: the cached bytes are then only read by the writers
	// of the sessions the same stanza goes to.
	s.Bytes()
	for _, sess := range m.r.Sessions(user) {
		if sess.Available() {
			m.r.Deliver(sess.JID(), s)
		}
	}
}

// routeAs routes a copy of p stamped with from.
func (m *Module) routeAs(ctx context.Context, p *router.Stanza, from jid.JID) {
	out := p.Clone()
	out.From, out.ToAbsent = from, false
	m.r.Route(ctx, out)
}

// routeTo routes a copy of p from from to to.
func (m *Module) routeTo(ctx context.Context, p *router.Stanza, from, to jid.JID) {
	out := p.Clone()
	out.From, out.To, out.ToAbsent = from, to, false
	m.r.Route(ctx, out)
}

// presenceError answers a session's presence with an error, unless it was
// itself an error.
func (m *Module) presenceError(p *router.Stanza, e stanza.Error) {
	if p.Type == typeError {
		return
	}
	m.r.Deliver(p.From, p.ErrorReply(e))
}

// parseContact parses a stored contact JID.
func parseContact(s string) (jid.JID, bool) {
	j, err := jid.Parse(s)
	return j, err == nil
}
