// Package muc is the group chat service (XEP-0045) at groups.DOMAIN:
// rooms made by joining, the owner's configuration form, affiliations and
// roles, a MAM archive per room (XEP-0313) with stanza-ids (XEP-0359),
// discussion history, self-ping (XEP-0410), direct (XEP-0249) and
// mediated invitations, room vCards, and invitations of phone numbers
// that have never logged in (SPEC.md "Group chats").
//
// Each room has its own lock; nothing on the message path takes a lock
// shared by rooms. A message to a room is encoded once; each occupant's
// copy differs only in its 'to' attribute, spliced in front of the shared
// bytes.
package muc

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/groups"
	"dialtone/xmppd/router"
)

// Defaults of the limits (SPEC.md "Group chats").
const (
	DefaultMaxOccupants    = 1000
	DefaultRoomsPerAccount = 100
	// historyKept is how many messages a room keeps in memory for the
	// discussion history sent on joining.
	historyKept = 50
)

// Inviter keeps an invitation for a local number that has no available
// session: it makes the account as a message would, keeps the invitation
// and texts the number (account.Invitations is one). warning, when not
// nil, is a stanza error for the inviter (no SMS was sent).
type Inviter interface {
	Invite(ctx context.Context, inv groups.Invitation, group string) (warning error, err error)
}

// Module is the group chat service. Set the fields before Register.
type Module struct {
	// MaxOccupants bounds the occupants of a room
	// (XMPPD_MUC_MAX_OCCUPANTS); <= 0: DefaultMaxOccupants.
	MaxOccupants int
	// RoomsPerAccount bounds the rooms one account owns
	// (XMPPD_MUC_ROOMS_PER_ACCOUNT); <= 0: DefaultRoomsPerAccount.
	RoomsPerAccount int
	// Invites keeps invitations of numbers without a session; nil: such
	// invitations are only routed.
	Invites Inviter
	// Log: nil discards.
	Log *slog.Logger
	// Cluster places each group on one node of a cluster; nil on a
	// single node, which runs them all.
	Cluster Placement
	// Others asks the other nodes of a cluster about their groups
	// (census.go); nil on a single node.
	Others Census

	r       router.Routing
	store   groups.Store
	host    string
	hostJID jid.JID
	scope   router.Scope

	rooms sync.Map // bare room JID string → *room

	loadMu   sync.Mutex // loading the stored rooms, once (per change of the cluster's nodes)
	loaded   bool
	loadedAt uint64        // nodes at the last load
	nodes    atomic.Uint64 // changes of the cluster's nodes (NodesChanged)

	createMu sync.Mutex // creating a room: the rooms-per-account count

	archive archiver

	moved chan struct{} // the cluster's nodes changed (Placement)
	gone  chan string   // stored temporary rooms that ended (place.go)
}

// Placement puts each group on one node of a cluster (cluster.Cluster).
type Placement interface {
	// Node is this node's name.
	Node() string
	// Owner is the node that runs the group with this bare JID.
	Owner(room string) string
	// Forward hands a stanza's bytes to node, which hands them to
	// Module.Forwarded; false when node is gone.
	Forward(node string, b []byte) bool
}

// New returns the group chat service of r's domain at groups.DOMAIN.
func New(r router.Routing, store groups.Store) *Module {
	return &Module{r: r, store: store, host: "groups." + r.Domain()}
}

// Host is the service's domain.
func (m *Module) Host() string { return m.host }

// joinedKey lists the rooms a local session is in, to leave them when it
// goes away.
var joinedKey = router.NewKey[joinedRooms]()

type joinedRooms struct {
	mu    sync.Mutex
	rooms map[*room]struct{}
}

func (j *joinedRooms) add(r *room) {
	j.mu.Lock()
	if j.rooms == nil {
		j.rooms = make(map[*room]struct{})
	}
	j.rooms[r] = struct{}{}
	j.mu.Unlock()
}

func (j *joinedRooms) remove(r *room) {
	j.mu.Lock()
	delete(j.rooms, r)
	j.mu.Unlock()
}

func (j *joinedRooms) take() []*room {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]*room, 0, len(j.rooms))
	for r := range j.rooms {
		out = append(out, r)
	}
	clear(j.rooms)
	return out
}

// Register adds the host, its disco entries, the stanza hooks and the iq
// handlers.
func (m *Module) Register(h *router.Hooks) error {
	if m.MaxOccupants <= 0 {
		m.MaxOccupants = DefaultMaxOccupants
	}
	if m.RoomsPerAccount <= 0 {
		m.RoomsPerAccount = DefaultRoomsPerAccount
	}
	if m.Log == nil {
		m.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	hj, err := jid.Parse(m.host)
	if err != nil {
		return fmt.Errorf("muc: host %q: %w", m.host, err)
	}
	m.hostJID = hj
	m.scope = h.AddHost(m.host)
	h.AddItem(router.ScopeServer, router.DiscoItem{JID: m.host, Name: "Groups"})
	h.Hook(router.ToServer, router.Messages|router.Presences, 0, m.toHost)
	h.Hook(router.PreRoute, router.Messages, 0, m.directInvite)
	both := router.IQGet | router.IQSet
	for _, e := range []struct {
		ns, local string
		fn        router.IQHandler
	}{
		{nsDiscoInfo, "query", m.discoInfo},
		{nsDiscoItem, "query", m.discoItems},
		{NSAdmin, "query", m.adminIQ},
		{NSOwner, "query", m.ownerIQ},
		{nsVCard, "vCard", m.vcardIQ},
		{nsMAM, "query", m.mamQuery},
		{nsMAM, "prefs", m.mamPrefs},
		{nsPing, "ping", m.ping},
	} {
		h.HandleIQ(m.scope, both, xml.Name{Space: e.ns, Local: e.local}, e.fn)
	}
	h.OnSession(router.Unavailable, 0, m.sessionGone)
	h.OnSession(router.Closed, 0, m.sessionGone)
	h.OnSession(router.Available, 0, m.deliverInvitations)
	m.archive.init(m)
	h.Go(m.archive.run)
	if m.Cluster != nil {
		h.Hook(router.ToHost, router.Messages|router.Presences|router.IQs, 1<<20, m.place)
		m.moved = make(chan struct{}, 1)
		m.gone = make(chan string, goneQueue)
		h.Go(m.rebalance)
		h.Go(m.sweepMoved)
	}
	return nil
}

// sessionGone takes a local session that went unavailable or away out of
// every room it was in.
func (m *Module) sessionGone(ctx context.Context, s *router.Session) {
	for _, rm := range joinedKey.Get(s).take() {
		rm.leave(ctx, s.JID(), nil)
	}
}

// load reads the stored rooms into memory, once (retried after a failure).
func (m *Module) load(ctx context.Context) error {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	nodes := m.nodes.Load()
	if m.loaded && m.loadedAt == nodes {
		return nil
	}
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	rooms, err := m.store.MUCRooms(sctx)
	if err != nil {
		return fmt.Errorf("muc: loading rooms: %w", err)
	}
	affs, err := m.store.MUCAffiliations(sctx)
	if err != nil {
		return fmt.Errorf("muc: loading affiliations: %w", err)
	}
	// In a cluster this runs again after the nodes changed: it adds the
	// groups this node runs now, and keeps those it had.
	fresh := map[string]*room{}
	for _, rec := range rooms {
		j, err := jid.Parse(rec.JID)
		if err != nil {
			m.Log.Error("stored room with a bad JID", "room", rec.JID)
			continue
		}
		if _, ok := m.rooms.Load(j.Bare().String()); ok || !m.here(j.Bare().String()) {
			continue
		}
		cfg, err := decodeConfig(rec.Config)
		if err != nil {
			m.Log.Error("stored room with a bad configuration", "room", rec.JID, "err", err)
		}
		rm := m.newRoom(j, cfg)
		rm.created, rm.subject, rm.subjectBy, rm.vcard = rec.Created, rec.Subject, rec.SubjectBy, rec.VCard
		rm.stored, rm.since = !cfg.Persistent, time.Now() // a temporary one moved here
		fresh[rm.jidStr] = rm
	}
	for _, a := range affs {
		rm, ok := fresh[a.Room]
		if !ok {
			continue
		}
		aff, ok := ParseAffiliation(a.Affiliation)
		if !ok {
			continue
		}
		rm.affs[a.JID] = affRecord{aff: aff, nick: a.Nick, reason: a.Reason}
		if owner := m.ownerOf(a.JID); owner != a.Owner {
			// Stored before rows had owners: give it its account's, so
			// that it goes with the account.
			a.Owner = owner
			if err := m.store.SetMUCAffiliation(sctx, a); err != nil {
				m.Log.Error("owning a group affiliation", "room", a.Room, "jid", a.JID, "err", err)
			}
		}
	}
	for _, rm := range fresh {
		m.restoreHistory(ctx, rm)
		m.rooms.LoadOrStore(rm.jidStr, rm)
	}
	m.loaded, m.loadedAt = true, nodes
	return nil
}

// restoreHistory refills the discussion history of an archived room from
// its archive: the history is kept in memory, and a restart must not make a
// persistent room forget what was said in it. A failure costs the history,
// not the room.
func (m *Module) restoreHistory(ctx context.Context, rm *room) {
	if !rm.cfg.MAM {
		return
	}
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	msgs, _, err := m.store.MUCArchive(sctx, rm.jidStr, groups.Query{Last: true, Max: historyKept})
	if err != nil {
		m.Log.Error("restoring a group's discussion history", "room", rm.jidStr, "err", err)
		return
	}
	items := make([]histItem, 0, len(msgs))
	for _, msg := range msgs {
		var st struct {
			ID    string `xml:"id,attr"`
			Inner []byte `xml:",innerxml"`
		}
		if err := xml.Unmarshal(msg.Stanza, &st); err != nil {
			m.Log.Error("an archived group message that does not parse", "room", rm.jidStr, "id", msg.ID, "err", err)
			continue
		}
		items = append(items, histItem{stamp: msg.Stamp,
			out: &outgoing{kind: router.KindMessage, from: rm.occupantJID(msg.Nick), typ: "groupchat", id: st.ID, inner: st.Inner}})
	}
	rm.mu.Lock()
	rm.history = append(items, rm.history...)
	if n := len(rm.history); n > historyKept {
		rm.history = rm.history[n-historyKept:]
	}
	rm.mu.Unlock()
}

// ownerOf is the number owning the affiliation row of bare: its localpart
// when it is a local account's JID, else "".
func (m *Module) ownerOf(bare string) string {
	j, err := jid.Parse(bare)
	if err != nil || j.Domainpart() != m.r.Domain() {
		return ""
	}
	return j.Localpart()
}

// ForgetMember drops the affiliations of a local account that was
// recycled, released or deleted from the rooms in memory (the store
// removes its rows with the account), so that whoever gets the number
// next is not in its groups. Rooms are not loaded for it: loading reads
// the store, which no longer has them.
func (m *Module) ForgetMember(bare jid.JID) {
	key := bare.Bare().String()
	m.rooms.Range(func(_, v any) bool {
		rm := v.(*room)
		rm.mu.Lock()
		delete(rm.affs, key)
		rm.mu.Unlock()
		return true
	})
}

// room returns the room at bare, or nil.
func (m *Module) room(ctx context.Context, bare string) (*room, error) {
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	if v, ok := m.rooms.Load(bare); ok {
		return v.(*room), nil
	}
	return nil, nil
}

// create makes the room bare for its first occupant, or returns the room
// someone made meanwhile (made false).
func (m *Module) create(ctx context.Context, bare jid.JID, owner jid.JID) (rm *room, made bool, err error) {
	if owner.Domainpart() != m.r.Domain() {
		// Remote users join rooms here; they do not make them.
		return nil, false, router.NewError(stanza.Cancel, stanza.NotAllowed, "only users of this server can make groups here")
	}
	ownerStr := owner.Bare().String()
	// Asked before the lock: a round trip to the other nodes.
	elsewhere := 0
	if _, ok := m.rooms.Load(bare.String()); !ok {
		elsewhere = m.ownedElsewhere(ctx, ownerStr)
	}
	m.createMu.Lock()
	defer m.createMu.Unlock()
	if v, ok := m.rooms.Load(bare.String()); ok {
		return v.(*room), false, nil
	}
	n := elsewhere + m.ownedHere(ownerStr, m.RoomsPerAccount)
	if n >= m.RoomsPerAccount {
		return nil, false, router.NewError(stanza.Cancel, stanza.NotAllowed,
			fmt.Sprintf("you own %d groups already, the most one account may own here", n))
	}
	rm = m.newRoom(bare, DefaultConfig())
	rm.locked = true
	rm.affs[ownerStr] = affRecord{aff: Owner}
	m.rooms.Store(rm.jidStr, rm)
	return rm, true, nil
}

// forget drops a room from memory (destroyed, or temporary and empty).
func (m *Module) forget(rm *room) { m.rooms.CompareAndDelete(rm.jidStr, rm) }

// toHost takes the messages and presence addressed to the service.
func (m *Module) toHost(ctx context.Context, ev *router.Event) error {
	st := ev.Stanza
	if st.To.Domainpart() != m.host {
		return nil
	}
	if st.Type == "error" {
		return router.ErrHandled // an occupant's client refused something: nothing to answer
	}
	if st.To.Localpart() == "" {
		if st.Kind == router.KindMessage {
			return router.NewError(stanza.Cancel, stanza.ServiceUnavailable, "")
		}
		return router.ErrHandled
	}
	rm, err := m.room(ctx, st.To.Bare().String())
	if err != nil {
		return err
	}
	if st.Kind == router.KindPresence {
		return m.presence(ctx, rm, ev)
	}
	if rm == nil {
		return router.NewError(stanza.Cancel, stanza.ItemNotFound, "no such group")
	}
	return rm.message(ctx, ev)
}

// presence handles presence to a room or an occupant JID.
func (m *Module) presence(ctx context.Context, rm *room, ev *router.Event) error {
	st := ev.Stanza
	nick := st.To.Resourcepart()
	switch st.Type {
	case "unavailable":
		if rm != nil {
			rm.leave(ctx, st.From, st)
			if sess := m.localSession(ev); sess != nil {
				joinedKey.Get(sess).remove(rm)
			}
		}
		return router.ErrHandled
	case "":
	default:
		return router.ErrHandled // subscriptions and probes: rooms take none
	}
	if nick == "" {
		return router.NewError(stanza.Modify, stanza.JIDMalformed, "a nickname is needed to enter a group")
	}
	made := false
	if rm == nil {
		var err error
		if rm, made, err = m.create(ctx, st.To.Bare(), st.From); err != nil {
			return err
		}
	}
	if err := rm.join(ctx, ev, nick, made); err != nil {
		if made {
			m.forget(rm)
		}
		if errors.Is(err, errGone) {
			return router.NewError(stanza.Cancel, stanza.ItemNotFound, "no such group")
		}
		return err
	}
	if sess := m.localSession(ev); sess != nil {
		joinedKey.Get(sess).add(rm)
	}
	return router.ErrHandled
}

// localSession is the local session that sent a stanza, or nil: directed
// presence comes through the presence module, which routes it without
// an origin.
func (m *Module) localSession(ev *router.Event) *router.Session {
	if ev.Origin != nil {
		return ev.Origin
	}
	if f := ev.Stanza.From; f.Domainpart() == m.r.Domain() && f.Resourcepart() != "" {
		return m.r.Session(f)
	}
	return nil
}

// errGone: the room was destroyed while the stanza was on its way.
var errGone = errors.New("muc: room gone")

// saveRoom stores a persistent room's record (not under its lock).
func (m *Module) saveRoom(ctx context.Context, rec groups.Room) {
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	if err := m.store.PutMUCRoom(sctx, rec); err != nil {
		m.Log.Error("storing a group", "room", rec.JID, "err", err)
	}
}

// saveAffiliations stores affiliation changes of a persistent room.
func (m *Module) saveAffiliations(ctx context.Context, affs []groups.Affiliation) error {
	sctx, cancel := m.r.StoreContext(ctx)
	defer cancel()
	for _, a := range affs {
		a.Owner = m.ownerOf(a.JID)
		if err := m.store.SetMUCAffiliation(sctx, a); err != nil {
			return fmt.Errorf("muc: storing the affiliation of %s in %s: %w", a.JID, a.Room, err)
		}
	}
	return nil
}
