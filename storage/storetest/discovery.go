package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/storage"
)

// discoveryTests are the contract of contact discovery (SPEC.md "App
// API"): the opt-out flag and the batch lookup of phone books.
var discoveryTests = []struct {
	name string
	fn   func(t *testing.T, db *storage.DB)
}{
	{"Hidden", testHidden},
	{"Discoverable", testDiscoverable},
	{"DiscoverableBatches", testDiscoverableBatches},
	{"WipeShowsAgain", testWipeShowsAgain},
}

// activeAccount makes n an account that has logged in.
func activeAccount(t *testing.T, db *storage.DB, n auth.Number) {
	t.Helper()
	_, err := db.SetCredentials(t.Context(), n, creds(7))
	must(t, err)
	must(t, db.RecordLogin(t.Context(), n, time.Now()))
}

// An account is not hidden until it says so, and can change its mind; a
// number without an account has no flag.
func testHidden(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n, none = auth.Number("+15550002001"), auth.Number("+15550002002")
	activeAccount(t, db, n)
	// Each step sets the flag (twice the same on purpose) and reads it.
	for i, want := range []bool{false, true, true, false} {
		if i > 0 {
			must(t, db.SetHidden(ctx, n, want))
		}
		got, err := db.Hidden(ctx, n)
		must(t, err)
		if got != want {
			t.Fatalf("step %d: Hidden = %v, want %v", i, got, want)
		}
	}
	wantNotFound(t, "SetHidden without an account", db.SetHidden(ctx, none, true))
	_, err := db.Hidden(ctx, none)
	wantNotFound(t, "Hidden without an account", err)
	if _, err := db.Account(ctx, none); err == nil {
		t.Fatal("SetHidden made an account")
	}
}

// Only active accounts that are not hidden are found, sorted; unclaimed
// ones, hidden ones and latent numbers are not.
func testDiscoverable(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const (
		active    = auth.Number("+15550002103")
		active2   = auth.Number("+15550002101")
		unclaimed = auth.Number("+15550002102")
		hidden    = auth.Number("+15550002104")
		latent    = auth.Number("+15550002105")
	)
	activeAccount(t, db, active)
	activeAccount(t, db, active2)
	activeAccount(t, db, hidden)
	must(t, db.SetHidden(ctx, hidden, true))
	_, err := db.SetCredentials(ctx, unclaimed, creds(1))
	must(t, err)

	got, err := db.Discoverable(ctx, []string{string(latent), string(active), string(unclaimed), string(hidden), string(active2)})
	must(t, err)
	if want := []string{string(active2), string(active)}; !slices.Equal(got, want) {
		t.Fatalf("Discoverable = %q, want %q", got, want)
	}
	got, err = db.Discoverable(ctx, nil)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("Discoverable(nil) = %q", got)
	}
	// Unhidden, it is found again; an unclaimed account once it logs in.
	must(t, db.SetHidden(ctx, hidden, false))
	must(t, db.RecordLogin(ctx, unclaimed, time.Now()))
	got, err = db.Discoverable(ctx, []string{string(hidden), string(unclaimed)})
	must(t, err)
	if want := []string{string(unclaimed), string(hidden)}; !slices.Equal(got, want) {
		t.Fatalf("Discoverable after unhide and login = %q, want %q", got, want)
	}
}

// A phone book larger than one statement's batch is looked up whole.
func testDiscoverableBatches(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	var book, want []string
	for i := range 1300 {
		n := fmt.Sprintf("+1555001%04d", i)
		book = append(book, n)
		if i%97 == 0 || i == 1299 {
			activeAccount(t, db, auth.Number(n))
			want = append(want, n)
		}
	}
	slices.Reverse(book) // the order asked in does not matter
	got, err := db.Discoverable(ctx, book)
	must(t, err)
	if !slices.Equal(got, want) {
		t.Fatalf("Discoverable over %d numbers = %q, want %q", len(book), got, want)
	}
}

// A recycled number (WipeAccountData) belongs to someone new: the old
// owner's opt-out goes with the old owner's data.
func testWipeShowsAgain(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550002201")
	activeAccount(t, db, n)
	must(t, db.SetHidden(ctx, n, true))
	must(t, db.WipeAccountData(ctx, n))
	hidden, err := db.Hidden(ctx, n)
	must(t, err)
	if hidden {
		t.Fatal("still hidden after the number was wiped for a new owner")
	}
}
