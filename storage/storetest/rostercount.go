package storetest

import (
	"fmt"
	"testing"

	"dialtone/roster"
	"dialtone/storage"
)

// rosterCountTests are the contract of the roster size (roster.Store
// RosterCount, for XMPPD_ROSTER_MAX) and of the write that stores nothing
// for a latent number; Run runs them.
var rosterCountTests = []struct {
	name string
	fn   func(t *testing.T, db *storage.DB)
}{
	{"RosterCount", testRosterCount},
	{"RosterDeleteAbsentStoresNothing", testRosterDeleteAbsent},
}

// Every stored item counts, hidden ones (a pending inbound request) too;
// owners are counted apart.
func testRosterCount(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const owner, other = "+15550000040", "+15550000041"
	count := func(owner string, want int) {
		t.Helper()
		n, err := db.RosterCount(ctx, owner)
		must(t, err)
		if n != want {
			t.Fatalf("RosterCount(%s) = %d, want %d", owner, n, want)
		}
	}
	count(owner, 0)
	for i := range 3 {
		_, err := db.PutRosterItem(ctx, owner, roster.Item{Contact: fmt.Sprintf("c%d@example.com", i), Subscription: roster.SubNone, InRoster: true})
		must(t, err)
	}
	_, err := db.PutRosterItem(ctx, owner, roster.Item{Contact: "asker@example.com", Subscription: roster.SubNone, PendingIn: true})
	must(t, err)
	_, err = db.PutRosterItem(ctx, other, roster.Item{Contact: "c0@example.com", Subscription: roster.SubNone, InRoster: true})
	must(t, err)
	count(owner, 4)
	count(other, 1)
	// Replacing an item does not add one.
	_, err = db.PutRosterItem(ctx, owner, roster.Item{Contact: "c0@example.com", Name: "Zero", Subscription: roster.SubTo, InRoster: true})
	must(t, err)
	count(owner, 4)
	_, err = db.DeleteRosterItem(ctx, owner, "c1@example.com")
	must(t, err)
	count(owner, 3)
}

// Deleting an item that an owner never had is a write that leaves no trace:
// the roster of a latent number stays version 0 and empty.
func testRosterDeleteAbsent(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const latent = "+15550000042"
	v, err := db.DeleteRosterItem(ctx, latent, "asker@example.com")
	must(t, err)
	if v != 0 {
		t.Errorf("DeleteRosterItem of an absent item: version %d, want 0", v)
	}
	items, v, err := db.Roster(ctx, latent)
	must(t, err)
	if len(items) != 0 || v != 0 {
		t.Errorf("after: %v version %d, want nothing, version 0", items, v)
	}
}
