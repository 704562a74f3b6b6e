package stream

import (
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// pendingKey is the group an unauthenticated connection is counted in:
// its IPv4 address, or its IPv6 /64 (SPEC "Limits on what clients send"),
// since one subscriber usually holds a whole /64 and could otherwise
// take a new address for every connection.
func pendingKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.WithZone("").Unmap()
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a.String()
	}
	return p.String()
}

// PendingTable counts the connections that have not authenticated yet,
// per address group (pendingKey) and in all. A group holds at most
// perGroup of them. The total is capped too, to keep file descriptors for
// everyone, but a full table does not turn newcomers away: one from a
// group smaller than the largest takes the place of the largest group's
// oldest connection. So addresses that hold many slots each (20 loopback
// addresses with 50 silent connections apiece) cannot keep out a login
// from elsewhere; they only lose their own slots, and to take a slot from
// a group of one an attacker needs as many groups as the cap.
type PendingTable struct {
	mu       sync.Mutex
	max      int
	perGroup int
	total    int
	seq      uint64
	groups   map[string][]*PendingSlot // oldest first
	gauge    prometheus.Gauge
}

// PendingSlot is one connection's place in the table.
type PendingSlot struct {
	t     *PendingTable
	key   string
	seq   uint64
	evict func() // ends the connection; must not block
	gone  bool   // released or evicted (under t.mu)
}

func NewPendingTable(max, perGroup int, gauge prometheus.Gauge) *PendingTable {
	return &PendingTable{max: max, perGroup: perGroup, groups: map[string][]*PendingSlot{}, gauge: gauge}
}

// Admit counts a new connection from ip, evicting another when the table
// is full (see PendingTable); nil means refused. evict is how the
// connection is ended should it be evicted in turn.
func (t *PendingTable) Admit(ip string, evict func()) *PendingSlot {
	key := pendingKey(ip)
	t.mu.Lock()
	have := len(t.groups[key])
	if have >= t.perGroup {
		t.mu.Unlock()
		return nil
	}
	var victim *PendingSlot
	if t.total >= t.max {
		if victim = t.victimLocked(have); victim == nil {
			t.mu.Unlock()
			return nil
		}
		t.removeLocked(victim)
	}
	t.seq++
	sl := &PendingSlot{t: t, key: key, seq: t.seq, evict: evict}
	t.groups[key] = append(t.groups[key], sl)
	t.total++
	t.gauge.Inc()
	t.mu.Unlock()
	if victim != nil {
		victim.evict()
	}
	return sl
}

// victimLocked is the oldest slot of the largest group (the oldest such
// group on a tie) if that group holds more than have; nil otherwise.
func (t *PendingTable) victimLocked(have int) *PendingSlot {
	var largest []*PendingSlot
	for _, g := range t.groups {
		if len(g) > len(largest) || len(g) == len(largest) && len(g) > 0 && g[0].seq < largest[0].seq {
			largest = g
		}
	}
	if len(largest) <= have {
		return nil
	}
	return largest[0]
}

func (t *PendingTable) removeLocked(sl *PendingSlot) {
	sl.gone = true
	g := t.groups[sl.key]
	for i, o := range g {
		if o == sl {
			g = append(g[:i], g[i+1:]...)
			break
		}
	}
	if len(g) == 0 {
		delete(t.groups, sl.key)
	} else {
		t.groups[sl.key] = g
	}
	t.total--
	t.gauge.Dec()
}

// Release takes the connection out of the count (it authenticated, or
// ended); later calls, and calls after an eviction, do nothing. A nil
// slot is allowed.
func (sl *PendingSlot) Release() {
	if sl == nil {
		return
	}
	sl.t.mu.Lock()
	if !sl.gone {
		sl.t.removeLocked(sl)
	}
	sl.t.mu.Unlock()
}
