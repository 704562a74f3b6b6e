package muc

import (
	"context"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/xmppd/router"
)

// Groups in a cluster (SPEC.md "Several servers"): each group runs on one
// node, its owner (Placement.Owner), so that its occupants, history and
// order of messages are in one place. A stanza for a group that arrives on
// another node is handed to the owner, bytes unchanged; what the group
// sends reaches occupants on other nodes through their mirrors in the
// router table, as any stanza does. When the nodes change, a node unloads
// the groups it no longer runs (their occupants are told, status 332) and
// the new owner loads them from the store on their first stanza. The
// occupants of a group whose node died are not in it on the new owner:
// their self-ping (XEP-0410) says so, and they join again.

// forwardedKey marks the context of a stanza another node handed over:
// it is handled here, whatever this node thinks of the owner (both views
// agree again within a heartbeat; handing it back could bounce it forever).
type forwardedKey struct{}

// Forwarded handles a stanza for a group that another node of the
// cluster handed to this one (the cluster's OnForward).
func (m *Module) Forwarded(ctx context.Context, st *router.Stanza) {
	m.r.Route(context.WithValue(ctx, forwardedKey{}, true), st)
}

// here reports whether this node runs the group bare.
func (m *Module) here(bare string) bool {
	return m.Cluster == nil || m.Cluster.Owner(bare) == m.Cluster.Node()
}

// place hands a stanza for a group another node runs to that node.
func (m *Module) place(ctx context.Context, ev *router.Event) error {
	st := ev.Stanza
	if st.To.Localpart() == "" || ctx.Value(forwardedKey{}) != nil {
		return nil
	}
	owner := m.Cluster.Owner(st.To.Bare().String())
	if owner == m.Cluster.Node() || !m.Cluster.Forward(owner, st.Bytes()) {
		// Here, or the owner just went: Owner says here once it is gone.
		return nil
	}
	return router.ErrHandled
}

// NodesChanged tells the module that the cluster's nodes changed (the
// cluster's OnChange); it does not block.
func (m *Module) NodesChanged() {
	if m.moved == nil {
		return
	}
	// The next stanza loads the stored groups this node runs now.
	m.nodes.Add(1)
	select {
	case m.moved <- struct{}{}:
	default: // one pending run covers this change too
	}
}

// rebalance runs after each change of the nodes: the groups this node no
// longer runs are saved and unloaded, and occupants whose session is gone
// with a dead node leave the groups that stay here. (The stored groups it
// runs now are loaded on the next stanza: NodesChanged.)
func (m *Module) rebalance(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.moved:
		}
		var away, stay []*room
		m.rooms.Range(func(_, v any) bool {
			rm := v.(*room)
			if m.here(rm.jidStr) {
				stay = append(stay, rm)
			} else {
				away = append(away, rm)
			}
			return true
		})
		for _, rm := range away {
			m.unload(ctx, rm)
		}
		for _, rm := range stay {
			m.dropGhosts(ctx, rm)
		}
	}
}

// unload stores a group that another node runs now and lets it go: its
// occupants here are told that they are out (status 332, a system
// shutdown), so that they join it again, on its new node.
func (m *Module) unload(ctx context.Context, rm *room) {
	rm.save(ctx)
	m.storeTemporary(ctx, rm)
	rm.mu.Lock()
	m.forget(rm)
	rm.destroyed = true
	for _, o := range rm.occupants {
		o.role = NoRole
		rm.sendPresence(ctx, o, "unavailable", presenceCodes{codes: []int{332}}, []int{110}, nil)
		for _, s := range o.sessions {
			if s.local != nil {
				joinedKey.Get(s.local).remove(rm)
			}
		}
	}
	clear(rm.occupants)
	clear(rm.byFull)
	rm.mu.Unlock()
	m.Log.Info("muc: group handed to another node", "room", rm.jidStr, "node", m.Cluster.Owner(rm.jidStr))
}

// dropGhosts takes out of rm the sessions of this domain that no node has
// any more (their node died: no session ends here for them).
func (m *Module) dropGhosts(ctx context.Context, rm *room) {
	var gone []jid.JID
	rm.mu.Lock()
	for _, o := range rm.occupants {
		for _, s := range o.sessions {
			if s.full.Domainpart() == m.r.Domain() && m.r.Session(s.full) == nil {
				gone = append(gone, s.full)
			}
		}
	}
	rm.mu.Unlock()
	for _, full := range gone {
		rm.leave(ctx, full, nil)
	}
}

// Temporary groups move too: the node that lets one go stores it (with
// its affiliations) for the new owner, which loads it as it loads the
// persistent ones and deletes it from the store when it ends: when its
// last occupant leaves, or when none came back within movedGrace.
// Only a group in use moves; one whose node dies ends, as on a single
// node at a restart.

// movedGrace is how long a temporary group that moved here waits for its
// occupants (told 332, they join again at once) before it ends.
const movedGrace = time.Minute

// goneQueue bounds the stored temporary groups waiting to be deleted; past
// it one is left in the store and ends at the next load (movedGrace).
const goneQueue = 1024

// storeTemporary stores rm, a temporary group in use that another node
// runs now, for that node to load.
func (m *Module) storeTemporary(ctx context.Context, rm *room) {
	rm.mu.Lock()
	temp := !rm.cfg.Persistent && !rm.locked && !rm.destroyed && len(rm.occupants) > 0
	rec, affs := rm.record(), rm.allAffiliations()
	rm.mu.Unlock()
	if !temp {
		return
	}
	m.saveRoom(ctx, rec)
	if err := m.saveAffiliations(ctx, affs); err != nil {
		m.Log.Error("muc: storing a moving group's affiliations", "room", rm.jidStr, "err", err)
	}
}

// ended queues the deletion of a stored temporary group that ended (rm.mu
// held: no store call here).
func (m *Module) ended(room string) {
	select {
	case m.gone <- room:
	default:
		m.Log.Warn("muc: too many ended groups to delete; this one waits for the next load", "room", room)
	}
}

// sweepMoved deletes the stored temporary groups that ended, and ends
// those that moved here and that nobody joined within movedGrace.
func (m *Module) sweepMoved(ctx context.Context) {
	t := time.NewTicker(movedGrace / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case room := <-m.gone:
			sctx, cancel := m.r.StoreContext(ctx)
			if err := m.store.DeleteMUCRoom(sctx, room); err != nil && ctx.Err() == nil {
				m.Log.Error("muc: deleting an ended group", "room", room, "err", err)
			}
			cancel()
		case <-t.C:
			m.rooms.Range(func(_, v any) bool {
				rm := v.(*room)
				rm.mu.Lock()
				if rm.stored && time.Since(rm.since) > movedGrace {
					rm.emptied()
				}
				rm.mu.Unlock()
				return true
			})
		}
	}
}
