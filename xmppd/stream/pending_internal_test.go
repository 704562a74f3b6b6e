package stream

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestPendingKey(t *testing.T) {
	for _, tc := range []struct{ ip, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"}, // IPv4-mapped: the IPv4 address
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
		{"not an address", "not an address"},
	} {
		if got := pendingKey(tc.ip); got != tc.want {
			t.Errorf("pendingKey(%q) = %q, want %q", tc.ip, got, tc.want)
		}
	}
}

func TestPendingTable(t *testing.T) {
	evicted := map[string]int{}
	tab := NewPendingTable(5, 2, prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"}))
	admit := func(ip string) *PendingSlot {
		return tab.Admit(ip, func() { evicted[ip]++ })
	}
	// Two addresses of one /64 share its limit; the next /64 has its own.
	a1, a2 := admit("2001:db8::1"), admit("2001:db8::ffff:2")
	if a1 == nil || a2 == nil {
		t.Fatal("two connections from one /64 refused")
	}
	if admit("2001:db8::3") != nil {
		t.Fatal("a third connection from the same /64 admitted")
	}
	if admit("2001:db8:0:1::1") == nil {
		t.Fatal("a connection from the next /64 refused")
	}
	if admit("192.0.2.1") == nil || admit("192.0.2.2") == nil {
		t.Fatal("refused below the cap")
	}
	if tab.total != 5 {
		t.Fatalf("total %d, want 5", tab.total)
	}
	// Full: a newcomer evicts the oldest of the largest group (the /64
	// holding two).
	if admit("198.51.100.1") == nil {
		t.Fatal("a newcomer refused when the table is full")
	}
	if evicted["2001:db8::1"] != 1 || len(evicted) != 1 {
		t.Fatalf("evicted %v, want the /64's oldest", evicted)
	}
	// The evicted connection ends and releases: nothing changes.
	a1.Release()
	if tab.total != 5 {
		t.Fatalf("total %d after an eviction and the evicted slot's release, want 5", tab.total)
	}
	// Every group holds one now: one of them cannot take another's slot
	// to hold two, but a new group takes the oldest slot.
	if admit("192.0.2.2") != nil {
		t.Fatal("a group of one took a slot from another group of one")
	}
	b := admit("203.0.113.9")
	if b == nil {
		t.Fatal("a newcomer refused when all groups hold one")
	}
	if evicted["2001:db8::ffff:2"] != 1 || len(evicted) != 2 {
		t.Fatalf("evicted %v, want the oldest slot next", evicted)
	}
	a2.Release()
	b.Release()
	b.Release() // twice: harmless
	if tab.total != 4 {
		t.Fatalf("total %d after a release, want 4", tab.total)
	}
}
