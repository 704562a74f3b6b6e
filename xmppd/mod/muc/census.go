package muc

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
)

// The groups of the other nodes of a cluster: the service's list of
// public groups (disco#items on groups.DOMAIN) and the groups-per-account
// limit count every node's groups, not only those of the node that
// answers. Each node is asked about the groups it runs (the only ones it
// knows, temporary ones included) and answers from memory, after loading
// the stored groups it runs now.

// Census asks every other node of the cluster the question q (Module.Answer
// there) and returns their answers; nil on a single node.
type Census func(ctx context.Context, q []byte) [][]byte

// censusQuestion is what one node asks the others.
type censusQuestion struct {
	// Owner, when set, asks how many groups that bare JID owns; else the
	// public groups are asked for.
	Owner string `json:",omitempty"`
}

// censusAnswer is one node's answer.
type censusAnswer struct {
	Owned  int          `json:",omitempty"`
	Public []publicItem `json:",omitempty"`
}

// publicItem is a public group as the service lists it.
type publicItem struct{ JID, Name string }

// maxListed bounds the groups one disco#items answer lists.
const maxListed = 1000

// Answer answers another node's census question (the cluster's OnAsk).
func (m *Module) Answer(ctx context.Context, q []byte) []byte {
	var cq censusQuestion
	var a censusAnswer
	if json.Unmarshal(q, &cq) == nil && m.load(ctx) == nil {
		if cq.Owner != "" {
			a.Owned = m.ownedHere(cq.Owner, m.RoomsPerAccount)
		} else {
			a.Public = m.publicHere()
		}
	}
	b, _ := json.Marshal(a) // strings and numbers only
	return b
}

// ask asks the other nodes, if any, and returns their answers.
func (m *Module) ask(ctx context.Context, q censusQuestion) []censusAnswer {
	if m.Others == nil {
		return nil
	}
	b, _ := json.Marshal(q)
	var out []censusAnswer
	for _, raw := range m.Others(ctx, b) {
		var a censusAnswer
		if json.Unmarshal(raw, &a) == nil {
			out = append(out, a)
		}
	}
	return out
}

// ownedHere counts (up to limit) the groups this node runs that owner
// owns.
func (m *Module) ownedHere(owner string, limit int) int {
	n := 0
	m.rooms.Range(func(_, v any) bool {
		if rm := v.(*room); m.here(rm.jidStr) && rm.ownedBy(owner) {
			n++
		}
		return n < limit
	})
	return n
}

// ownedElsewhere counts the groups owner owns on the other nodes.
func (m *Module) ownedElsewhere(ctx context.Context, owner string) int {
	n := 0
	for _, a := range m.ask(ctx, censusQuestion{Owner: owner}) {
		n += a.Owned
	}
	return n
}

// publicHere lists the public groups this node runs.
func (m *Module) publicHere() []publicItem {
	var items []publicItem
	m.rooms.Range(func(_, v any) bool {
		rm := v.(*room)
		rm.mu.Lock()
		if rm.cfg.Public && !rm.locked && !rm.destroyed && m.here(rm.jidStr) {
			items = append(items, publicItem{rm.jidStr, rm.cfg.Name})
		}
		rm.mu.Unlock()
		return len(items) < maxListed
	})
	return items
}

// publicGroups lists the public groups of every node, sorted by JID, at
// most maxListed.
func (m *Module) publicGroups(ctx context.Context) []publicItem {
	items := m.publicHere()
	for _, a := range m.ask(ctx, censusQuestion{}) {
		items = append(items, a.Public...)
	}
	slices.SortFunc(items, func(a, b publicItem) int { return strings.Compare(a.JID, b.JID) })
	items = slices.CompactFunc(items, func(a, b publicItem) bool { return a.JID == b.JID })
	return items[:min(len(items), maxListed)]
}
