package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/roster"
	"dialtone/sms"
	"dialtone/storage"
)

// runLifecycle runs the contract of the account life cycle: passwords
// issued with their SMS, touched times, the release of unclaimed accounts
// and the wiping of a recycled account. Each test gets its own store.
func runLifecycle(t *testing.T, open func(t *testing.T) *storage.DB) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, db *storage.DB)
	}{
		{"IssuePassword", testIssuePassword},
		{"IssuePasswordAtomic", testIssuePasswordAtomic},
		{"TouchAccount", testTouchAccount},
		{"ReleaseUnclaimed", testReleaseUnclaimed},
		{"ReleaseUnclaimedAtScale", testReleaseAtScale},
		{"WipeAccountData", testWipeAccountData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := open(t)
			t.Cleanup(func() { db.Close() })
			tc.fn(t, db)
		})
	}
}

// pending is a password SMS to n queued at t.
func pending(id string, n auth.Number, t time.Time) sms.Pending {
	return sms.Pending{ID: id, To: string(n), Purpose: sms.PurposePassword, Body: []byte("sealed " + id),
		Sealed: true, Created: t, NextAttempt: t}
}

// released calls ReleaseUnclaimed and returns the numbers it released, sorted.
func released(t *testing.T, db *storage.DB, before time.Time, batch int) []auth.Number {
	t.Helper()
	got, err := db.ReleaseUnclaimed(t.Context(), before, batch)
	must(t, err)
	slices.Sort(got)
	return got
}

func testIssuePassword(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550001001")
	at := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	created, err := db.IssuePassword(ctx, n, creds(1), pending("p1", n, at))
	must(t, err)
	if !created {
		t.Fatal("IssuePassword of a new number: created = false")
	}
	a, err := db.Account(ctx, n)
	must(t, err)
	if a.State != auth.StateUnclaimed || a.Generation != 1 || !reflect.DeepEqual(a.Credentials, creds(1)) {
		t.Fatalf("account after IssuePassword: %+v", a)
	}
	created, err = db.IssuePassword(ctx, n, creds(2), pending("p2", n, at.Add(time.Second)))
	must(t, err)
	a, err = db.Account(ctx, n)
	must(t, err)
	if created || a.Generation != 2 || !reflect.DeepEqual(a.Credentials, creds(2)) {
		t.Fatalf("second IssuePassword: created %v, account %+v", created, a)
	}

	due, err := db.DueSMS(ctx, time.Now(), 10)
	must(t, err)
	if len(due) != 2 || due[0].ID != "p1" || due[1].ID != "p2" || due[0].To != string(n) ||
		!due[0].Sealed || string(due[0].Body) != "sealed p1" || due[0].Purpose != sms.PurposePassword {
		t.Fatalf("outbox after two passwords: %+v", due)
	}
	times, err := db.QueuedTimes(ctx, string(n), sms.PurposePassword, at.Add(-time.Hour))
	must(t, err)
	if len(times) != 2 || !times[0].Equal(at) || !times[1].Equal(at.Add(time.Second)) {
		t.Fatalf("QueuedTimes = %v, want %v and a second later", times, at)
	}

	// An active account stays active; the password still changes.
	must(t, db.RecordLogin(ctx, n, time.Now()))
	_, err = db.IssuePassword(ctx, n, creds(3), pending("p3", n, at.Add(2*time.Second)))
	must(t, err)
	a, err = db.Account(ctx, n)
	must(t, err)
	if a.State != auth.StateActive || a.Generation != 3 || !reflect.DeepEqual(a.Credentials, creds(3)) {
		t.Fatalf("IssuePassword for an active account: %+v", a)
	}
}

// A password whose SMS cannot be queued is not stored either.
func testIssuePasswordAtomic(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n, other = auth.Number("+15550001002"), auth.Number("+15550001003")
	now := time.Now()
	_, err := db.IssuePassword(ctx, n, creds(1), pending("dup", n, now))
	must(t, err)
	// The id is taken: the enqueue fails, and with it the whole issue.
	if _, err := db.IssuePassword(ctx, n, creds(2), pending("dup", n, now)); err == nil {
		t.Fatal("IssuePassword with a used SMS id succeeded")
	}
	if _, err := db.IssuePassword(ctx, other, creds(2), pending("dup", other, now)); err == nil {
		t.Fatal("IssuePassword with a used SMS id succeeded for a new number")
	}
	a, err := db.Account(ctx, n)
	must(t, err)
	if a.Generation != 1 || !reflect.DeepEqual(a.Credentials, creds(1)) {
		t.Fatalf("failed IssuePassword changed the account: %+v", a)
	}
	_, err = db.Account(ctx, other)
	wantNotFound(t, "account of a failed first IssuePassword", err)
	times, err := db.QueuedTimes(ctx, string(n), sms.PurposePassword, now.Add(-time.Hour))
	must(t, err)
	if len(times) != 1 {
		t.Fatalf("QueuedTimes after a failed issue = %v, want one", times)
	}
}

func testTouchAccount(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n, active = auth.Number("+15550001010"), auth.Number("+15550001011")
	wantNotFound(t, "TouchAccount without an account", db.TouchAccount(ctx, n, time.Now()))
	_, err := db.SetCredentials(ctx, n, creds(1))
	must(t, err)
	_, err = db.SetCredentials(ctx, active, creds(2))
	must(t, err)
	must(t, db.RecordLogin(ctx, active, time.Now()))

	// SetCredentials touched n now: not released as of an hour ago.
	now := time.Now()
	if got := released(t, db, now.Add(-time.Hour), 0); len(got) != 0 {
		t.Fatalf("released %v, touched just now", got)
	}
	// A message in a day keeps it beyond now + 1h.
	must(t, db.TouchAccount(ctx, n, now.Add(24*time.Hour)))
	// An older touch does not move it back.
	must(t, db.TouchAccount(ctx, n, now.Add(-48*time.Hour)))
	must(t, db.TouchAccount(ctx, active, now.Add(-48*time.Hour)))
	if got := released(t, db, now.Add(time.Hour), 0); len(got) != 0 {
		t.Fatalf("released %v, touched a day ahead", got)
	}
	if got := released(t, db, now.Add(25*time.Hour), 0); !slices.Equal(got, []auth.Number{n}) {
		t.Fatalf("released %v, want only %s (active accounts are never released)", got, n)
	}
	wantNotFound(t, "TouchAccount after release", db.TouchAccount(ctx, n, now))
}

func testReleaseUnclaimed(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const old1, old2, fresh, active = auth.Number("+15550001020"), auth.Number("+15550001021"),
		auth.Number("+15550001022"), auth.Number("+15550001023")
	now := time.Now()
	for _, n := range []auth.Number{old1, old2} {
		fill(t, db, n) // unclaimed, with something in every table
	}
	fill(t, db, active)
	must(t, db.RecordLogin(ctx, active, now))
	// Contacts of the released accounts keep their own rosters.
	_, err := db.PutRosterItem(ctx, string(active), roster.Item{Contact: string(old1) + "@localhost", Subscription: roster.SubNone, InRoster: true})
	must(t, err)
	checkFresh := fill(t, db, fresh)
	must(t, db.TouchAccount(ctx, fresh, now.Add(2*time.Hour)))

	// Batches of one: every batch is a transaction of its own, and all go.
	got := released(t, db, now.Add(time.Hour), 1)
	if want := []auth.Number{old1, old2}; !slices.Equal(got, want) {
		t.Fatalf("ReleaseUnclaimed = %v, want %v", got, want)
	}
	for _, n := range []auth.Number{old1, old2} {
		_, err := db.Account(ctx, n)
		wantNotFound(t, "released account", err)
		items, v, err := db.Roster(ctx, string(n))
		must(t, err)
		_, perr := db.Private(ctx, string(n), "vcard-temp")
		blocked, berr := db.BlockList(ctx, string(n))
		msgs, oerr := db.CountOffline(ctx, string(n))
		if len(items) != 0 || v != 0 || !errors.Is(perr, auth.ErrNotFound) || len(blocked) != 0 || berr != nil || msgs != 0 || oerr != nil {
			t.Fatalf("data of released %s left: roster %v v%d, vcard %v, blocklist %v %v, offline %d %v",
				n, items, v, perr, blocked, berr, msgs, oerr)
		}
	}
	checkFresh()
	a, err := db.Account(ctx, active)
	must(t, err)
	items, _, err := db.Roster(ctx, string(active))
	must(t, err)
	if a.State != auth.StateActive || len(items) != 2 {
		t.Fatalf("active account after release: %+v, roster %v", a, items)
	}
	if got := released(t, db, now.Add(time.Hour), 0); len(got) != 0 {
		t.Fatalf("second release = %v, want none", got)
	}
}

// Releasing many accounts works in batches and finds them all.
func testReleaseAtScale(t *testing.T, db *storage.DB) {
	if testing.Short() {
		t.Skip("makes 5000 accounts")
	}
	ctx := t.Context()
	const unclaimed, batch = 5000, 1000
	var want []auth.Number
	for i := range unclaimed {
		n := auth.Number(fmt.Sprintf("+1555%07d", i))
		want = append(want, n)
		_, err := db.SetCredentials(ctx, n, creds(1))
		must(t, err)
	}
	keep := []auth.Number{"+16660000001", "+16660000002"}
	for _, n := range keep {
		_, err := db.SetCredentials(ctx, n, creds(2))
		must(t, err)
	}
	must(t, db.RecordLogin(ctx, keep[0], time.Now())) // active
	must(t, db.TouchAccount(ctx, keep[1], time.Now().Add(2*time.Hour)))

	got := released(t, db, time.Now().Add(time.Hour), batch)
	if !slices.Equal(got, want) {
		t.Fatalf("released %d accounts, want all %d unclaimed ones", len(got), len(want))
	}
	list, err := db.ListAccounts(ctx, "")
	must(t, err)
	if len(list) != 2 || list[0].Number != keep[0] || list[1].Number != keep[1] || list[1].Generation != 1 {
		t.Fatalf("accounts left: %+v, want %v untouched", list, keep)
	}
}

func testWipeAccountData(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n, other = auth.Number("+15550001030"), auth.Number("+15550001031")
	fill(t, db, n)
	checkOther := fill(t, db, other)
	must(t, db.RecordLogin(ctx, n, time.Now()))
	before, err := db.Account(ctx, n)
	must(t, err)

	must(t, db.WipeAccountData(ctx, n))
	a, err := db.Account(ctx, n)
	must(t, err)
	if !reflect.DeepEqual(a, before) {
		t.Fatalf("account changed by a wipe:\n got %+v\nwant %+v", a, before)
	}
	items, v, err := db.Roster(ctx, string(n))
	must(t, err)
	blocked, err := db.BlockList(ctx, string(n))
	must(t, err)
	msgs, err := db.CountOffline(ctx, string(n))
	must(t, err)
	if len(items) != 0 || v != 0 || len(blocked) != 0 || msgs != 0 {
		t.Fatalf("after wipe: roster %v v%d, blocklist %v, %d offline", items, v, blocked, msgs)
	}
	for _, key := range []string{"vcard-temp", "{storage:bookmarks}storage"} {
		_, err := db.Private(ctx, string(n), key)
		wantNotFound(t, "Private after wipe", err)
	}
	checkOther()
	must(t, db.WipeAccountData(ctx, "+15550001039")) // nothing stored: nothing to do
}
