package storetest

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/storage"
	"dialtone/upload"
)

// uploadTests are the contract of upload.Store (XEP-0363 slots and their
// quota); Run runs them.
var uploadTests = []struct {
	name string
	fn   func(t *testing.T, db *storage.DB)
}{
	{"UploadRoundTrip", testUploadRoundTrip},
	{"UploadQuota", testUploadQuota},
	{"UploadQuotaConcurrent", testUploadQuotaConcurrent},
	{"UploadExpire", testUploadExpire},
	{"UploadsGoWithTheAccount", testUploadsGoWithTheAccount},
}

// slot is a slot of owner made at t: its PUT URL valid for 5 minutes.
func slot(id, owner string, size int64, t time.Time) upload.Record {
	return upload.Record{ID: fmt.Sprintf("%032s", id), Owner: owner, Name: "photo " + id + ".jpg", Size: size,
		ContentType: "image/jpeg", Created: t, PutExpires: t.Add(5 * time.Minute).Truncate(time.Second)}
}

// reserve reserves r with quota at r.Created and fails the test on an error.
func reserve(t *testing.T, db *storage.DB, r upload.Record, quota int64) int64 {
	t.Helper()
	used, err := db.ReserveUpload(t.Context(), r, quota, r.Created)
	must(t, err)
	return used
}

func testUploadRoundTrip(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	at := time.Now().UTC().Truncate(time.Microsecond)
	r := slot("a1", "+15550002001", 12345, at)
	r.ContentType = "" // none requested
	if used := reserve(t, db, r, 0); used != 0 {
		t.Fatalf("used before the first slot = %d", used)
	}
	got, err := db.Upload(ctx, r.ID)
	must(t, err)
	if !reflect.DeepEqual(got, r) {
		t.Fatalf("Upload:\n got %+v\nwant %+v", got, r)
	}
	stored := at.Add(time.Minute)
	must(t, db.CompleteUpload(ctx, r.ID, stored))
	got, err = db.Upload(ctx, r.ID)
	must(t, err)
	if r.Stored = stored; !reflect.DeepEqual(got, r) {
		t.Fatalf("Upload after CompleteUpload:\n got %+v\nwant %+v", got, r)
	}
	if err := db.CompleteUpload(ctx, r.ID, stored); !errors.Is(err, upload.ErrNotFound) {
		t.Fatalf("second CompleteUpload: %v, want upload.ErrNotFound", err)
	}
	if err := db.CompleteUpload(ctx, fmt.Sprintf("%032d", 9), stored); !errors.Is(err, upload.ErrNotFound) {
		t.Fatalf("CompleteUpload of no slot: %v, want upload.ErrNotFound", err)
	}
	if _, err := db.Upload(ctx, fmt.Sprintf("%032d", 9)); !errors.Is(err, upload.ErrNotFound) {
		t.Fatalf("Upload of no slot: %v, want upload.ErrNotFound", err)
	}
	ids, err := db.UploadIDs(ctx, r.Owner)
	must(t, err)
	if !slices.Equal(ids, []string{r.ID}) {
		t.Fatalf("UploadIDs = %v", ids)
	}
}

// The quota counts stored files and open slots, not slots whose PUT URL
// expired; a refusal records nothing; owners count apart.
func testUploadQuota(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const owner, other = "+15550002011", "+15550002012"
	at := time.Now().UTC().Truncate(time.Microsecond)
	stored := slot("q1", owner, 40, at.Add(-time.Hour))
	reserve(t, db, stored, 100)
	must(t, db.CompleteUpload(ctx, stored.ID, at.Add(-time.Hour)))
	reserve(t, db, slot("q2", owner, 50, at.Add(-time.Hour)), 100) // never stored, expired
	open := slot("q3", owner, 30, at)
	if used := reserve(t, db, open, 100); used != 40 {
		t.Fatalf("used before q3 = %d, want 40 (the expired slot does not count)", used)
	}
	refused := slot("q4", owner, 31, at)
	used, err := db.ReserveUpload(ctx, refused, 100, at)
	if !errors.Is(err, upload.ErrOverQuota) || used != 70 {
		t.Fatalf("over quota: used %d, %v; want 70, upload.ErrOverQuota", used, err)
	}
	if _, err := db.Upload(ctx, refused.ID); !errors.Is(err, upload.ErrNotFound) {
		t.Fatalf("a refused slot was recorded: %v", err)
	}
	if used := reserve(t, db, slot("q5", owner, 30, at), 100); used != 70 {
		t.Fatalf("used before q5 = %d, want 70", used) // exactly the quota fits
	}
	// A size that would wrap around when added to what is in use.
	if used, err := db.ReserveUpload(ctx, slot("q8", owner, math.MaxInt64, at), 100, at); !errors.Is(err, upload.ErrOverQuota) || used != 100 {
		t.Fatalf("a size of MaxInt64: used %d, %v; want 100, upload.ErrOverQuota", used, err)
	}
	if used := reserve(t, db, slot("q6", other, 100, at), 100); used != 0 {
		t.Fatalf("another owner: used %d, want 0", used)
	}
	if used := reserve(t, db, slot("q7", owner, 1<<40, at), 0); used != 100 {
		t.Fatalf("without quota: used %d, want 100", used)
	}
}

// Concurrent slot requests of one owner never exceed the quota together.
func testUploadQuotaConcurrent(t *testing.T, db *storage.DB) {
	const owner = "+15550002021"
	at := time.Now().UTC().Truncate(time.Microsecond)
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = db.ReserveUpload(t.Context(), slot(fmt.Sprintf("c%d", i), owner, 30, at), 100, at)
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, upload.ErrOverQuota):
			t.Fatal(err)
		}
	}
	ids, err := db.UploadIDs(t.Context(), owner)
	must(t, err)
	if ok != 3 || len(ids) != 3 {
		t.Fatalf("%d reservations succeeded, %d recorded; want 3 of 30 bytes in a quota of 100", ok, len(ids))
	}
}

func testUploadExpire(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const owner = "+15550002031"
	now := time.Now().UTC().Truncate(time.Microsecond)
	old := slot("e1", owner, 1, now.Add(-48*time.Hour))
	fresh := slot("e2", owner, 1, now.Add(-time.Hour))
	abandoned := slot("e3", owner, 1, now.Add(-48*time.Hour))
	open := slot("e4", owner, 1, now)
	for _, r := range []upload.Record{old, fresh, abandoned, open} {
		reserve(t, db, r, 0)
	}
	must(t, db.CompleteUpload(ctx, old.ID, old.Created))
	must(t, db.CompleteUpload(ctx, fresh.ID, fresh.Created))
	ids := func() []string {
		ids, err := db.UploadIDs(ctx, owner)
		must(t, err)
		slices.Sort(ids)
		return ids
	}

	// Zero storedBefore: stored files are kept (XMPPD_UPLOAD_EXPIRY=0).
	gone, err := db.ExpireUploads(ctx, time.Time{}, now.Add(-24*time.Hour), 10)
	must(t, err)
	if len(gone) != 1 || gone[0].ID != abandoned.ID {
		t.Fatalf("ExpireUploads without expiry removed %+v, want only the abandoned slot", gone)
	}
	// A batch of one removes one at a time.
	gone, err = db.ExpireUploads(ctx, now.Add(-24*time.Hour), now.Add(-24*time.Hour), 1)
	must(t, err)
	old.Stored = old.Created
	if len(gone) != 1 || !reflect.DeepEqual(gone[0], old) {
		t.Fatalf("ExpireUploads removed %+v, want %+v", gone, old)
	}
	gone, err = db.ExpireUploads(ctx, now.Add(-24*time.Hour), now.Add(-24*time.Hour), 1)
	must(t, err)
	if len(gone) != 0 {
		t.Fatalf("nothing more is due, but ExpireUploads removed %+v", gone)
	}
	if got, want := ids(), []string{fresh.ID, open.ID}; !slices.Equal(got, want) {
		t.Fatalf("left %v, want %v", got, want)
	}
}

// Slots are owned rows: deleting, releasing or wiping an account removes
// them, and no one else's.
func testUploadsGoWithTheAccount(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const deleted, wiped, released, kept = auth.Number("+15550002041"), auth.Number("+15550002042"),
		auth.Number("+15550002043"), auth.Number("+15550002044")
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i, n := range []auth.Number{deleted, wiped, released, kept} {
		_, err := db.SetCredentials(ctx, n, creds(byte(i)))
		must(t, err)
		r := slot(fmt.Sprintf("g%d", i), string(n), 10, now)
		reserve(t, db, r, 0)
		must(t, db.CompleteUpload(ctx, r.ID, now))
	}
	must(t, db.RecordLogin(ctx, deleted, now))
	must(t, db.RecordLogin(ctx, wiped, now))
	must(t, db.RecordLogin(ctx, kept, now))
	must(t, db.DeleteAccount(ctx, deleted))
	must(t, db.WipeAccountData(ctx, wiped))
	gone, err := db.ReleaseUnclaimed(ctx, now.Add(time.Hour), 0)
	must(t, err)
	if !slices.Equal(gone, []auth.Number{released}) {
		t.Fatalf("released %v, want %v", gone, released)
	}
	for _, n := range []auth.Number{deleted, wiped, released, kept} {
		ids, err := db.UploadIDs(ctx, string(n))
		must(t, err)
		if want := map[bool]int{true: 1, false: 0}[n == kept]; len(ids) != want {
			t.Errorf("%s: %d slots left, want %d", n, len(ids), want)
		}
	}
}
