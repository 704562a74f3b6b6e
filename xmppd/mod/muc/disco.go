package muc

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"slices"
	"strconv"

	"mellium.im/xmpp/stanza"

	"dialtone/xmppd/mod/internal/payload"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

func itoa(n int) string { return strconv.Itoa(n) }

// discoInfo answers disco#info for the service and for each room.
func (m *Module) discoInfo(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	if iq.Type != "get" {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	b := wire.NewBuilder(nil)
	b.StartNS("query", nsDiscoInfo)
	if iq.To.Localpart() == "" {
		b.Start("identity", "category", "conference", "type", "text", "name", "Groups").End()
		for _, f := range []string{nsDiscoInfo, nsDiscoItem, NS, nsSID, nsVCard, nsPing} {
			b.Start("feature", "var", f).End()
		}
		return b.End().Bytes(), nil
	}
	if iq.To.Resourcepart() != "" {
		return nil, router.NewError(stanza.Cancel, stanza.FeatureNotImplemented, "")
	}
	rm, err := m.roomOf(ctx, iq)
	if err != nil {
		return nil, err
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.locked {
		return nil, router.NewError(stanza.Cancel, stanza.ItemNotFound, "no such group")
	}
	c := rm.cfg
	name := c.Name
	if name == "" {
		name = rm.jid.Localpart()
	}
	b.Start("identity", "category", "conference", "type", "text", "name", name).End()
	feats := []string{nsDiscoInfo, nsDiscoItem, NS, nsSID, nsVCard, nsPing, nsMAM, "muc_stable_id",
		pick(c.Persistent, "muc_persistent", "muc_temporary"),
		pick(c.Public, "muc_public", "muc_hidden"),
		pick(c.MembersOnly, "muc_membersonly", "muc_open"),
		pick(c.Moderated, "muc_moderated", "muc_unmoderated"),
		pick(c.Password != "", "muc_passwordprotected", "muc_unsecured"),
		pick(c.WhoisAnyone, "muc_nonanonymous", "muc_semianonymous"),
	}
	if !c.MAM {
		feats = slices.DeleteFunc(feats, func(f string) bool { return f == nsMAM })
	}
	for _, f := range feats {
		b.Start("feature", "var", f).End()
	}
	b.StartNS("x", nsData, "type", "result")
	field := func(v, value string) {
		b.Start("field", "var", v).Element("value", "", value).End()
	}
	b.Start("field", "var", "FORM_TYPE", "type", "hidden").Element("value", "", nsRoomInfo).End()
	field("muc#roominfo_description", c.Description)
	field("muc#roominfo_subject", rm.subject)
	field("muc#roominfo_occupants", itoa(len(rm.occupants)))
	field(nsConfVar+"roomname", c.Name)
	if rm.vcard != nil {
		h := sha1.Sum(photoOf(rm.vcard))
		field("muc#roominfo_avatarhash", hex.EncodeToString(h[:]))
	}
	b.End()
	return b.End().Bytes(), nil
}

func pick(cond bool, yes, no string) string {
	if cond {
		return yes
	}
	return no
}

// discoItems lists the public rooms of the service; a room lists nothing
// (its occupants are not for everyone).
func (m *Module) discoItems(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	if iq.Type != "get" {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	b := wire.NewBuilder(nil)
	b.StartNS("query", nsDiscoItem)
	if iq.To.Localpart() == "" {
		for _, it := range m.publicGroups(ctx) {
			b.Start("item", "jid", it.JID, "name", it.Name).End()
		}
	}
	return b.End().Bytes(), nil
}

// vcardIQ keeps the room's vCard (its avatar): anyone reads it, owners set
// it.
func (m *Module) vcardIQ(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	rm, err := m.roomOf(ctx, iq)
	if err != nil {
		return nil, err
	}
	if iq.To.Resourcepart() != "" {
		return nil, router.NewError(stanza.Cancel, stanza.FeatureNotImplemented, "")
	}
	if iq.Type == "get" {
		rm.mu.Lock()
		v := rm.vcard
		rm.mu.Unlock()
		if v == nil {
			return wire.NewBuilder(nil).Element("vCard", nsVCard, "").Bytes(), nil
		}
		return v, nil
	}
	r, start, err := payload.Open(iq)
	if err != nil {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	v, err := payload.Copy(r, start, maxVCard)
	if err != nil {
		return nil, payload.Error(err, "the vCard")
	}
	rm.mu.Lock()
	if !CanConfigure(rm.affOf(iq.From.Bare().String())) {
		rm.mu.Unlock()
		return nil, authError(stanza.Forbidden, "only an owner may change the group's picture")
	}
	rm.vcard = v
	// Occupants learn of the new avatar as of a configuration change
	// (clients then read the room's vCard again).
	b := wire.NewBuilder(nil)
	b.StartNS("x", NSUser).Start("status", "code", "104").End().End()
	rm.broadcast(ctx, &outgoing{kind: router.KindMessage, from: rm.jid, typ: "groupchat", id: newID(), inner: b.Bytes()})
	rm.mu.Unlock()
	rm.save(ctx)
	return nil, nil
}

// maxVCard bounds a room's vCard (an avatar is in it).
const maxVCard = 256 << 10

// photoOf returns the BINVAL bytes' text of a vCard, for the avatar hash.
func photoOf(v []byte) []byte {
	const open, end = "<BINVAL>", "</BINVAL>"
	i := bytes.Index(v, []byte(open))
	if i < 0 {
		return nil
	}
	j := bytes.Index(v[i:], []byte(end))
	if j < 0 {
		return nil
	}
	return v[i+len(open) : i+j]
}

// ping answers pings to the service, a room, and XEP-0410 self-pings to
// an occupant JID: a result while the sender is in the room under that
// nick, not-acceptable when it is not.
func (m *Module) ping(ctx context.Context, iq *router.Stanza) ([]byte, error) {
	if iq.Type != "get" {
		return nil, router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	if iq.To.Localpart() == "" {
		return nil, nil
	}
	rm, err := m.roomOf(ctx, iq)
	if err != nil {
		if iq.To.Resourcepart() != "" {
			return nil, router.NewError(stanza.Modify, stanza.NotAcceptable, "you are not in this group")
		}
		return nil, err
	}
	nick := iq.To.Resourcepart()
	rm.mu.Lock()
	defer rm.mu.Unlock()
	o := rm.byFull[iq.FromString()]
	switch {
	case nick == "":
		return nil, nil
	case o == nil:
		return nil, router.NewError(stanza.Modify, stanza.NotAcceptable, "you are not in this group")
	case o.nick == nick:
		return nil, nil
	case rm.occupants[nick] != nil:
		return nil, nil // another occupant: the room answers for its client
	}
	return nil, router.NewError(stanza.Cancel, stanza.ItemNotFound, "")
}
