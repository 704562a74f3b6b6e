package muc

import (
	"bytes"
	"context"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/groups"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

type invitePayload struct {
	User *struct {
		Invites []struct {
			To     string `xml:"to,attr"`
			Reason string `xml:"reason"`
		} `xml:"invite"`
		Decline *struct {
			To     string `xml:"to,attr"`
			Reason string `xml:"reason"`
		} `xml:"decline"`
	} `xml:"http://jabber.org/protocol/muc#user x"`
	Conference *struct {
		JID    string `xml:"jid,attr"`
		Reason string `xml:"reason,attr"`
	} `xml:"jabber:x:conference x"`
}

// mediated handles a mediated invitation (§7.8.2) or its decline.
func (rm *room) mediated(ctx context.Context, st *router.Stanza) error {
	var p invitePayload
	if err := st.Decode(&p); err != nil || p.User == nil {
		return router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	if d := p.User.Decline; d != nil {
		to, err := jid.Parse(d.To)
		if err != nil {
			return router.NewError(stanza.Modify, stanza.JIDMalformed, "")
		}
		b := wire.NewBuilder(nil)
		b.StartNS("x", NSUser).Start("decline", "from", st.From.Bare().String())
		if d.Reason != "" {
			b.Element("reason", "", d.Reason)
		}
		rm.m.r.Route(ctx, &router.Stanza{Kind: router.KindMessage, To: to, From: rm.jid, Inner: b.Bytes()})
		return router.ErrHandled
	}
	for _, inv := range p.User.Invites {
		to, err := jid.Parse(inv.To)
		if err != nil {
			return router.NewError(stanza.Modify, stanza.JIDMalformed, "")
		}
		if err := rm.invite(ctx, st.From, to, inv.Reason, true); err != nil {
			return err
		}
	}
	return router.ErrHandled
}

// invite checks that from may invite to, makes to a member, and either
// routes the invitation (send) or, for a local number without an
// available session, keeps it and texts the number (SPEC.md "Group
// chats"). It returns router.ErrHandled when it dealt with the
// invitation, nil when a direct one (send false) should go on its way.
func (rm *room) invite(ctx context.Context, from, to jid.JID, reason string, send bool) error {
	to, err := rm.m.r.Normalize(to)
	if err != nil {
		return err
	}
	to = to.Bare()
	toStr := to.String()
	rm.mu.Lock()
	fromBare := from.Bare().String()
	aff := rm.affOf(fromBare)
	in := rm.byFull[from.String()] != nil
	switch {
	case rm.destroyed || rm.locked:
		rm.mu.Unlock()
		return router.NewError(stanza.Cancel, stanza.ItemNotFound, "no such group")
	case !in && aff < Member:
		rm.mu.Unlock()
		return router.NewError(stanza.Modify, stanza.NotAcceptable, "you are not in this group")
	case !CanInvite(aff, rm.cfg.AllowInvites):
		rm.mu.Unlock()
		return authError(stanza.Forbidden, "you may not invite others to this group")
	case rm.affOf(toStr) == Outcast:
		rm.mu.Unlock()
		return authError(stanza.Forbidden, toStr+" is banned from this group")
	}
	var saved []groups.Affiliation
	if rm.affOf(toStr) == NoAffiliation {
		// The invitee becomes a member: the member list is the group.
		saved = rm.setAffiliation(ctx, toStr, Member, "", "")
	}
	name, password := rm.cfg.Name, rm.cfg.Password
	if name == "" {
		name = rm.jid.Localpart()
	}
	rm.mu.Unlock()
	if err := rm.m.saveAffiliations(ctx, saved); err != nil {
		return err
	}
	if to.Domainpart() == rm.m.r.Domain() && rm.m.Invites != nil && !hasAvailable(rm.m.r.Sessions(to)) {
		warning, err := rm.m.Invites.Invite(ctx, groups.Invitation{Invitee: to.Localpart(), Room: rm.jidStr,
			Inviter: fromBare, Reason: reason, Password: password, Stamp: time.Now().UTC()}, name)
		if err != nil {
			return err
		}
		if warning != nil {
			return warning
		}
		return router.ErrHandled
	}
	if send {
		rm.m.r.Route(ctx, &router.Stanza{Kind: router.KindMessage, To: to, From: rm.jid,
			Inner: invitation(rm.jidStr, fromBare, reason, password)})
		return router.ErrHandled
	}
	return nil
}

func hasAvailable(ss []*router.Session) bool {
	for _, s := range ss {
		if s.Available() {
			return true
		}
	}
	return false
}

// invitation is the children of a mediated invitation from the room, with
// the XEP-0249 form beside it for clients that read only that one.
func invitation(room, from, reason, password string) []byte {
	b := wire.NewBuilder(nil)
	b.StartNS("x", NSUser).Start("invite", "from", from)
	if reason != "" {
		b.Element("reason", "", reason)
	}
	b.End()
	if password != "" {
		b.Element("password", "", password)
	}
	b.End()
	b.StartNS("x", nsConf, "jid", room, "reason", reason, "password", password).End()
	return b.Bytes()
}

// directInvite sees XEP-0249 invitations that local users send to rooms
// here: the invitee becomes a member, and one without an available
// session gets the invitation kept and an SMS instead of the message.
func (m *Module) directInvite(ctx context.Context, ev *router.Event) error {
	st := ev.Stanza
	if st.Type == "groupchat" || st.Type == "error" || st.To.Domainpart() == m.host ||
		!bytes.Contains(st.Inner, []byte(nsConf)) {
		return nil
	}
	var p invitePayload
	if err := st.Decode(&p); err != nil || p.Conference == nil {
		return nil
	}
	roomJID, err := jid.Parse(p.Conference.JID)
	if err != nil || roomJID.Domainpart() != m.host || p.User != nil {
		return nil // someone else's room, or a mediated invitation passing by
	}
	rm, err := m.room(ctx, roomJID.Bare().String())
	if err != nil || rm == nil {
		return err
	}
	return rm.invite(ctx, st.From, st.To, p.Conference.Reason, false)
}

// deliverInvitations sends the invitations kept for a number when it
// comes online, then forgets them.
func (m *Module) deliverInvitations(ctx context.Context, s *router.Session) {
	number := s.Bare().Localpart()
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	invs, err := m.store.MUCInvitations(sctx, number)
	if err != nil {
		m.Log.Error("reading kept group invitations", "number", number, "err", err)
		return
	}
	if len(invs) == 0 {
		return
	}
	for _, inv := range invs {
		rj, err := jid.Parse(inv.Room)
		if err != nil {
			continue
		}
		b := wire.NewBuilder(nil)
		b.Raw(invitation(inv.Room, inv.Inviter, inv.Reason, inv.Password))
		b.StartNS("delay", nsDelay, "stamp", inv.Stamp.UTC().Format("2006-01-02T15:04:05Z"), "from", inv.Room).End()
		st := &router.Stanza{Kind: router.KindMessage, To: s.JID(), From: rj, ID: newID(), Inner: b.Bytes()}
		s.Send(st.Bytes())
	}
	if err := m.store.DeleteMUCInvitations(sctx, number); err != nil {
		m.Log.Error("forgetting delivered group invitations", "number", number, "err", err)
	}
}
