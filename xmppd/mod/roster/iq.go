package roster

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"dialtone/auth"
	"dialtone/roster"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// Limits on what a client may store in one roster item (RFC 6121 §2.3.3
// lets the server refuse overlong values with not-acceptable).
const (
	MaxNameLen  = 1024 // characters of a handle
	MaxGroupLen = 1024 // characters of a group name
	MaxGroups   = 100  // groups of one item
)

// rosterQuery is the <query xmlns='jabber:iq:roster'/> of a request.
type rosterQuery struct {
	XMLName xml.Name     `xml:"jabber:iq:roster query"`
	Attrs   []xml.Attr   `xml:",any,attr"`
	Items   []rosterItem `xml:"item"`
}

type rosterItem struct {
	JID          string   `xml:"jid,attr"`
	Name         string   `xml:"name,attr"`
	Subscription string   `xml:"subscription,attr"`
	Groups       []string `xml:"group"`
}

// ver returns the 'ver' attribute and whether it was present.
func (q *rosterQuery) ver() (string, bool) {
	for _, a := range q.Attrs {
		if a.Name.Local == "ver" && (a.Name.Space == "" || a.Name.Space == NS) {
			return a.Value, true
		}
	}
	return "", false
}

// Handle answers roster get and set (RFC 6121 §2.2–2.5): the module's
// IQ handler.
func (m *Module) Handle(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	// Only the account itself reads or changes its roster (§2.1.5, §2.3.3).
	if !iq.To.Equal(iq.From.Bare()) {
		return nil, stanza.Error{Type: stanza.Auth, Condition: stanza.Forbidden}
	}
	var q rosterQuery
	if err := iq.DecodePayload(&q); err != nil {
		return nil, badRequest("malformed roster query")
	}
	switch iq.Type {
	case "get":
		return m.rosterGet(ctx, iq, &q)
	case "set":
		return nil, m.rosterSet(ctx, iq, &q)
	}
	return nil, badRequest("")
}

// rosterGet answers a roster get (§2.2) with XEP-0237 versioning.
func (m *Module) rosterGet(ctx context.Context, iq *router.Stanza, q *rosterQuery) ([]byte, error) {
	user := iq.From.Bare()
	if sess := m.r.Session(iq.From); sess != nil {
		interested.Get(sess).Store(true)
	}
	sctx, cancel := m.storeCtx(ctx)
	defer cancel()
	items, version, err := m.store.Roster(sctx, user.Localpart())
	if err != nil {
		m.log.Error("roster get", "user", user.String(), "err", err)
		return nil, internalError()
	}
	ver := strconv.FormatInt(version, 10)
	if v, ok := q.ver(); ok && v == ver {
		// The client's cached copy is current: empty result, then pushes.
		return nil, nil
	}
	b := wire.NewBuilder(make([]byte, 0, 64+len(items)*96))
	b.StartNS("query", NS, "ver", ver)
	for _, it := range items {
		if it.InRoster {
			writeItem(b, it, false)
		}
	}
	return b.End().Bytes(), nil
}

// rosterSet adds, updates (§2.3, §2.4) or removes (§2.5) one item.
func (m *Module) rosterSet(ctx context.Context, iq *router.Stanza, q *rosterQuery) error {
	if len(q.Items) != 1 {
		return badRequest("a roster set carries exactly one item")
	}
	ri := q.Items[0]
	if ri.JID == "" {
		return badRequest("item without jid")
	}
	j, err := jid.Parse(ri.JID)
	if err != nil {
		return stanza.Error{Type: stanza.Modify, Condition: stanza.JIDMalformed}
	}
	contact, err := m.r.Normalize(j.Bare())
	if err != nil {
		return asStanzaError(err)
	}
	contact = contact.Bare()
	user := iq.From.Bare()
	if contact.Equal(user) {
		return stanza.Error{Type: stanza.Cancel, Condition: stanza.NotAllowed}
	}
	if ri.Subscription == "remove" {
		return m.rosterRemove(ctx, user, contact)
	}
	if err := checkItem(ri); err != nil {
		return err
	}
	// 'subscription' and 'ask' from the client are ignored (§2.1.2.5):
	// only the subscription handshake changes them.
	c, err := m.Update(ctx, user, contact, OwnChange, func(it *roster.Item) {
		it.Name = ri.Name
		it.Groups = ri.Groups
		it.InRoster = true
	})
	if errors.Is(err, ErrFull) {
		return m.FullError()
	}
	if err != nil {
		m.log.Error("roster set", "user", user.String(), "contact", contact.String(), "err", err)
		return internalError()
	}
	if c.Changed {
		m.push(user, c.New, false, c.Version)
	}
	return nil
}

// checkItem applies the error cases of §2.3.3 to the handle and groups.
func checkItem(ri rosterItem) error {
	if utf8.RuneCountInString(ri.Name) > MaxNameLen {
		return notAcceptable("name too long")
	}
	if len(ri.Groups) > MaxGroups {
		return notAcceptable("too many groups")
	}
	seen := make(map[string]bool, len(ri.Groups))
	for _, g := range ri.Groups {
		if g == "" {
			return notAcceptable("empty group name")
		}
		if utf8.RuneCountInString(g) > MaxGroupLen {
			return notAcceptable("group name too long")
		}
		if seen[g] {
			return badRequest("duplicate group")
		}
		seen[g] = true
	}
	return nil
}

// rosterRemove deletes an item (§2.5.2): the contact is told that the
// subscriptions in both directions, and any pending request, are over.
func (m *Module) rosterRemove(ctx context.Context, user, contact jid.JID) error {
	owner := user.Localpart()
	unlock := m.accounts.lock(owner)
	sctx, cancel := m.storeCtx(ctx)
	it, err := m.store.RosterItem(sctx, owner, contact.String())
	var version int64
	if err == nil && it.InRoster {
		version, err = m.store.DeleteRosterItem(sctx, owner, contact.String())
	}
	cancel()
	unlock()
	switch {
	case errors.Is(err, auth.ErrNotFound) || (err == nil && !it.InRoster):
		return stanza.Error{Type: stanza.Cancel, Condition: stanza.ItemNotFound}
	case err != nil:
		m.log.Error("roster remove", "user", user.String(), "contact", contact.String(), "err", err)
		return internalError()
	}
	// Push first: the contact's answers (unavailable presence) may arrive
	// during Route.
	m.push(user, it, true, version)
	if roster.HasFrom(it) || it.PendingIn {
		m.r.Route(ctx, &router.Stanza{Kind: router.KindPresence, Type: "unsubscribed", From: user, To: contact})
		if roster.HasFrom(it) {
			m.unavailableOf(ctx, user, contact)
		}
	}
	if roster.HasTo(it) || it.PendingOut {
		m.r.Route(ctx, &router.Stanza{Kind: router.KindPresence, Type: "unsubscribe", From: user, To: contact})
	}
	return nil
}

// push sends a roster push (§2.1.6) of it, or of its removal, to every
// interested resource of user.
func (m *Module) push(user jid.JID, it roster.Item, remove bool, version int64) {
	b := wire.NewBuilder(make([]byte, 0, 128))
	b.StartNS("query", NS, "ver", strconv.FormatInt(version, 10))
	writeItem(b, it, remove)
	inner := b.End().Bytes()
	for _, s := range m.r.Sessions(user) {
		if !interested.Get(s).Load() {
			continue
		}
		m.r.Deliver(s.JID(), &router.Stanza{
			Kind:  router.KindIQ,
			Type:  "set",
			ID:    m.nextID(),
			From:  user,
			To:    s.JID(),
			Inner: inner,
		})
	}
}

// writeItem writes the <item/> of a roster result or push.
func writeItem(b *wire.Builder, it roster.Item, remove bool) {
	if remove {
		b.Start("item", "jid", it.Contact, "subscription", "remove").End()
		return
	}
	sub := it.Subscription
	if sub == "" {
		sub = roster.SubNone
	}
	ask, approved := "", ""
	if it.PendingOut {
		ask = "subscribe"
	}
	if it.Approved {
		approved = "true"
	}
	b.Start("item", "jid", it.Contact, "name", it.Name, "subscription", sub, "ask", ask, "approved", approved)
	for _, g := range it.Groups {
		b.Element("group", "", g)
	}
	b.End()
}

func badRequest(text string) stanza.Error {
	e := stanza.Error{Type: stanza.Modify, Condition: stanza.BadRequest}
	if text != "" {
		e.Text = map[string]string{"": text}
	}
	return e
}

func notAcceptable(text string) stanza.Error {
	return stanza.Error{Type: stanza.Modify, Condition: stanza.NotAcceptable, Text: map[string]string{"": text}}
}

func internalError() stanza.Error {
	return stanza.Error{Type: stanza.Wait, Condition: stanza.InternalServerError}
}

// asStanzaError returns err as a stanza error; Normalize promises one, and
// anything else is treated as a malformed address.
func asStanzaError(err error) stanza.Error {
	var se stanza.Error
	if errors.As(err, &se) {
		return se
	}
	return stanza.Error{Type: stanza.Modify, Condition: stanza.JIDMalformed, Text: map[string]string{"": fmt.Sprint(err)}}
}
