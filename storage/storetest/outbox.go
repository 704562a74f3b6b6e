package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"dialtone/sms"
	"dialtone/storage"
)

// outboxTests are the contract of the SMS outbox (sms.Outbox and the
// worker's PruneSMSLog and CountSMS); Run runs them.
var outboxTests = []struct {
	name string
	fn   func(t *testing.T, db *storage.DB)
}{
	{"OutboxRoundTrip", testOutboxRoundTrip},
	{"OutboxDueOrderAndLimit", testOutboxDue},
	{"OutboxRetryAndDelete", testOutboxRetryDelete},
	{"OutboxDuplicateID", testOutboxDuplicate},
	{"OutboxConcurrentEnqueue", testOutboxConcurrent},
	{"SMSLog", testSMSLog},
}

// smsT0 is a fixed time with microseconds, in a zone that is not UTC: the
// store must give back the same instant, in UTC.
var smsT0 = time.Date(2031, 3, 4, 5, 6, 7, 123456000, time.FixedZone("KST", 9*3600))

func queuedSMS(id, to string, next time.Time) sms.Pending {
	return sms.Pending{ID: id, To: to, Purpose: sms.PurposeNotice, Body: []byte("text of " + id),
		Created: smsT0, NextAttempt: next}
}

// samePending compares two outbox entries; times as instants in UTC.
func samePending(got, want sms.Pending) bool {
	return got.ID == want.ID && got.To == want.To && got.Purpose == want.Purpose && got.Voice == want.Voice &&
		got.Sealed == want.Sealed && bytes.Equal(got.Body, want.Body) && got.Attempts == want.Attempts &&
		got.LastError == want.LastError &&
		got.Created.Equal(want.Created) && got.Created.Location() == time.UTC &&
		got.NextAttempt.Equal(want.NextAttempt) && got.NextAttempt.Location() == time.UTC
}

func pendingIDs(ps []sms.Pending) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID
	}
	return out
}

// Every field comes back as stored: binary bodies (a sealed one has any
// byte), an empty body, flags, counts and times.
func testOutboxRoundTrip(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	want := []sms.Pending{
		{ID: "a", To: "+821012345678", Purpose: sms.PurposePassword, Sealed: true, Body: all,
			Created: smsT0, NextAttempt: smsT0},
		{ID: "b", To: "+15550000100", Purpose: sms.PurposeNotice, Voice: true, Body: []byte("Ça «va» €"),
			Created: smsT0.Add(time.Second), NextAttempt: smsT0.Add(time.Second), Attempts: 3, LastError: "webhook answered 503"},
		{ID: "c", To: "+15550000101", Purpose: sms.PurposeTest, Body: []byte{},
			Created: smsT0.Add(2 * time.Second), NextAttempt: smsT0.Add(2 * time.Second)},
	}
	for _, p := range want {
		must(t, db.EnqueueSMS(ctx, p))
	}
	got, err := db.DueSMS(ctx, smsT0.Add(time.Hour), 10)
	must(t, err)
	if len(got) != len(want) {
		t.Fatalf("DueSMS = %v, want %v", pendingIDs(got), pendingIDs(want))
	}
	for i := range got {
		if !samePending(got[i], want[i]) {
			t.Errorf("message %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	n, err := db.CountSMS(ctx)
	must(t, err)
	if n != 3 {
		t.Errorf("CountSMS = %d, want 3", n)
	}

	// Defaults: no Created is now, no NextAttempt is Created.
	before := time.Now().Add(-time.Millisecond)
	must(t, db.EnqueueSMS(ctx, sms.Pending{ID: "d", To: "+15550000102", Purpose: sms.PurposeTest}))
	d, err := db.DueSMS(ctx, time.Now().Add(time.Millisecond), 10)
	must(t, err)
	last := d[len(d)-1]
	if last.ID != "d" || last.Created.Before(before) || last.Created.After(time.Now()) ||
		!last.NextAttempt.Equal(last.Created) || len(last.Body) != 0 {
		t.Errorf("message queued without times: %+v", last)
	}
	if err := db.EnqueueSMS(ctx, sms.Pending{To: "+15550000103", Purpose: sms.PurposeTest}); err == nil {
		t.Error("EnqueueSMS without an id succeeded")
	}
}

// Due means NextAttempt not after now; the earliest due comes first, and
// at most limit are returned.
func testOutboxDue(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	for _, p := range []sms.Pending{
		queuedSMS("late", "+15550000110", smsT0.Add(time.Minute)),
		queuedSMS("first", "+15550000111", smsT0.Add(-time.Minute)),
		queuedSMS("now", "+15550000112", smsT0),
		queuedSMS("second", "+15550000113", smsT0.Add(-time.Second)),
	} {
		must(t, db.EnqueueSMS(ctx, p))
	}
	for _, tc := range []struct {
		now   time.Time
		limit int
		want  []string
	}{
		{smsT0.Add(-time.Hour), 10, nil},
		{smsT0.Add(-time.Minute), 10, []string{"first"}},
		{smsT0, 10, []string{"first", "second", "now"}},
		{smsT0.Add(-time.Microsecond), 10, []string{"first", "second"}},
		{smsT0, 2, []string{"first", "second"}},
		{smsT0.Add(time.Hour), 10, []string{"first", "second", "now", "late"}},
		{smsT0.Add(time.Hour), 0, nil},
	} {
		got, err := db.DueSMS(ctx, tc.now, tc.limit)
		must(t, err)
		if !slices.Equal(pendingIDs(got), tc.want) {
			t.Errorf("DueSMS(%v, %d) = %v, want %v", tc.now.Sub(smsT0), tc.limit, pendingIDs(got), tc.want)
		}
	}
}

func testOutboxRetryDelete(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	a, b := queuedSMS("a", "+15550000120", smsT0), queuedSMS("b", "+15550000121", smsT0)
	must(t, db.EnqueueSMS(ctx, a))
	must(t, db.EnqueueSMS(ctx, b))

	// A retry moves the message out of what is due until its next time.
	next := smsT0.Add(5 * time.Second)
	must(t, db.RetrySMS(ctx, "a", 1, next, "no answer within 10s"))
	got, err := db.DueSMS(ctx, smsT0, 10)
	must(t, err)
	if !slices.Equal(pendingIDs(got), []string{"b"}) {
		t.Fatalf("due after a retry = %v, want [b]", pendingIDs(got))
	}
	got, err = db.DueSMS(ctx, next, 10)
	must(t, err)
	a.Attempts, a.NextAttempt, a.LastError = 1, next, "no answer within 10s"
	if len(got) != 2 || got[0].ID != "b" || !samePending(got[1], a) {
		t.Fatalf("due at the retry time = %+v, want b then %+v", got, a)
	}

	must(t, db.DeleteSMS(ctx, "b"))
	must(t, db.DeleteSMS(ctx, "b")) // gone: no error
	must(t, db.RetrySMS(ctx, "b", 1, next, "x"))
	got, err = db.DueSMS(ctx, smsT0.Add(time.Hour), 10)
	must(t, err)
	if !slices.Equal(pendingIDs(got), []string{"a"}) {
		t.Fatalf("due after deleting b = %v, want [a]", pendingIDs(got))
	}
	n, err := db.CountSMS(ctx)
	must(t, err)
	if n != 1 {
		t.Fatalf("CountSMS = %d, want 1", n)
	}
}

// A second message with the same id is refused, and leaves no trace in the
// SMS log either: the two rows are written in one transaction.
func testOutboxDuplicate(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const to = "+15550000130"
	must(t, db.EnqueueSMS(ctx, queuedSMS("dup", to, smsT0)))
	again := queuedSMS("dup", to, smsT0.Add(time.Minute))
	again.Created = smsT0.Add(time.Minute)
	if err := db.EnqueueSMS(ctx, again); err == nil {
		t.Fatal("EnqueueSMS of an id already queued succeeded")
	}
	times, err := db.QueuedTimes(ctx, to, sms.PurposeNotice, time.Time{})
	must(t, err)
	if len(times) != 1 || !times[0].Equal(smsT0) {
		t.Fatalf("QueuedTimes after a refused duplicate = %v, want [%v]", times, smsT0)
	}
	got, err := db.DueSMS(ctx, smsT0.Add(time.Hour), 10)
	must(t, err)
	if len(got) != 1 || !got[0].NextAttempt.Equal(smsT0) {
		t.Fatalf("outbox after a refused duplicate = %+v", got)
	}
}

// Concurrent producers all get their message queued.
func testOutboxConcurrent(t *testing.T, db *storage.DB) {
	const producers = 16
	runConcurrently(t, producers, func(i int) error {
		return db.EnqueueSMS(t.Context(), queuedSMS(fmt.Sprintf("m%02d", i), "+15550000140", smsT0))
	})
	got, err := db.DueSMS(t.Context(), smsT0, producers+1)
	must(t, err)
	times, err := db.QueuedTimes(t.Context(), "+15550000140", sms.PurposeNotice, smsT0.Add(-time.Hour))
	must(t, err)
	if len(got) != producers || len(times) != producers {
		t.Fatalf("%d concurrent enqueues: %d queued, %d logged", producers, len(got), len(times))
	}
}

// The log keeps when each SMS was queued, per number and purpose, after
// the SMS itself has left the outbox, until it is pruned.
func testSMSLog(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const to, other = "+15550000150", "+15550000151"
	at := func(d time.Duration) time.Time { return smsT0.Add(d).UTC() }
	queue := func(id, to, purpose string, d time.Duration) {
		t.Helper()
		p := queuedSMS(id, to, at(d))
		p.Purpose, p.Created = purpose, at(d)
		must(t, db.EnqueueSMS(ctx, p))
	}
	// Queued out of order: the log answers oldest first.
	queue("p3", to, sms.PurposePassword, 3*time.Hour)
	queue("p1", to, sms.PurposePassword, 1*time.Hour)
	queue("p2", to, sms.PurposePassword, 2*time.Hour)
	queue("n1", to, sms.PurposeNotice, 2*time.Hour)
	queue("o1", other, sms.PurposePassword, 2*time.Hour)
	must(t, db.DeleteSMS(ctx, "p2")) // sent: still counts

	check := func(since time.Time, want ...time.Time) {
		t.Helper()
		got, err := db.QueuedTimes(ctx, to, sms.PurposePassword, since)
		must(t, err)
		if len(got) != len(want) {
			t.Fatalf("QueuedTimes since %v = %v, want %v", since, got, want)
		}
		for i := range got {
			if !got[i].Equal(want[i]) || got[i].Location() != time.UTC {
				t.Fatalf("QueuedTimes since %v = %v, want %v in UTC", since, got, want)
			}
		}
	}
	check(time.Time{}, at(time.Hour), at(2*time.Hour), at(3*time.Hour))
	check(at(0), at(time.Hour), at(2*time.Hour), at(3*time.Hour))
	check(at(time.Hour), at(2*time.Hour), at(3*time.Hour)) // exactly since: not counted
	check(at(time.Hour-time.Microsecond), at(time.Hour), at(2*time.Hour), at(3*time.Hour))
	check(at(3 * time.Hour))
	notices, err := db.QueuedTimes(ctx, to, sms.PurposeNotice, time.Time{})
	must(t, err)
	if len(notices) != 1 || !notices[0].Equal(at(2*time.Hour)) {
		t.Fatalf("notices = %v", notices)
	}

	must(t, db.PruneSMSLog(ctx, at(2*time.Hour)))
	check(time.Time{}, at(2*time.Hour), at(3*time.Hour))
	others, err := db.QueuedTimes(ctx, other, sms.PurposePassword, time.Time{})
	must(t, err)
	if len(others) != 1 {
		t.Fatalf("pruning before the 2 h entry removed %s's: %v", other, others)
	}
	// Pruning the log leaves the outbox alone.
	n, err := db.CountSMS(ctx)
	must(t, err)
	if n != 4 {
		t.Fatalf("CountSMS after prune = %d, want 4", n)
	}
}
