package muc

import (
	"context"
	"encoding/xml"
	"slices"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/groups"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// roomOf returns the room an iq is addressed to, or item-not-found.
func (m *Module) roomOf(ctx context.Context, iq *router.Stanza) (*room, error) {
	if iq.To.Localpart() == "" {
		return nil, router.NewError(stanza.Cancel, stanza.FeatureNotImplemented, "")
	}
	rm, err := m.room(ctx, iq.To.Bare().String())
	if err != nil {
		return nil, err
	}
	if rm == nil {
		return nil, router.NewError(stanza.Cancel, stanza.ItemNotFound, "no such group")
	}
	return rm, nil
}

type adminItem struct {
	Affiliation string `xml:"affiliation,attr"`
	Role        string `xml:"role,attr"`
	JID         string `xml:"jid,attr"`
	Nick        string `xml:"nick,attr"`
	Reason      string `xml:"reason"`
}

type adminQuery struct {
	XMLName xml.Name    `xml:"http://jabber.org/protocol/muc#admin query"`
	Items   []adminItem `xml:"item"`
}

// adminIQ is the muc#admin namespace: lists of affiliations and roles
// (get), kick, ban, voice and the lists' changes (set).
func (m *Module) adminIQ(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	rm, err := m.roomOf(ctx, iq)
	if err != nil {
		return nil, err
	}
	var q adminQuery
	if err := iq.DecodePayload(&q); err != nil || len(q.Items) == 0 {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	if iq.Type == "get" {
		return rm.adminList(iq, q.Items[0])
	}
	saved, err := rm.adminSet(ctx, iq, q.Items)
	if err != nil {
		return nil, err
	}
	if len(saved) > 0 {
		if err := m.saveAffiliations(ctx, saved); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

func (rm *room) actor(from jid.JID) Actor {
	a := Actor{Aff: rm.affOf(from.Bare().String())}
	if o := rm.byFull[from.String()]; o != nil {
		a.Role = o.role
	}
	return a
}

// adminList answers a request for the users of an affiliation or role.
func (rm *room) adminList(iq *router.Stanza, it adminItem) ([]byte, error) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	actor := rm.actor(iq.From)
	b := wire.NewBuilder(nil)
	b.StartNS("query", NSAdmin)
	switch {
	case it.Affiliation != "":
		aff, ok := ParseAffiliation(it.Affiliation)
		if !ok || aff == NoAffiliation {
			return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
		}
		if !CanListAffiliation(actor.Aff, aff, rm.cfg.MembersOnly) {
			return nil, authError(stanza.Forbidden, "")
		}
		users := make([]string, 0, len(rm.affs))
		for u, rec := range rm.affs {
			if rec.aff == aff {
				users = append(users, u)
			}
		}
		slices.Sort(users)
		for _, u := range users {
			rec := rm.affs[u]
			b.Start("item", "affiliation", aff.String(), "jid", u, "nick", rec.nick)
			if rec.reason != "" {
				b.Element("reason", "", rec.reason)
			}
			b.End()
		}
	case it.Role != "":
		role, ok := ParseRole(it.Role)
		if !ok || role == NoRole {
			return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
		}
		if actor.Role != Moderator {
			return nil, authError(stanza.Forbidden, "")
		}
		for _, o := range rm.occupants {
			if o.role == role {
				b.Start("item", "affiliation", rm.affOf(o.bareStr).String(), "role", role.String(),
					"nick", o.nick, "jid", o.sessions[0].fullStr).End()
			}
		}
	default:
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	return b.End().Bytes(), nil
}

// adminSet applies role and affiliation changes, all or none, and returns
// the affiliations to store (a persistent room's).
func (rm *room) adminSet(ctx context.Context, iq *router.Stanza, items []adminItem) ([]groups.Affiliation, error) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	actor := rm.actor(iq.From)
	actorNick := ""
	if o := rm.byFull[iq.FromString()]; o != nil {
		actorNick = o.nick
	}
	// Check every item before changing anything.
	type change struct {
		it    adminItem
		user  string // bare JID (affiliation changes)
		aff   Affiliation
		o     *occupant // role changes
		role  Role
		isAff bool
	}
	var changes []change
	owners := 0
	for _, rec := range rm.affs {
		if rec.aff == Owner {
			owners++
		}
	}
	for _, it := range items {
		switch {
		case it.Affiliation != "":
			aff, ok := ParseAffiliation(it.Affiliation)
			if !ok {
				return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
			}
			user := ""
			if it.JID != "" {
				j, err := jid.Parse(it.JID)
				if err != nil {
					return nil, router.NewError(stanza.Modify, stanza.JIDMalformed, "")
				}
				if j, err = rm.m.r.Normalize(j); err != nil {
					return nil, err
				}
				user = j.Bare().String()
			} else if o := rm.occupants[it.Nick]; o != nil {
				user = o.bareStr
			} else {
				return nil, router.NewError(stanza.Modify, stanza.BadRequest, "an affiliation is changed by JID")
			}
			cur := rm.affOf(user)
			if !CanSetAffiliation(actor.Aff, cur, aff) {
				return nil, authError(stanza.Forbidden, "you may not change that affiliation")
			}
			if cur == Owner && aff != Owner {
				if owners <= 1 {
					return nil, router.NewError(stanza.Cancel, stanza.Conflict, "a group keeps at least one owner")
				}
				owners--
			}
			changes = append(changes, change{it: it, user: user, aff: aff, isAff: true})
		case it.Role != "":
			role, ok := ParseRole(it.Role)
			if !ok {
				return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
			}
			o := rm.occupants[it.Nick]
			if o == nil {
				return nil, router.NewError(stanza.Cancel, stanza.ItemNotFound, "nobody of that nickname is in the group")
			}
			if !CanSetRole(actor, rm.affOf(o.bareStr), o.role, role) {
				return nil, router.NewError(stanza.Cancel, stanza.NotAllowed, "you may not change that occupant's role")
			}
			changes = append(changes, change{it: it, o: o, role: role})
		default:
			return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
		}
	}
	var saved []groups.Affiliation
	for _, c := range changes {
		if !c.isAff {
			if c.role == NoRole {
				rm.removeOccupant(ctx, c.o, presenceCodes{codes: []int{307}, reason: c.it.Reason, actor: actorNick})
				continue
			}
			c.o.role = c.role
			rm.sendPresence(ctx, c.o, "", presenceCodes{reason: c.it.Reason}, []int{110}, nil)
			continue
		}
		saved = append(saved, rm.setAffiliation(ctx, c.user, c.aff, c.it.Reason, actorNick)...)
	}
	return saved, nil
}

// setAffiliation changes a user's affiliation and what it means for them
// in the room now (§9, §10); rm.mu held. It returns what to store.
func (rm *room) setAffiliation(ctx context.Context, user string, aff Affiliation, reason, actorNick string) []groups.Affiliation {
	rec := rm.affs[user]
	rec.aff, rec.reason = aff, reason
	if aff == NoAffiliation {
		delete(rm.affs, user)
	} else {
		rm.affs[user] = rec
	}
	var in []*occupant
	for _, o := range rm.occupants {
		if o.bareStr == user {
			in = append(in, o)
		}
	}
	for _, o := range in {
		switch {
		case aff == Outcast:
			rm.removeOccupant(ctx, o, presenceCodes{codes: []int{301}, reason: reason, actor: actorNick})
		case !CanEnter(aff, rm.cfg.MembersOnly):
			rm.removeOccupant(ctx, o, presenceCodes{codes: []int{321}, reason: reason, actor: actorNick})
		default:
			o.role = DefaultRole(aff, rm.cfg.Moderated)
			rm.sendPresence(ctx, o, "", presenceCodes{}, []int{110}, nil)
		}
	}
	if !rm.cfg.Persistent || rm.locked {
		return nil
	}
	return []groups.Affiliation{{Room: rm.jidStr, JID: user, Affiliation: affString(aff), Nick: rec.nick, Reason: reason}}
}

func affString(a Affiliation) string {
	if a == NoAffiliation {
		return ""
	}
	return a.String()
}

// allAffiliations lists the room's affiliations to store; rm.mu held.
func (rm *room) allAffiliations() []groups.Affiliation {
	out := make([]groups.Affiliation, 0, len(rm.affs))
	for u, rec := range rm.affs {
		out = append(out, groups.Affiliation{Room: rm.jidStr, JID: u, Affiliation: rec.aff.String(), Nick: rec.nick, Reason: rec.reason})
	}
	return out
}

type ownerQuery struct {
	XMLName xml.Name  `xml:"http://jabber.org/protocol/muc#owner query"`
	Form    *dataForm `xml:"jabber:x:data x"`
	Destroy *struct {
		JID      string `xml:"jid,attr"`
		Reason   string `xml:"reason"`
		Password string `xml:"password"`
	} `xml:"destroy"`
}

// ownerIQ is the muc#owner namespace: the configuration form and destroy.
func (m *Module) ownerIQ(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	rm, err := m.roomOf(ctx, iq)
	if err != nil {
		return nil, err
	}
	var q ownerQuery
	if err := iq.DecodePayload(&q); err != nil {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	rm.mu.Lock()
	if !CanConfigure(rm.affOf(iq.From.Bare().String())) {
		rm.mu.Unlock()
		return nil, authError(stanza.Forbidden, "only an owner may configure the group")
	}
	if iq.Type == "get" {
		b := wire.NewBuilder(nil)
		b.StartNS("query", NSOwner)
		rm.cfg.form(b, m.MaxOccupants)
		rm.mu.Unlock()
		return b.End().Bytes(), nil
	}
	switch {
	case q.Destroy != nil:
		rm.destroy(ctx, destroyInfo{venue: q.Destroy.JID, reason: q.Destroy.Reason, password: q.Destroy.Password})
		rm.mu.Unlock()
		sctx, cancel := m.r.StoreContext(ctx)
		defer cancel()
		if err := m.store.DeleteMUCRoom(sctx, rm.jidStr); err != nil {
			return nil, err
		}
		return nil, nil
	case q.Form == nil:
		rm.mu.Unlock()
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	case q.Form.Type == "cancel":
		if rm.locked {
			rm.destroy(ctx, destroyInfo{})
		}
		rm.mu.Unlock()
		return nil, nil
	case q.Form.Type != "submit":
		rm.mu.Unlock()
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	cfg, ok := rm.cfg.apply(q.Form, m.MaxOccupants)
	if !ok {
		rm.mu.Unlock()
		return nil, router.NewError(stanza.Modify, stanza.NotAcceptable, "a value of the form is not acceptable")
	}
	wasPersistent, wasLocked := rm.cfg.Persistent && !rm.locked, rm.locked
	old := rm.cfg
	rm.cfg, rm.locked = cfg, false
	rm.configured(ctx, old, wasLocked)
	var affs []groups.Affiliation
	if cfg.Persistent && !wasPersistent {
		affs = rm.allAffiliations()
	}
	drop := wasPersistent && !cfg.Persistent
	rm.mu.Unlock()
	if drop {
		sctx, cancel := m.r.StoreContext(ctx)
		defer cancel()
		if err := m.store.DeleteMUCRoom(sctx, rm.jidStr); err != nil {
			return nil, err
		}
		return nil, nil
	}
	rm.save(ctx)
	if err := m.saveAffiliations(ctx, affs); err != nil {
		return nil, err
	}
	return nil, nil
}

// configured tells the occupants what a new configuration changed
// (§10.2.1 status codes) and removes those who may no longer stay;
// rm.mu held.
func (rm *room) configured(ctx context.Context, old Config, wasLocked bool) {
	if wasLocked {
		return // the owner alone is in a room being set up
	}
	var codes []int
	if old.WhoisAnyone != rm.cfg.WhoisAnyone {
		codes = append(codes, map[bool]int{true: 172, false: 173}[rm.cfg.WhoisAnyone])
	}
	if old.MAM != rm.cfg.MAM {
		codes = append(codes, map[bool]int{true: 170, false: 171}[rm.cfg.MAM])
	}
	codes = append(codes, 104)
	b := wire.NewBuilder(nil)
	b.StartNS("x", NSUser)
	for _, c := range codes {
		b.Start("status", "code", itoa(c)).End()
	}
	b.End()
	rm.broadcast(ctx, &outgoing{kind: router.KindMessage, from: rm.jid, typ: "groupchat", id: newID(), inner: b.Bytes()})
	if rm.cfg.MembersOnly && !old.MembersOnly {
		for _, o := range rm.occupants {
			if !CanEnter(rm.affOf(o.bareStr), true) {
				rm.removeOccupant(ctx, o, presenceCodes{codes: []int{322}})
			}
		}
	}
}

// destroy ends the room (§10.9): every occupant gets unavailable with the
// alternate venue; rm.mu held.
func (rm *room) destroy(ctx context.Context, d destroyInfo) {
	for _, o := range rm.occupants {
		o.role = NoRole
		p := rm.presenceOf(o, "unavailable", true, presenceCodes{destroy: &d})
		for _, s := range o.sessions {
			rm.send(ctx, s, p)
			if s.local != nil {
				joinedKey.Get(s.local).remove(rm)
			}
		}
	}
	clear(rm.occupants)
	clear(rm.byFull)
	rm.destroyed = true
	rm.m.forget(rm)
}
