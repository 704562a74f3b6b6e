// Package storetest is the contract test of package storage: one suite
// that every engine (SQLite, PostgreSQL) must pass, so that the domain
// packages can rely on the same behaviour from both.
package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/offline"
	"dialtone/roster"
	"dialtone/storage"
)

// Run runs the contract suite. open must return a new, empty store for each
// call; the suite closes it.
func Run(t *testing.T, open func(t *testing.T) *storage.DB) {
	tests := []struct {
		name string
		fn   func(t *testing.T, db *storage.DB)
	}{
		{"PingAndClose", testPingAndClose},
		{"Migrations", testMigrations},
		{"AccountNotFound", testAccountNotFound},
		{"SetCredentials", testSetCredentials},
		{"SetCredentialsConcurrent", testSetCredentialsConcurrent},
		{"RecordLogin", testRecordLogin},
		{"ListAccounts", testListAccounts},
		{"DeleteAccount", testDeleteAccount},
		{"Roster", testRoster},
		{"RosterGroupsRoundTrip", testRosterGroups},
		{"RosterVersionsPerOwner", testRosterVersionsPerOwner},
		{"RosterConcurrentVersions", testRosterConcurrent},
		{"Private", testPrivate},
		{"Blocklist", testBlocklist},
		{"Offline", testOffline},
		{"OfflineLimit", testOfflineLimit},
		{"OfflineLimitConcurrent", testOfflineLimitConcurrent},
		{"OfflineIDsNotReused", testOfflineIDsNotReused},
	}
	tests = append(tests, outboxTests...)
	tests = append(tests, noticeTests...)
	tests = append(tests, groupCommitTests...)
	tests = append(tests, rosterCountTests...)
	tests = append(tests, passwordTests...)
	tests = append(tests, pinTests...)
	tests = append(tests, uploadTests...)
	tests = append(tests, loginLinkTests...)
	tests = append(tests, pepTests...)
	tests = append(tests, discoveryTests...)
	tests = append(tests, sha512Tests...)
	tests = append(tests, fastTests...)
	tests = append(tests, groupTests...)
	tests = append(tests, archiveTests...)
	tests = append(tests, pushTests...)
	tests = append(tests, clusterTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := open(t)
			t.Cleanup(func() { db.Close() })
			tc.fn(t, db)
		})
	}
	runLifecycle(t, open)
}

// RunReopen checks what only a store that is opened more than once shows:
// data survives Close and Open, a reopen applies no migration again, and
// several processes opening a new database at once all succeed. newDatabase
// makes a new database and returns a function that opens it.
func RunReopen(t *testing.T, newDatabase func(t *testing.T) (open func() (*storage.DB, error))) {
	t.Run("ReopenKeepsData", func(t *testing.T) {
		t.Parallel()
		testReopen(t, newDatabase(t))
	})
	t.Run("ConcurrentOpen", func(t *testing.T) {
		t.Parallel()
		testConcurrentOpen(t, newDatabase(t))
	})
	t.Run("TwoNodes", func(t *testing.T) {
		t.Parallel()
		runTwoNodes(t, newDatabase(t))
	})
}

// must fails the test on an unexpected error.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantNotFound checks that err is auth.ErrNotFound, wrapped or not.
func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("%s: err = %v, want auth.ErrNotFound", what, err)
	}
}

// creds makes credentials whose every field depends on seed, so that a
// column mixed up with another shows.
func creds(seed byte) auth.Credentials {
	keys := func(base byte, iter int) auth.ScramKeys {
		return auth.ScramKeys{
			Salt:       []byte{seed, base, 1, 0, 255},
			Iterations: iter + int(seed),
			StoredKey:  []byte{seed, base, 2},
			ServerKey:  []byte{seed, base, 3, 0},
		}
	}
	return auth.Credentials{SHA1: keys(0xa1, 4096), SHA256: keys(0xb2, 8192)}
}

func testPingAndClose(t *testing.T, db *storage.DB) {
	must(t, db.Ping(t.Context()))
	if d := db.Driver(); d != "sqlite" && d != "postgres" {
		t.Fatalf("Driver() = %q", d)
	}
	must(t, db.Close())
	if err := db.Ping(t.Context()); err == nil {
		t.Fatal("Ping after Close succeeded")
	}
}

func testMigrations(t *testing.T, db *storage.DB) {
	ms, err := db.Migrations(t.Context())
	must(t, err)
	if len(ms) == 0 {
		t.Fatal("no migration recorded")
	}
	for i, m := range ms {
		if m.Version != i+1 || m.Name == "" || m.AppliedAt.IsZero() || m.AppliedAt.Location() != time.UTC {
			t.Fatalf("migration %d = %+v, want version %d with a name and a UTC time", i, m, i+1)
		}
	}
}

func testAccountNotFound(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	_, err := db.Account(ctx, "+15550000001")
	wantNotFound(t, "Account", err)
	wantNotFound(t, "RecordLogin", db.RecordLogin(ctx, "+15550000001", time.Now()))
	wantNotFound(t, "DeleteAccount", db.DeleteAccount(ctx, "+15550000001"))
	list, err := db.ListAccounts(ctx, "")
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("ListAccounts of an empty store = %v", list)
	}
}

func testSetCredentials(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+821012345678")
	before := time.Now().Add(-time.Millisecond)
	created, err := db.SetCredentials(ctx, n, creds(1))
	must(t, err)
	after := time.Now().Add(time.Millisecond)
	if !created {
		t.Fatal("SetCredentials of a new number: created = false")
	}
	a, err := db.Account(ctx, n)
	must(t, err)
	want := auth.Account{Number: n, State: auth.StateUnclaimed, Created: a.Created, Credentials: creds(1), Generation: 1}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("new account:\n got %+v\nwant %+v", a, want)
	}
	if a.Created.Before(before) || a.Created.After(after) || a.Created.Location() != time.UTC {
		t.Fatalf("Created = %v, want a UTC time between %v and %v", a.Created, before, after)
	}

	created, err = db.SetCredentials(ctx, n, creds(2))
	must(t, err)
	if created {
		t.Fatal("SetCredentials of an existing account: created = true")
	}
	b, err := db.Account(ctx, n)
	must(t, err)
	want.Credentials, want.Generation = creds(2), 2
	if !reflect.DeepEqual(b, want) {
		t.Fatalf("after new credentials:\n got %+v\nwant %+v", b, want)
	}
}

// Concurrent first passwords for one number make one account, and every
// call counts a generation.
func testSetCredentialsConcurrent(t *testing.T, db *storage.DB) {
	const n, calls = auth.Number("+15550000002"), 10
	createdCount := make(chan bool, calls)
	runConcurrently(t, calls, func(i int) error {
		created, err := db.SetCredentials(t.Context(), n, creds(byte(i)))
		createdCount <- created
		return err
	})
	close(createdCount)
	made := 0
	for c := range createdCount {
		if c {
			made++
		}
	}
	a, err := db.Account(t.Context(), n)
	must(t, err)
	if made != 1 || a.Generation != calls {
		t.Fatalf("%d concurrent calls: created %d times, generation %d; want 1 and %d", calls, made, a.Generation, calls)
	}
}

// runConcurrently starts n calls of fn at once and fails on any error.
func runConcurrently(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- fn(i)
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
}

func testRecordLogin(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550000003")
	_, err := db.SetCredentials(ctx, n, creds(3))
	must(t, err)
	// A local time with nanoseconds: the store keeps at least milliseconds
	// and answers in UTC.
	at := time.Date(2031, 5, 6, 7, 8, 9, 123456789, time.FixedZone("KST", 9*3600))
	must(t, db.RecordLogin(ctx, n, at))
	a, err := db.Account(ctx, n)
	must(t, err)
	if a.State != auth.StateActive || a.Generation != 1 {
		t.Fatalf("after login: state %q generation %d, want active, 1", a.State, a.Generation)
	}
	if a.LastLogin.Location() != time.UTC || !a.LastLogin.Truncate(time.Millisecond).Equal(at.Truncate(time.Millisecond)) {
		t.Fatalf("LastLogin = %v, want %v in UTC", a.LastLogin, at.UTC())
	}
	// A new password does not make an active account unclaimed again.
	_, err = db.SetCredentials(ctx, n, creds(4))
	must(t, err)
	a, err = db.Account(ctx, n)
	must(t, err)
	if a.State != auth.StateActive || a.LastLogin.IsZero() || a.Generation != 2 {
		t.Fatalf("after a new password: %+v", a)
	}
}

func testListAccounts(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	for i, n := range []auth.Number{"+825550000003", "+15550000001", "+445550000002"} {
		_, err := db.SetCredentials(ctx, n, creds(byte(i)))
		must(t, err)
	}
	must(t, db.RecordLogin(ctx, "+445550000002", time.Now()))
	for state, want := range map[auth.State][]auth.Number{
		"":                  {"+15550000001", "+445550000002", "+825550000003"},
		auth.StateUnclaimed: {"+15550000001", "+825550000003"},
		auth.StateActive:    {"+445550000002"},
	} {
		list, err := db.ListAccounts(ctx, state)
		must(t, err)
		var got []auth.Number
		for _, a := range list {
			if a.State != state && state != "" {
				t.Errorf("ListAccounts(%q) gave %s in state %q", state, a.Number, a.State)
			}
			if a.Generation != 1 || a.Credentials.SHA256.StoredKey == nil {
				t.Errorf("ListAccounts(%q) gave an incomplete account %+v", state, a)
			}
			got = append(got, a.Number)
		}
		if !slices.Equal(got, want) {
			t.Errorf("ListAccounts(%q) = %v, want %v", state, got, want)
		}
	}
}

// fill stores something for owner in every table, and returns a check
// that it is all still there.
func fill(t *testing.T, db *storage.DB, owner auth.Number) (check func()) {
	ctx, o := t.Context(), string(owner)
	_, err := db.SetCredentials(ctx, owner, creds(5))
	must(t, err)
	_, err = db.PutRosterItem(ctx, o, roster.Item{Contact: "+15559990000@localhost", Subscription: roster.SubBoth, InRoster: true})
	must(t, err)
	must(t, db.PutPrivate(ctx, o, "vcard-temp", []byte("<vCard xmlns='vcard-temp'/>")))
	must(t, db.PutPrivate(ctx, o, "{storage:bookmarks}storage", []byte("<storage/>")))
	must(t, db.Block(ctx, o, []string{"spam@example.com"}))
	_, err = db.PushOffline(ctx, offline.Message{Owner: o, From: "a@b/c", Stanza: []byte("<message/>")}, 0)
	must(t, err)
	return func() {
		t.Helper()
		_, err := db.Account(ctx, owner)
		must(t, err)
		items, v, err := db.Roster(ctx, o)
		must(t, err)
		_, perr := db.Private(ctx, o, "vcard-temp")
		blocked, berr := db.BlockList(ctx, o)
		n, cerr := db.CountOffline(ctx, o)
		if len(items) != 1 || v != 1 || perr != nil || len(blocked) != 1 || berr != nil || n != 1 || cerr != nil {
			t.Fatalf("data of %s changed: roster %v v%d, vcard err %v, blocklist %v %v, offline %d %v",
				owner, items, v, perr, blocked, berr, n, cerr)
		}
	}
}

func testDeleteAccount(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const gone, kept = auth.Number("+15550000010"), auth.Number("+15550000011")
	fill(t, db, gone)
	checkKept := fill(t, db, kept)

	must(t, db.DeleteAccount(ctx, gone))
	_, err := db.Account(ctx, gone)
	wantNotFound(t, "Account after delete", err)
	items, v, err := db.Roster(ctx, string(gone))
	must(t, err)
	if len(items) != 0 || v != 0 {
		t.Errorf("roster after delete: %v version %d, want none, 0", items, v)
	}
	for _, key := range []string{"vcard-temp", "{storage:bookmarks}storage"} {
		_, err = db.Private(ctx, string(gone), key)
		wantNotFound(t, "Private after delete", err)
	}
	blocked, err := db.BlockList(ctx, string(gone))
	must(t, err)
	n, err := db.CountOffline(ctx, string(gone))
	must(t, err)
	msgs, err := db.OfflineMessages(ctx, string(gone), 0)
	must(t, err)
	if len(blocked) != 0 || n != 0 || len(msgs) != 0 {
		t.Errorf("after delete: blocklist %v, %d offline messages (%v)", blocked, n, msgs)
	}
	checkKept()

	wantNotFound(t, "second DeleteAccount", db.DeleteAccount(ctx, gone))
	checkKept()
}

func testRoster(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const owner = "+15550000020"
	items, v, err := db.Roster(ctx, owner)
	must(t, err)
	if len(items) != 0 || v != 0 {
		t.Fatalf("new roster: %v version %d, want none, 0", items, v)
	}
	_, err = db.RosterItem(ctx, owner, "nobody@localhost")
	wantNotFound(t, "RosterItem", err)

	bob := roster.Item{Contact: "bob@example.com", Name: "Bob", Subscription: roster.SubTo, PendingOut: false,
		PendingIn: true, Approved: true, Groups: []string{"Work", "Friends"}, InRoster: true}
	// An item that only remembers an inbound request is stored and listed too.
	alice := roster.Item{Contact: "+15550000021@localhost", Subscription: roster.SubNone, PendingIn: true, InRoster: false}
	wantVersion := int64(0)
	put := func(it roster.Item) {
		t.Helper()
		v, err := db.PutRosterItem(ctx, owner, it)
		must(t, err)
		wantVersion++
		if v != wantVersion {
			t.Fatalf("PutRosterItem(%s) version = %d, want %d", it.Contact, v, wantVersion)
		}
		got, err := db.RosterItem(ctx, owner, it.Contact)
		must(t, err)
		if !reflect.DeepEqual(got, it) {
			t.Fatalf("RosterItem after put:\n got %+v\nwant %+v", got, it)
		}
	}
	put(bob)
	put(alice)
	bob = roster.Item{Contact: bob.Contact, Name: "Robert", Subscription: roster.SubBoth, PendingOut: true, InRoster: true}
	put(bob) // replaces every field

	items, v, err = db.Roster(ctx, owner)
	must(t, err)
	if want := []roster.Item{alice, bob}; !reflect.DeepEqual(items, want) || v != 3 {
		t.Fatalf("Roster = %+v version %d,\nwant %+v version 3", items, v, want)
	}

	for _, tc := range []struct {
		contact string
		want    int64
	}{
		{bob.Contact, 4},
		{bob.Contact, 4}, // absent now: nothing changes, no error
		{"never@example.com", 4},
		{alice.Contact, 5},
	} {
		v, err := db.DeleteRosterItem(ctx, owner, tc.contact)
		must(t, err)
		if v != tc.want {
			t.Fatalf("DeleteRosterItem(%s) version = %d, want %d", tc.contact, v, tc.want)
		}
	}
	items, v, err = db.Roster(ctx, owner)
	must(t, err)
	if len(items) != 0 || v != 5 {
		t.Fatalf("Roster after deletes = %v version %d, want none, 5", items, v)
	}
}

func testRosterGroups(t *testing.T, db *storage.DB) {
	for i, groups := range [][]string{
		nil,
		{},
		{"z", "a", "m"},
		{"Família", "同事", "with, comma", `"quoted"`, "[bracket]", ""},
	} {
		it := roster.Item{Contact: fmt.Sprintf("c%d@example.com", i), Subscription: roster.SubNone, Groups: groups, InRoster: true}
		_, err := db.PutRosterItem(t.Context(), "+15550000022", it)
		must(t, err)
		got, err := db.RosterItem(t.Context(), "+15550000022", it.Contact)
		must(t, err)
		if !reflect.DeepEqual(got.Groups, groups) {
			t.Errorf("groups %#v came back as %#v", groups, got.Groups)
		}
	}
}

func testRosterVersionsPerOwner(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	it := roster.Item{Contact: "x@example.com", Subscription: roster.SubNone, InRoster: true}
	for _, step := range []struct {
		owner string
		want  int64
	}{{"+15550000030", 1}, {"+15550000030", 2}, {"+15550000031", 1}, {"+15550000030", 3}, {"+15550000031", 2}} {
		v, err := db.PutRosterItem(ctx, step.owner, it)
		must(t, err)
		if v != step.want {
			t.Fatalf("version of %s = %d, want %d", step.owner, v, step.want)
		}
	}
}

// Concurrent changes each get their own version: versions are never
// handed out twice, and the last is the number of changes.
func testRosterConcurrent(t *testing.T, db *storage.DB) {
	const owner, changes = "+15550000032", 12
	versions := make(chan int64, changes)
	runConcurrently(t, changes, func(i int) error {
		v, err := db.PutRosterItem(t.Context(), owner, roster.Item{Contact: fmt.Sprintf("c%d@example.com", i), Subscription: roster.SubNone})
		versions <- v
		return err
	})
	close(versions)
	got := slices.Sorted(func(yield func(int64) bool) {
		for v := range versions {
			yield(v)
		}
	})
	for i, v := range got {
		if v != int64(i+1) {
			t.Fatalf("versions of %d concurrent changes = %v, want 1..%d", changes, got, changes)
		}
	}
	items, v, err := db.Roster(t.Context(), owner)
	must(t, err)
	if len(items) != changes || v != changes {
		t.Fatalf("Roster: %d items version %d, want %d, %d", len(items), v, changes, changes)
	}
}

func testPrivate(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const owner, other = "+15550000040", "+15550000041"
	get := func(owner, key string) []byte {
		t.Helper()
		data, err := db.Private(ctx, owner, key)
		must(t, err)
		return data
	}
	_, err := db.Private(ctx, owner, "vcard-temp")
	wantNotFound(t, "Private", err)
	must(t, db.PutPrivate(ctx, owner, "absent", nil)) // deleting nothing is fine

	vcard := []byte("<vCard xmlns='vcard-temp'><FN>Zoë ☎</FN></vCard>\x00\xff")
	must(t, db.PutPrivate(ctx, owner, "vcard-temp", vcard))
	must(t, db.PutPrivate(ctx, owner, "{jabber:x:roster}", []byte("<a/>")))
	must(t, db.PutPrivate(ctx, other, "vcard-temp", []byte("<other/>")))
	if got := get(owner, "vcard-temp"); string(got) != string(vcard) {
		t.Fatalf("Private = %q, want %q", got, vcard)
	}
	must(t, db.PutPrivate(ctx, owner, "vcard-temp", []byte("<vCard/>")))
	if got := get(owner, "vcard-temp"); string(got) != "<vCard/>" {
		t.Fatalf("after replace: %q", got)
	}
	must(t, db.PutPrivate(ctx, owner, "vcard-temp", []byte{}))
	_, err = db.Private(ctx, owner, "vcard-temp")
	wantNotFound(t, "Private after an empty put", err)
	if a, b := get(owner, "{jabber:x:roster}"), get(other, "vcard-temp"); string(a) != "<a/>" || string(b) != "<other/>" {
		t.Fatalf("other keys and owners changed: %q %q", a, b)
	}
}

func testBlocklist(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const owner, other = "+15550000050", "+15550000051"
	check := func(owner string, want ...string) {
		t.Helper()
		got, err := db.BlockList(ctx, owner)
		must(t, err)
		if !slices.Equal(got, want) {
			t.Fatalf("BlockList(%s) = %v, want %v", owner, got, want)
		}
	}
	check(owner)
	must(t, db.Block(ctx, owner, []string{"c@x", "a@x", "b@x"}))
	must(t, db.Block(ctx, owner, []string{"a@x", "d@x", "d@x", "B@x"}))
	must(t, db.Block(ctx, other, []string{"a@x"}))
	check(owner, "B@x", "a@x", "b@x", "c@x", "d@x") // byte order, whatever the locale
	must(t, db.Unblock(ctx, owner, []string{"b@x", "never@x"}))
	check(owner, "B@x", "a@x", "c@x", "d@x")
	must(t, db.Unblock(ctx, owner, nil))
	check(owner)
	check(other, "a@x")
}

func push(t *testing.T, db *storage.DB, m offline.Message, limit int) int64 {
	t.Helper()
	id, err := db.PushOffline(t.Context(), m, limit)
	must(t, err)
	return id
}

func testOffline(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const owner, other = "+15550000060", "+15550000061"
	stamp := time.Date(2030, 1, 2, 3, 4, 5, 678901234, time.FixedZone("X", -5*3600))
	var want []offline.Message
	for i := range 3 {
		m := offline.Message{Owner: owner, From: fmt.Sprintf("+1555000000%d@localhost/r", i),
			Stamp: stamp.Add(time.Duration(i) * time.Second), Stanza: fmt.Appendf(nil, "<message><body>%d</body></message>", i)}
		m.ID = push(t, db, m, 0)
		if len(want) > 0 && m.ID <= want[len(want)-1].ID {
			t.Fatalf("id %d after id %d", m.ID, want[len(want)-1].ID)
		}
		want = append(want, m)
	}
	otherID := push(t, db, offline.Message{Owner: other, From: "x@y", Stanza: []byte("<message/>")}, 0)

	got, err := db.OfflineMessages(ctx, owner, 0)
	must(t, err)
	if len(got) != len(want) {
		t.Fatalf("OfflineMessages = %d messages, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Owner != w.Owner || g.From != w.From || string(g.Stanza) != string(w.Stanza) ||
			g.Stamp.Location() != time.UTC || !g.Stamp.Truncate(time.Millisecond).Equal(w.Stamp.Truncate(time.Millisecond)) {
			t.Fatalf("message %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	first2, err := db.OfflineMessages(ctx, owner, 2)
	must(t, err)
	if len(first2) != 2 || first2[0].ID != want[0].ID || first2[1].ID != want[1].ID {
		t.Fatalf("OfflineMessages(max 2) = %+v, want the oldest two", first2)
	}

	// The ID of another owner's message is not this owner's to delete.
	must(t, db.DeleteOffline(ctx, owner, []int64{want[0].ID, want[2].ID, otherID}))
	must(t, db.DeleteOffline(ctx, owner, nil))
	left, err := db.OfflineMessages(ctx, owner, 0)
	must(t, err)
	if len(left) != 1 || left[0].ID != want[1].ID {
		t.Fatalf("after delete: %+v, want only id %d", left, want[1].ID)
	}
	for o, n := range map[string]int{owner: 1, other: 1, "+15550000069": 0} {
		c, err := db.CountOffline(ctx, o)
		must(t, err)
		if c != n {
			t.Fatalf("CountOffline(%s) = %d, want %d", o, c, n)
		}
	}

	// A message without a stamp is stamped with the time it was stored.
	before := time.Now().Add(-time.Millisecond)
	push(t, db, offline.Message{Owner: other, From: "x@y", Stanza: []byte("<message/>")}, 0)
	msgs, err := db.OfflineMessages(ctx, other, 0)
	must(t, err)
	if s := msgs[len(msgs)-1].Stamp; s.Before(before) || s.After(time.Now().Add(time.Millisecond)) {
		t.Fatalf("Stamp of an unstamped message = %v, want about now", s)
	}
}

func testOfflineLimit(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const owner = "+15550000070"
	m := offline.Message{Owner: owner, From: "a@b", Stanza: []byte("<message/>")}
	push(t, db, m, 2)
	push(t, db, m, 2)
	if _, err := db.PushOffline(ctx, m, 2); !errors.Is(err, offline.ErrFull) {
		t.Fatalf("push beyond the limit: err = %v, want offline.ErrFull", err)
	}
	push(t, db, offline.Message{Owner: "+15550000071", From: "a@b", Stanza: []byte("<m/>")}, 2) // per owner
	push(t, db, m, 3)
	push(t, db, m, 0) // no limit
	push(t, db, m, -1)
	n, err := db.CountOffline(ctx, owner)
	must(t, err)
	if n != 5 {
		t.Fatalf("CountOffline = %d, want 5", n)
	}
}

// Concurrent pushes never exceed the limit, and each stored one has its
// own id.
func testOfflineLimitConcurrent(t *testing.T, db *storage.DB) {
	const owner, pushers, limit = "+15550000072", 20, 10
	var mu sync.Mutex
	ids := map[int64]bool{}
	full := 0
	runConcurrently(t, pushers, func(i int) error {
		id, err := db.PushOffline(t.Context(), offline.Message{Owner: owner, From: fmt.Sprintf("s%d@x", i), Stanza: []byte("<m/>")}, limit)
		mu.Lock()
		defer mu.Unlock()
		if errors.Is(err, offline.ErrFull) {
			full++
			return nil
		}
		ids[id] = true
		return err
	})
	n, err := db.CountOffline(t.Context(), owner)
	must(t, err)
	if len(ids) != limit || full != pushers-limit || n != limit {
		t.Fatalf("%d pushes with limit %d: %d distinct ids, %d ErrFull, %d stored", pushers, limit, len(ids), full, n)
	}
}

// An id is never handed out again, even after the newest message was
// deleted, so "increasing in storing order" holds across deliveries.
func testOfflineIDsNotReused(t *testing.T, db *storage.DB) {
	const owner = "+15550000080"
	m := offline.Message{Owner: owner, From: "a@b", Stanza: []byte("<m/>")}
	push(t, db, m, 0)
	last := push(t, db, m, 0)
	must(t, db.DeleteOffline(t.Context(), owner, []int64{last}))
	if next := push(t, db, m, 0); next <= last {
		t.Fatalf("id after deleting id %d = %d, want more", last, next)
	}
}

func testReopen(t *testing.T, open func() (*storage.DB, error)) {
	ctx := t.Context()
	db, err := open()
	must(t, err)
	check := fill(t, db, "+15550000090")
	check()
	before, err := db.Migrations(ctx)
	must(t, err)
	must(t, db.Close())

	// Let the clock move on, so a migration applied again would show in
	// its recorded time even if it did not fail.
	time.Sleep(5 * time.Millisecond)
	db, err = open()
	must(t, err)
	t.Cleanup(func() { db.Close() })
	check = fill(t, db, "+15550000091")
	check()
	after, err := db.Migrations(ctx)
	must(t, err)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("migrations changed on reopen:\nbefore %+v\n after %+v", before, after)
	}
	a, err := db.Account(ctx, "+15550000090")
	must(t, err)
	if a.Generation != 1 || !reflect.DeepEqual(a.Credentials, creds(5)) {
		t.Fatalf("account after reopen: %+v", a)
	}
	msgs, err := db.OfflineMessages(ctx, "+15550000090", 0)
	must(t, err)
	if len(msgs) != 1 || string(msgs[0].Stanza) != "<message/>" {
		t.Fatalf("offline messages after reopen: %+v", msgs)
	}
}

// Processes that start together on a new database must not trip over each
// other's migrations.
func testConcurrentOpen(t *testing.T, open func() (*storage.DB, error)) {
	const opens = 4
	dbs := make([]*storage.DB, opens)
	runConcurrently(t, opens, func(i int) (err error) {
		dbs[i], err = open()
		return err
	})
	var first []storage.Migration
	for i, db := range dbs {
		ms, err := db.Migrations(t.Context())
		must(t, err)
		if i == 0 {
			first = ms
		} else if !reflect.DeepEqual(ms, first) {
			t.Fatalf("Open %d sees migrations %+v, Open 0 %+v", i, ms, first)
		}
		must(t, db.Close())
	}
	if len(first) == 0 {
		t.Fatal("no migrations recorded")
	}
}
