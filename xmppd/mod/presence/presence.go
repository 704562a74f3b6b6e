// Package presence handles presence (RFC 6121 §3, §4): broadcast and
// directed presence, probes, subscriptions with pre-approval (driving the
// roster items of xmppd/mod/roster through the Appendix A state machine of
// dialtone/roster), and the unavailable presence of a session that ended
// without sending it, the way Prosody's mod_presence does.
package presence

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/auth"
	"dialtone/roster"
	rostermod "dialtone/xmppd/mod/roster"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// PreApprovalFeature is the namespace of the stream feature
// <sub xmlns='urn:xmpp:features:pre-approval'/> (RFC 6121 §3.4): the
// server supports subscription pre-approval.
const PreApprovalFeature = "urn:xmpp:features:pre-approval"

// Presence types (RFC 6121 §4.7.1); "" is available.
const (
	typeAvailable    = ""
	typeUnavailable  = "unavailable"
	typeSubscribe    = "subscribe"
	typeSubscribed   = "subscribed"
	typeUnsubscribe  = "unsubscribe"
	typeUnsubscribed = "unsubscribed"
	typeProbe        = "probe"
	typeError        = "error"
)

// directed are the addresses a session sent directed available presence
// to (RFC 6121 §4.6).
var directed = router.NewKey[directedSet]()

// Module handles the presence of local sessions and accounts. Make it
// with New and load it on the router after the roster module. It is safe
// for concurrent use.
type Module struct {
	r      router.Routing
	roster *rostermod.Module
	log    *slog.Logger

	// Blocked, when set, reports whether user blocks contact (XEP-0191);
	// subscription requests stored before the block are then not
	// delivered. Set it before Register.
	Blocked func(ctx context.Context, user, contact jid.JID) (bool, error)
}

// New returns the module, which keeps the subscriptions in the rosters of
// rost and reaches sessions through r. A nil log discards log output.
func New(r router.Routing, rost *rostermod.Module, log *slog.Logger) *Module {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Module{r: r, roster: rost, log: log.With("module", "presence")}
}

// Register handles presence: what local sessions send, what comes to local
// accounts, probes, and the end of a session; and offers pre-approval.
func (m *Module) Register(h *router.Hooks) error {
	h.Hook(router.PresenceOut, router.Presences, 0, func(ctx context.Context, ev *router.Event) error {
		m.OutboundPresence(ctx, ev.Origin, ev.Stanza)
		return router.ErrHandled
	})
	inbound := func(ctx context.Context, ev *router.Event) error {
		m.InboundPresence(ctx, ev.Stanza)
		return router.ErrHandled
	}
	h.Hook(router.PresenceIn, router.Presences, 0, inbound)
	h.Hook(router.Probe, router.Presences, 0, inbound)
	h.OnSession(router.Closed, 0, m.SessionClosed)
	sub := wire.NewBuilder(nil).Element("sub", PreApprovalFeature, "").Bytes()
	h.StreamFeature(router.PostAuth, func(router.ConnInfo) []byte { return sub })
	return nil
}

// directedSet is the per-session list of directed presence recipients.
type directedSet struct {
	mu     sync.Mutex
	to     map[string]jid.JID
	closed bool // the session ended: nothing more is added
}

// addDirected remembers that the session sent available presence to to.
func addDirected(sess *router.Session, to jid.JID) {
	d := directed.Get(sess)
	d.mu.Lock()
	if !d.closed {
		if d.to == nil {
			d.to = make(map[string]jid.JID)
		}
		d.to[to.String()] = to
	}
	d.mu.Unlock()
}

// removeDirected forgets to after the session sent it unavailable presence.
func removeDirected(sess *router.Session, to jid.JID) {
	d := directed.Get(sess)
	d.mu.Lock()
	delete(d.to, to.String())
	d.mu.Unlock()
}

// takeDirected returns and forgets the session's directed recipients.
func takeDirected(sess *router.Session) []jid.JID {
	d := directed.Get(sess)
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]jid.JID, 0, len(d.to))
	for _, j := range d.to {
		out = append(out, j)
	}
	d.to, d.closed = nil, true
	return out
}

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

	items, ok := m.roster.Items(ctx, user)
	for _, it := range items {
		if roster.HasFrom(it) {
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
		if roster.HasTo(it) {
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
	sctx, cancel := m.r.StoreContext(ctx)
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
		items, _ := m.roster.Items(ctx, user)
		for _, it := range items {
			if roster.HasFrom(it) {
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
		it, err := m.roster.Item(ctx, user, prober)
		switch {
		case err == nil:
			subscribed = roster.HasFrom(it)
		case errors.Is(err, auth.ErrNotFound):
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
		c         rostermod.Change
		route     = true
		sendPres  bool // send the user's presence to the contact
		sendUnav  bool // send unavailable from the user's resources
		preapprov bool
	)
	switch p.Type {
	case typeSubscribe:
		c, err = m.roster.Update(ctx, user, contact, rostermod.OwnChange, func(it *roster.Item) {
			*it = roster.OutSubscribe(*it)
			it.InRoster = true
		})
	case typeUnsubscribe:
		c, err = m.roster.Update(ctx, user, contact, rostermod.OwnChange, func(it *roster.Item) { *it = roster.OutUnsubscribe(*it) })
	case typeSubscribed:
		c, err = m.roster.Update(ctx, user, contact, rostermod.OwnChange, func(it *roster.Item) {
			switch {
			case it.PendingIn:
				*it = roster.OutSubscribed(*it)
				it.Approved = false
				it.InRoster = true
			case it.Subscription == roster.SubNone || it.Subscription == roster.SubTo:
				// Pre-approval (§3.4): remembered, not routed.
				preapprov = true
				it.Approved = true
				it.InRoster = true
			}
		})
		route = !preapprov
		sendPres = !preapprov
	case typeUnsubscribed:
		c, err = m.roster.Update(ctx, user, contact, rostermod.OwnChange, func(it *roster.Item) {
			*it = roster.OutUnsubscribed(*it)
			it.Approved = false
		})
	}
	if errors.Is(err, rostermod.ErrFull) {
		m.presenceError(p, m.roster.FullError())
		return
	}
	if err != nil {
		m.log.Error("outbound subscription", "type", p.Type, "from", p.From.String(), "to", contact.String(), "err", err)
		m.presenceError(p, internalError())
		return
	}
	if p.Type == typeUnsubscribed {
		sendUnav = roster.HasFrom(c.Old) && !roster.HasFrom(c.New)
	}
	m.roster.Push(user, c)
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
	mode := rostermod.FromOther
	if !exists {
		mode = rostermod.FromOtherLatent
	}
	update := func(fn func(*roster.Item)) (rostermod.Change, error) {
		return m.roster.Update(ctx, user, contact, mode, fn)
	}
	var (
		c       rostermod.Change
		auto    bool // answer 'subscribed' on the user's behalf
		deliver bool
	)
	switch p.Type {
	case typeSubscribe:
		c, err = update(func(it *roster.Item) {
			switch {
			case roster.HasFrom(*it):
				auto = true
			case it.Approved:
				// Pre-approved (§3.4): approve now, without asking the user.
				auto = true
				it.Approved = false
				it.PendingIn = false
				it.Subscription = roster.AddFrom(it.Subscription)
				it.InRoster = true
			default:
				*it = roster.InSubscribe(*it)
			}
		})
		deliver = !auto && c.Changed
	case typeSubscribed:
		c, err = update(func(it *roster.Item) { *it = roster.InSubscribed(*it) })
		deliver = c.Changed
	case typeUnsubscribe:
		c, err = update(func(it *roster.Item) { *it = roster.InUnsubscribe(*it) })
		deliver = c.Changed
	case typeUnsubscribed:
		c, err = update(func(it *roster.Item) { *it = roster.InUnsubscribed(*it) })
		deliver = c.Changed
	}
	if errors.Is(err, rostermod.ErrFull) {
		// Kept silent like any unanswered request: an answer would tell
		// the sender that the number has an account.
		m.log.Debug("subscription request to a full roster dropped", "from", contact.String(), "to", user.String())
		return
	}
	if err != nil {
		m.log.Error("inbound subscription", "type", p.Type, "from", p.From.String(), "to", user.String(), "err", err)
		return
	}
	m.roster.Push(user, c)
	if deliver {
		in := p.Clone()
		in.From, in.To, in.ToAbsent = contact, user, false
		m.deliverAvailable(user, in)
	}
	if auto {
		m.r.Route(ctx, &router.Stanza{Kind: router.KindPresence, Type: typeSubscribed, From: user, To: contact})
		m.sendPresenceOf(ctx, user, contact, false)
	}
	if p.Type == typeUnsubscribe && roster.HasFrom(c.Old) && !roster.HasFrom(c.New) {
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

// hasAccount reports whether user is an account here (unclaimed or
// active) rather than a latent number. The core hands over presence for
// every valid number of the local domain.
func (m *Module) hasAccount(ctx context.Context, user jid.JID) (bool, error) {
	return m.r.IsLocal(ctx, user)
}

func badRequest(text string) stanza.Error {
	return router.NewError(stanza.Modify, stanza.BadRequest, text)
}

func internalError() stanza.Error {
	return router.NewError(stanza.Wait, stanza.InternalServerError, "")
}

// asStanzaError returns err as a stanza error; Normalize promises one, and
// anything else is treated as a malformed address.
func asStanzaError(err error) stanza.Error {
	var se stanza.Error
	if errors.As(err, &se) {
		return se
	}
	return router.NewError(stanza.Modify, stanza.JIDMalformed, err.Error())
}
