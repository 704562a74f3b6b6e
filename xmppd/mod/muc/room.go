package muc

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/groups"
	"dialtone/xmppd/mod/internal/payload"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// affRecord is a user's affiliation with what the room keeps of it.
type affRecord struct {
	aff          Affiliation
	nick, reason string
}

// session is one client session (one device) in a room.
type session struct {
	full    jid.JID
	fullStr string
	local   *router.Session // nil for a user on another server
}

// occupant is one nick in a room: one user, with one session per device
// that joined under it.
type occupant struct {
	nick     string
	bare     jid.JID
	bareStr  string
	role     Role
	sessions []*session
	pres     []byte // the children of its latest presence, <x xmlns=muc> removed
}

// histItem is a message kept for the discussion history.
type histItem struct {
	stamp time.Time
	out   *outgoing
}

// room is one room. mu guards everything below it; nothing holds it
// across a store call. saveMu orders the writes of its record.
type room struct {
	m      *Module
	jid    jid.JID
	jidStr string

	saveMu sync.Mutex

	mu        sync.Mutex
	cfg       Config
	locked    bool // made by joining, not yet configured
	destroyed bool
	created   time.Time
	subject   string
	subjectBy string
	vcard     []byte
	affs      map[string]affRecord // bare JID → affiliation (none is absent)
	occupants map[string]*occupant // nick → occupant
	byFull    map[string]*occupant // full JID of each session → its occupant
	history   []histItem           // the last historyKept messages, oldest first
	// stored: a temporary room that moved from another node of a
	// cluster through the store (place.go), where it stays until it
	// ends; since: when it was loaded here.
	stored bool
	since  time.Time
}

func (m *Module) newRoom(j jid.JID, cfg Config) *room {
	return &room{m: m, jid: j.Bare(), jidStr: j.Bare().String(), cfg: cfg, created: time.Now().UTC(),
		affs: make(map[string]affRecord), occupants: make(map[string]*occupant), byFull: make(map[string]*occupant)}
}

func (rm *room) ownedBy(bare string) bool {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	return rm.affs[bare].aff == Owner
}

// affOf is the affiliation of a bare JID; rm.mu held.
func (rm *room) affOf(bare string) Affiliation { return rm.affs[bare].aff }

// record is the room as stored; rm.mu held.
func (rm *room) record() groups.Room {
	return groups.Room{JID: rm.jidStr, Config: rm.cfg.encode(), Subject: rm.subject, SubjectBy: rm.subjectBy,
		VCard: rm.vcard, Created: rm.created}
}

// save stores the room's record if it is persistent; writes are ordered
// by saveMu so that the last change is the one stored.
func (rm *room) save(ctx context.Context) {
	rm.saveMu.Lock()
	defer rm.saveMu.Unlock()
	rm.mu.Lock()
	persistent, destroyed, rec := rm.cfg.Persistent && !rm.locked, rm.destroyed, rm.record()
	rm.mu.Unlock()
	if persistent && !destroyed {
		rm.m.saveRoom(ctx, rec)
	}
}

// outgoing is a stanza the room sends to many: serialised once without
// 'to'; each receiver's copy splices its 'to' in front of the rest.
type outgoing struct {
	kind  router.Kind
	from  jid.JID
	typ   string
	id    string
	inner []byte
	rest  []byte // the stanza without 'to', made on first use
}

func (o *outgoing) serialised() []byte {
	if o.rest == nil {
		st := &router.Stanza{Kind: o.kind, From: o.from, ID: o.id, Type: o.typ, Inner: o.inner}
		o.rest = st.Bytes()
	}
	return o.rest
}

// withAttr returns the stanza with one more attribute on its start tag.
func (o *outgoing) withAttr(name, value string) []byte {
	rest := o.serialised()
	n := 1 + len(o.kind.String()) // "<message"
	b := make([]byte, 0, len(rest)+len(name)+len(value)+8)
	b = append(b, rest[:n]...)
	b = wire.AppendAttr(b, name, value)
	return append(b, rest[n:]...)
}

// send writes o to one session: a local one straight to its stream, a
// remote one through the router (s2s).
func (rm *room) send(ctx context.Context, s *session, o *outgoing) {
	if s.local == nil && s.full.Domainpart() == rm.m.r.Domain() {
		s.local = rm.m.r.Session(s.full)
	}
	if s.local != nil {
		s.local.Send(o.withAttr("to", s.fullStr))
		return
	}
	rm.m.r.Route(ctx, &router.Stanza{Kind: o.kind, To: s.full, From: o.from, ID: o.id, Type: o.typ, Inner: o.inner})
}

// broadcast sends o to every session of every occupant; rm.mu held (so
// that every occupant sees the room's stanzas in one order).
func (rm *room) broadcast(ctx context.Context, o *outgoing) {
	for _, oc := range rm.occupants {
		for _, s := range oc.sessions {
			rm.send(ctx, s, o)
		}
	}
}

func (rm *room) occupantJID(nick string) jid.JID {
	j, err := jid.New(rm.jid.Localpart(), rm.jid.Domainpart(), nick)
	if err != nil {
		return rm.jid
	}
	return j
}

// presenceCodes are the status codes and extras of one occupant presence.
type presenceCodes struct {
	codes   []int
	newNick string // 303
	reason  string
	actor   string // nick of who kicked or banned
	destroy *destroyInfo
}

type destroyInfo struct{ venue, reason, password string }

// presenceOf builds o's presence as receivers see it; withJID adds the
// real JID (non-anonymous rooms, or a moderator receiving).
func (rm *room) presenceOf(o *occupant, typ string, withJID bool, pc presenceCodes) *outgoing {
	b := wire.NewBuilder(nil)
	if typ != "unavailable" {
		b.Raw(o.pres)
	}
	b.StartNS("x", NSUser)
	if pc.destroy != nil {
		b.Start("destroy", "jid", pc.destroy.venue)
		if pc.destroy.reason != "" {
			b.Element("reason", "", pc.destroy.reason)
		}
		if pc.destroy.password != "" {
			b.Element("password", "", pc.destroy.password)
		}
		b.End()
	}
	b.Start("item", "affiliation", rm.affOf(o.bareStr).String(), "role", o.role.String(), "nick", pc.newNick)
	if withJID && len(o.sessions) > 0 {
		b.Attr("jid", o.sessions[0].fullStr)
	}
	if pc.actor != "" {
		b.Start("actor", "nick", pc.actor).End()
	}
	if pc.reason != "" {
		b.Element("reason", "", pc.reason)
	}
	b.End()
	for _, c := range pc.codes {
		b.Start("status", "code", strconv.Itoa(c)).End()
	}
	b.End()
	return &outgoing{kind: router.KindPresence, from: rm.occupantJID(o.nick), typ: typ, inner: b.Bytes()}
}

// sendPresence sends o's presence to every session in the room (others
// first, then o's own with selfCodes added), choosing for each receiver
// whether it sees o's real JID. With only set, just that session of o
// gets it (another device joining an occupant).
func (rm *room) sendPresence(ctx context.Context, o *occupant, typ string, pc presenceCodes, selfCodes []int, only *session) {
	var anon, named *outgoing
	for _, oc := range rm.occupants {
		if oc == o || only != nil {
			continue
		}
		withJID := rm.cfg.WhoisAnyone || oc.role == Moderator
		var p *outgoing
		if withJID {
			if named == nil {
				named = rm.presenceOf(o, typ, true, pc)
			}
			p = named
		} else {
			if anon == nil {
				anon = rm.presenceOf(o, typ, false, pc)
			}
			p = anon
		}
		for _, s := range oc.sessions {
			rm.send(ctx, s, p)
		}
	}
	self := pc
	self.codes = append(append([]int(nil), pc.codes...), selfCodes...)
	p := rm.presenceOf(o, typ, true, self)
	targets := o.sessions
	if only != nil {
		targets = []*session{only}
	}
	for _, s := range targets {
		rm.send(ctx, s, p)
	}
}

// joinRequest is what a join presence asks for (<x xmlns=muc>).
type joinRequest struct {
	password   string
	maxStanzas int // -1: not said
	maxChars   int // -1: not said
	seconds    int // -1: not said
	since      time.Time
	pres       []byte // the presence's children without the muc element
}

func parseJoin(st *router.Stanza) (joinRequest, error) {
	jr := joinRequest{maxStanzas: -1, maxChars: -1, seconds: -1}
	if len(st.Inner) == 0 {
		return jr, nil
	}
	if !bytes.Contains(st.Inner, []byte(NS)) {
		jr.pres = st.Inner
		return jr, nil
	}
	var out []byte
	err := eachChild(st, func(r xml.TokenReader, start xml.StartElement) error {
		if start.Name.Space != NS || start.Name.Local != "x" {
			el, err := payload.Copy(r, start, 0)
			out = append(out, el...)
			return err
		}
		var x struct {
			Password string `xml:"password"`
			History  *struct {
				MaxStanzas *int   `xml:"maxstanzas,attr"`
				MaxChars   *int   `xml:"maxchars,attr"`
				Seconds    *int   `xml:"seconds,attr"`
				Since      string `xml:"since,attr"`
			} `xml:"history"`
		}
		if err := xml.NewTokenDecoder(r).DecodeElement(&x, &start); err != nil {
			return err
		}
		jr.password = x.Password
		if h := x.History; h != nil {
			if h.MaxStanzas != nil {
				jr.maxStanzas = *h.MaxStanzas
			}
			if h.MaxChars != nil {
				jr.maxChars = *h.MaxChars
			}
			if h.Seconds != nil {
				jr.seconds = *h.Seconds
			}
			if h.Since != "" {
				jr.since, _ = time.Parse(time.RFC3339, h.Since)
			}
		}
		return nil
	})
	jr.pres = out
	return jr, err
}

// eachChild calls fn for each child element of st with the reader
// positioned after its start; fn must consume the element.
func eachChild(st *router.Stanza, fn func(r xml.TokenReader, start xml.StartElement) error) error {
	r := st.TokenReader()
	depth := 0
	for {
		tok, err := r.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 1 {
				if err := fn(r, t.Copy()); err != nil {
					return err
				}
				continue
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
}

func authError(cond stanza.Condition, text string) error {
	return router.NewError(stanza.Auth, cond, text)
}

// join enters the sender of a presence into the room under nick, changes
// its nick, or broadcasts its new presence.
func (rm *room) join(ctx context.Context, ev *router.Event, nick string, made bool) error {
	st := ev.Stanza
	jr, err := parseJoin(st)
	if err != nil {
		return router.NewError(stanza.Modify, stanza.BadRequest, "")
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	if rm.destroyed {
		return errGone
	}
	fullStr := st.FromString()
	if o := rm.byFull[fullStr]; o != nil {
		if o.nick == nick {
			o.pres = jr.pres
			rm.sendPresence(ctx, o, "", presenceCodes{}, []int{110}, nil)
			return nil
		}
		return rm.changeNick(ctx, o, nick)
	}
	bareStr := st.From.Bare().String()
	aff := rm.affOf(bareStr)
	switch {
	case rm.locked && aff != Owner:
		return router.NewError(stanza.Cancel, stanza.ItemNotFound, "the group is being set up")
	case aff == Outcast:
		return authError(stanza.Forbidden, "you are banned from this group")
	case !CanEnter(aff, rm.cfg.MembersOnly):
		return authError(stanza.RegistrationRequired, "only members may enter this group")
	case rm.cfg.Password != "" && jr.password != rm.cfg.Password && aff < Admin:
		return authError(stanza.NotAuthorized, "a password is needed to enter this group")
	}
	o := rm.occupants[nick]
	if o != nil && o.bareStr != bareStr {
		return router.NewError(stanza.Cancel, stanza.Conflict, "that nickname is taken")
	}
	if o == nil && len(rm.occupants) >= rm.cfg.maxUsers(rm.m.MaxOccupants) && aff < Admin {
		return router.NewError(stanza.Wait, stanza.ServiceUnavailable, "the group is full")
	}
	s := &session{full: st.From, fullStr: fullStr, local: rm.m.localSession(ev)}
	codes := []int{110}
	if rm.cfg.WhoisAnyone {
		codes = append(codes, 100)
	}
	if rm.cfg.MAM {
		codes = append(codes, 170)
	}
	if made {
		codes = append(codes, 201)
	}
	if o != nil {
		// Another device of the same user: it joins the occupant it is.
		o.sessions = append(o.sessions, s)
		rm.byFull[fullStr] = o
		rm.occupantsTo(ctx, s, o)
		rm.sendPresence(ctx, o, "", presenceCodes{}, codes, s)
	} else {
		o = &occupant{nick: nick, bare: st.From.Bare(), bareStr: bareStr, role: DefaultRole(aff, rm.cfg.Moderated),
			sessions: []*session{s}, pres: jr.pres}
		rm.occupantsTo(ctx, s, nil)
		rm.occupants[nick] = o
		rm.byFull[fullStr] = o
		rm.sendPresence(ctx, o, "", presenceCodes{}, codes, nil)
	}
	rm.historyTo(ctx, s, jr)
	rm.subjectTo(ctx, s)
	return nil
}

// occupantsTo sends the presence of every occupant but skip to s.
func (rm *room) occupantsTo(ctx context.Context, s *session, skip *occupant) {
	viewer := rm.byFull[s.fullStr]
	moderator := viewer != nil && viewer.role == Moderator
	for _, oc := range rm.occupants {
		if oc == skip {
			continue
		}
		rm.send(ctx, s, rm.presenceOf(oc, "", rm.cfg.WhoisAnyone || moderator, presenceCodes{}))
	}
}

// historyTo sends the discussion history the join asked for (XEP-0045
// §7.2.15): the newest messages that every limit given allows
// (maxstanzas, maxchars counted over the whole stanzas as sent, seconds,
// since), oldest first.
func (rm *room) historyTo(ctx context.Context, s *session, jr joinRequest) {
	since := jr.since
	if jr.seconds >= 0 {
		if t := time.Now().Add(-time.Duration(jr.seconds) * time.Second); t.After(since) {
			since = t
		}
	}
	// The 'to' attribute each stanza gets, for maxchars.
	toChars := utf8.RuneCountInString(s.fullStr) + len(` to=""`)
	var picked []*outgoing
	chars := 0
	for i := len(rm.history) - 1; i >= 0; i-- {
		h := rm.history[i]
		if jr.maxStanzas >= 0 && len(picked) >= jr.maxStanzas || !since.IsZero() && h.stamp.Before(since) {
			break
		}
		b := wire.NewBuilder(make([]byte, 0, len(h.out.inner)+128))
		b.Raw(h.out.inner)
		b.StartNS("delay", nsDelay, "stamp", h.stamp.Format("2006-01-02T15:04:05.000Z"), "from", rm.jidStr).End()
		out := &outgoing{kind: router.KindMessage, from: h.out.from, typ: "groupchat", id: h.out.id, inner: b.Bytes()}
		if jr.maxChars >= 0 {
			if chars += utf8.RuneCount(out.serialised()) + toChars; chars > jr.maxChars {
				break
			}
		}
		picked = append(picked, out)
	}
	for i := len(picked) - 1; i >= 0; i-- {
		rm.send(ctx, s, picked[i])
	}
}

// subjectTo sends the subject, which ends the join (§7.2.15).
func (rm *room) subjectTo(ctx context.Context, s *session) {
	rm.send(ctx, s, rm.subjectMessage())
}

func (rm *room) subjectMessage() *outgoing {
	from := rm.jid
	if rm.subjectBy != "" {
		from = rm.occupantJID(rm.subjectBy)
	}
	b := wire.NewBuilder(nil)
	b.Element("subject", "", rm.subject)
	return &outgoing{kind: router.KindMessage, from: from, typ: "groupchat", id: newID(), inner: b.Bytes()}
}

// changeNick gives o a new nick (§7.6): unavailable with 303 under the
// old one, then available under the new one.
func (rm *room) changeNick(ctx context.Context, o *occupant, nick string) error {
	if other := rm.occupants[nick]; other != nil {
		return router.NewError(stanza.Cancel, stanza.Conflict, "that nickname is taken")
	}
	rm.sendPresence(ctx, o, "unavailable", presenceCodes{codes: []int{303}, newNick: nick}, []int{110}, nil)
	delete(rm.occupants, o.nick)
	o.nick = nick
	rm.occupants[nick] = o
	rm.sendPresence(ctx, o, "", presenceCodes{}, []int{110}, nil)
	return nil
}

// leave takes the session full out of the room (unavailable presence, or
// the session went away).
func (rm *room) leave(ctx context.Context, full jid.JID, st *router.Stanza) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	fullStr := full.String()
	o := rm.byFull[fullStr]
	if o == nil {
		return
	}
	delete(rm.byFull, fullStr)
	var gone *session
	for i, s := range o.sessions {
		if s.fullStr == fullStr {
			gone = s
			o.sessions = append(o.sessions[:i:i], o.sessions[i+1:]...)
			break
		}
	}
	if len(o.sessions) > 0 {
		// Another device stays: only this one hears that it left.
		p := rm.presenceOf(o, "unavailable", true, presenceCodes{codes: []int{110}})
		rm.send(ctx, gone, p)
		return
	}
	o.sessions = []*session{gone}
	o.role = NoRole
	rm.sendPresence(ctx, o, "unavailable", presenceCodes{}, []int{110}, nil)
	delete(rm.occupants, o.nick)
	rm.emptied()
}

// emptied forgets a room nobody is in that does not persist; rm.mu held.
func (rm *room) emptied() {
	if len(rm.occupants) == 0 && (!rm.cfg.Persistent || rm.locked) {
		rm.destroyed = true
		rm.m.forget(rm)
		if rm.stored {
			rm.m.ended(rm.jidStr)
		}
	}
}

// removeOccupant takes o out with an unavailable presence carrying pc
// (kicked, banned, no longer a member); rm.mu held.
func (rm *room) removeOccupant(ctx context.Context, o *occupant, pc presenceCodes) {
	o.role = NoRole
	rm.sendPresence(ctx, o, "unavailable", pc, []int{110}, nil)
	delete(rm.occupants, o.nick)
	for _, s := range o.sessions {
		delete(rm.byFull, s.fullStr)
		if s.local != nil {
			joinedKey.Get(s.local).remove(rm)
		}
	}
	rm.emptied()
}

// newID makes a stanza-id: 12 random bytes, URL-safe base64.
func newID() string {
	var b [12]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// message handles a message to the room or to an occupant.
func (rm *room) message(ctx context.Context, ev *router.Event) error {
	st := ev.Stanza
	if st.To.Resourcepart() != "" {
		return rm.private(ctx, st)
	}
	if st.Type == "groupchat" {
		return rm.groupchat(ctx, st)
	}
	if bytes.Contains(st.Inner, []byte(NSUser)) {
		return rm.mediated(ctx, st)
	}
	return router.NewError(stanza.Modify, stanza.BadRequest, "messages to a group are of type groupchat")
}

var (
	bodyTag    = []byte("<body")
	subjectTag = []byte("<subject")
)

// groupchat sends a message to everyone in the room, with its stanza-id,
// and archives it.
func (rm *room) groupchat(ctx context.Context, st *router.Stanza) error {
	inner := st.Inner
	if bytes.Contains(inner, []byte(nsSID)) {
		var err error
		if inner, err = rm.stripStanzaIDs(st); err != nil {
			return router.NewError(stanza.Modify, stanza.BadRequest, "")
		}
	}
	hasBody := bytes.Contains(inner, bodyTag)
	id := newID()
	b := wire.NewBuilder(make([]byte, 0, len(inner)+96))
	b.Raw(inner)
	b.StartNS("stanza-id", nsSID, "id", id, "by", rm.jidStr).End()
	var save bool
	rm.mu.Lock()
	o := rm.byFull[st.FromString()]
	switch {
	case o == nil:
		rm.mu.Unlock()
		return router.NewError(stanza.Modify, stanza.NotAcceptable, "you are not in this group")
	case !hasBody && bytes.Contains(inner, subjectTag):
		if !CanChangeSubject(o.role, rm.cfg.ChangeSubject) {
			rm.mu.Unlock()
			return authError(stanza.Forbidden, "you may not change the subject of this group")
		}
		var m struct {
			Subject string `xml:"subject"`
		}
		if err := st.Decode(&m); err != nil {
			rm.mu.Unlock()
			return router.NewError(stanza.Modify, stanza.BadRequest, "")
		}
		rm.subject, rm.subjectBy, save = m.Subject, o.nick, true
	case !CanSpeak(o.role):
		rm.mu.Unlock()
		return authError(stanza.Forbidden, "you have no voice in this group")
	}
	out := &outgoing{kind: router.KindMessage, from: rm.occupantJID(o.nick), typ: "groupchat", id: st.ID, inner: b.Bytes()}
	rm.broadcast(ctx, out)
	if hasBody {
		now := time.Now().UTC()
		if len(rm.history) >= historyKept {
			rm.history = append(rm.history[:0], rm.history[1:]...)
		}
		rm.history = append(rm.history, histItem{stamp: now, out: out})
		if rm.cfg.MAM {
			rm.m.archive.add(groups.Message{Room: rm.jidStr, ID: id, Stamp: now, Nick: o.nick, Sender: o.bareStr,
				Stanza: out.serialised()})
		}
	}
	rm.mu.Unlock()
	if save {
		rm.save(ctx)
	}
	return router.ErrHandled
}

// stripStanzaIDs drops the stanza-ids a sender put in claiming to be the
// room's (XEP-0359 §3.1).
func (rm *room) stripStanzaIDs(st *router.Stanza) ([]byte, error) {
	var out []byte
	err := eachChild(st, func(r xml.TokenReader, start xml.StartElement) error {
		if start.Name.Space == nsSID && start.Name.Local == "stanza-id" {
			if by, _ := payload.Attr(start, "by"); by == rm.jidStr {
				return payload.Skip(r)
			}
		}
		el, err := payload.Copy(r, start, 0)
		out = append(out, el...)
		return err
	})
	return out, err
}

// private sends a private message to an occupant (§7.5).
func (rm *room) private(ctx context.Context, st *router.Stanza) error {
	if st.Type == "groupchat" {
		return router.NewError(stanza.Modify, stanza.BadRequest, "a groupchat message goes to the group")
	}
	rm.mu.Lock()
	defer rm.mu.Unlock()
	from := rm.byFull[st.FromString()]
	if from == nil {
		return router.NewError(stanza.Modify, stanza.NotAcceptable, "you are not in this group")
	}
	to := rm.occupants[st.To.Resourcepart()]
	if to == nil {
		return router.NewError(stanza.Cancel, stanza.ItemNotFound, "nobody of that nickname is in the group")
	}
	b := wire.NewBuilder(make([]byte, 0, len(st.Inner)+48))
	b.Raw(st.Inner)
	b.StartNS("x", NSUser).End()
	out := &outgoing{kind: router.KindMessage, from: rm.occupantJID(from.nick), typ: st.Type, id: st.ID, inner: b.Bytes()}
	for _, s := range to.sessions {
		rm.send(ctx, s, out)
	}
	return router.ErrHandled
}
