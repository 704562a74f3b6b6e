package storetest

import (
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/offline"
	"dialtone/sms"
	"dialtone/storage"
)

// passwordTests are the contract of pending and delivered passwords
// (schema migration 4); Run runs them.
var passwordTests = []struct {
	name string
	fn   func(t *testing.T, db *storage.DB)
}{
	{"PendingPassword", testPendingPassword},
	{"PromotePendingConcurrent", testPromotePendingConcurrent},
	{"DeliveredPassword", testDeliveredPassword},
}

// pendingLike makes the keys of a pending password for an account whose
// credentials are c: c's salts and iteration counts, keys from seed.
func pendingLike(c auth.Credentials, seed byte) auth.Credentials {
	p := creds(seed)
	p.SHA1.Salt, p.SHA1.Iterations = c.SHA1.Salt, c.SHA1.Iterations
	p.SHA256.Salt, p.SHA256.Iterations = c.SHA256.Salt, c.SHA256.Iterations
	return p
}

// A pending password sits beside the current one until it is promoted;
// a newer one replaces it; any direct change of the password drops it.
func testPendingPassword(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550004001")
	at := time.Now().UTC().Truncate(time.Millisecond)
	_, err := db.SetCredentials(ctx, n, creds(1))
	must(t, err)
	a, err := db.Account(ctx, n)
	must(t, err)
	if !reflect.DeepEqual(a.Pending, auth.Credentials{}) {
		t.Fatalf("pending password of a new account: %+v", a.Pending)
	}

	// A stale generation writes nothing, not even the SMS.
	p2, p3 := pendingLike(creds(1), 2), pendingLike(creds(1), 3)
	if err := db.IssuePendingPassword(ctx, n, a.Generation+1, p2, pending("stale", n, at)); !errors.Is(err, sms.ErrStale) {
		t.Fatalf("IssuePendingPassword at a stale generation: %v, want ErrStale", err)
	}
	if err := db.IssuePendingPassword(ctx, "+15550004999", 1, p2, pending("none", "+15550004999", at)); !errors.Is(err, sms.ErrStale) {
		t.Fatalf("IssuePendingPassword without an account: %v, want ErrStale", err)
	}
	if due, err := db.DueSMS(ctx, at.Add(time.Hour), 10); err != nil || len(due) != 0 {
		t.Fatalf("queued by refused pending passwords: %v %v", pendingIDs(due), err)
	}

	must(t, db.IssuePendingPassword(ctx, n, a.Generation, p2, pending("p2", n, at)))
	b, err := db.Account(ctx, n)
	must(t, err)
	if b.Generation != a.Generation || !reflect.DeepEqual(b.Credentials, creds(1)) || !reflect.DeepEqual(b.Pending, p2) {
		t.Fatalf("after a pending password: %+v, want the current credentials and pending %+v", b, p2)
	}
	if r, err := db.NoticeReceiver(ctx, n); err != nil || !r.PasswordDelivered {
		t.Errorf("a texted pending password is not marked delivered: %+v %v", r, err)
	}
	if due, err := db.DueSMS(ctx, at.Add(time.Hour), 10); err != nil || len(due) != 1 || due[0].ID != "p2" {
		t.Fatalf("queued %v %v, want p2", pendingIDs(due), err)
	}
	if list, err := db.ListAccounts(ctx, ""); err != nil || len(list) != 1 || !reflect.DeepEqual(list[0].Pending, p2) {
		t.Fatalf("ListAccounts %+v %v", list, err)
	}

	// A newer request replaces the pending one; the older no longer promotes.
	must(t, db.IssuePendingPassword(ctx, n, a.Generation, p3, pending("p3", n, at)))
	if _, _, err := db.PromotePending(ctx, n, p2); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("promoting a replaced pending password: %v, want ErrNotFound", err)
	}
	gen, promoted, err := db.PromotePending(ctx, n, p3)
	must(t, err)
	c, err := db.Account(ctx, n)
	must(t, err)
	want := creds(1)
	want.SHA1.StoredKey, want.SHA1.ServerKey = p3.SHA1.StoredKey, p3.SHA1.ServerKey
	want.SHA256.StoredKey, want.SHA256.ServerKey = p3.SHA256.StoredKey, p3.SHA256.ServerKey
	if !promoted || gen != a.Generation+1 || c.Generation != gen || !reflect.DeepEqual(c.Credentials, want) ||
		!reflect.DeepEqual(c.Pending, auth.Credentials{}) {
		t.Fatalf("after promotion (%v, %d): %+v, want current %+v and none pending", promoted, gen, c, want)
	}
	// Promoted already: the generation as it is.
	if gen2, promoted, err := db.PromotePending(ctx, n, p3); err != nil || promoted || gen2 != gen {
		t.Fatalf("promoting again: %d %v %v, want %d, false", gen2, promoted, err, gen)
	}
	if _, _, err := db.PromotePending(ctx, "+15550004999", p3); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("promoting without an account: %v", err)
	}

	// A password set directly (reset, in-band change) drops the pending one.
	p4 := pendingLike(c.Credentials, 4)
	must(t, db.IssuePendingPassword(ctx, n, c.Generation, p4, pending("p4", n, at)))
	_, err = db.SetCredentials(ctx, n, creds(5))
	must(t, err)
	d, err := db.Account(ctx, n)
	must(t, err)
	if !reflect.DeepEqual(d.Pending, auth.Credentials{}) || !reflect.DeepEqual(d.Credentials, creds(5)) {
		t.Fatalf("after SetCredentials: %+v, want creds(5) and none pending", d)
	}
	if _, _, err := db.PromotePending(ctx, n, p4); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("promoting a dropped pending password: %v", err)
	}
	p6 := pendingLike(d.Credentials, 6)
	must(t, db.IssuePendingPassword(ctx, n, d.Generation, p6, pending("p6", n, at)))
	_, err = db.IssuePassword(ctx, n, creds(7), pending("p7", n, at))
	must(t, err)
	if e, err := db.Account(ctx, n); err != nil || !reflect.DeepEqual(e.Pending, auth.Credentials{}) {
		t.Fatalf("after IssuePassword: %+v %v, want none pending", e.Pending, err)
	}
}

// Two logins with the new password at once: one promotes it, the other
// finds it current; both get the same generation.
func testPromotePendingConcurrent(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550004002")
	_, err := db.SetCredentials(ctx, n, creds(1))
	must(t, err)
	p := pendingLike(creds(1), 2)
	must(t, db.IssuePendingPassword(ctx, n, 1, p, pending("c1", n, time.Now())))
	type result struct {
		gen      int64
		promoted bool
		err      error
	}
	results := make([]result, 8)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			var r result
			r.gen, r.promoted, r.err = db.PromotePending(ctx, n, p)
			results[i] = r
		})
	}
	wg.Wait()
	promotions := 0
	for _, r := range results {
		must(t, r.err)
		if r.gen != 2 {
			t.Errorf("generation %d, want 2", r.gen)
		}
		if r.promoted {
			promotions++
		}
	}
	if promotions != 1 {
		t.Fatalf("%d promotions, want 1", promotions)
	}
}

// A password is marked delivered when it is texted or handed out, never
// when it is only set; the mark stays.
func testDeliveredPassword(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	delivered := func(n auth.Number) bool {
		t.Helper()
		r, err := db.NoticeReceiver(ctx, n)
		must(t, err)
		return r.PasswordDelivered
	}
	const set, printed, texted, noticed = auth.Number("+15550004011"), auth.Number("+15550004012"),
		auth.Number("+15550004013"), auth.Number("+15550004014")
	_, err := db.SetCredentials(ctx, set, creds(1))
	must(t, err)
	created, err := db.SetDeliveredCredentials(ctx, printed, creds(1))
	must(t, err)
	if !created {
		t.Error("SetDeliveredCredentials of a new number: created false")
	}
	_, err = db.IssuePassword(ctx, texted, creds(1), pending("d1", texted, time.Now()))
	must(t, err)
	if delivered(set) || !delivered(printed) || !delivered(texted) {
		t.Fatalf("delivered: set %v, printed %v, texted %v", delivered(set), delivered(printed), delivered(texted))
	}
	// SetCredentials keeps the mark, SetDeliveredCredentials sets it.
	_, err = db.SetCredentials(ctx, printed, creds(2))
	must(t, err)
	_, err = db.SetDeliveredCredentials(ctx, set, creds(2))
	must(t, err)
	if !delivered(printed) || !delivered(set) {
		t.Fatalf("after the second round: printed %v, set %v", delivered(printed), delivered(set))
	}
	// A notice: the first marks itself, and the password when it carries one.
	c := creds(3)
	_, err = db.StoreOffline(ctx, offlineMsg(string(noticed), "x", noticeT0), offline.Limits{},
		sms.NoticePlan{To: noticed, At: noticeT0, Create: true, Credentials: &c})
	must(t, err)
	if r, err := db.NoticeReceiver(ctx, noticed); err != nil || r != (sms.Receiver{Exists: true}) {
		t.Fatalf("made by a message without notice: %+v %v", r, err)
	}
	_, err = db.StoreOffline(ctx, offlineMsg(string(noticed), "x", noticeT0), offline.Limits{},
		sms.NoticePlan{To: noticed, At: noticeT0, FirstNotice: true})
	must(t, err)
	if r, err := db.NoticeReceiver(ctx, noticed); err != nil || r != (sms.Receiver{Exists: true, FirstNoticed: true}) {
		t.Fatalf("after a first notice without password: %+v %v", r, err)
	}
	_, err = db.StoreOffline(ctx, offlineMsg(string(noticed), "x", noticeT0), offline.Limits{},
		sms.NoticePlan{To: noticed, At: noticeT0, Credentials: &c, PasswordDelivered: true})
	must(t, err)
	if r, err := db.NoticeReceiver(ctx, noticed); err != nil || r != (sms.Receiver{Exists: true, FirstNoticed: true, PasswordDelivered: true}) {
		t.Fatalf("after a notice with a password: %+v %v", r, err)
	}
}
