package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/offline"
	"dialtone/sms"
	"dialtone/storage"
)

// noticeTests are the contract of the message notices (sms.NoticeStore
// and StoreOffline, schema migration 3); Run runs them.
var noticeTests = []struct {
	name string
	fn   func(t *testing.T, db *storage.DB)
}{
	{"StoreOfflineWithNotice", testStoreOfflineWithNotice},
	{"StoreOfflineStale", testStoreOfflineStale},
	{"StoreOfflineFullWritesNothing", testStoreOfflineFull},
	{"StoreOfflineTouches", testStoreOfflineTouches},
	{"NoticeWindows", testNoticeWindows},
	{"NoticedNumbers", testNoticedNumbers},
	{"StoreOfflineNewNumbersCap", testStoreOfflineNewNumbers},
	{"StoreOfflineNewNumbersConcurrent", testStoreOfflineNewNumbersConcurrent},
	{"StoreOfflineBytes", testStoreOfflineBytes},
	{"StoreNoticeStoresNoMessage", testStoreNotice},
}

// StoreNotice writes the plan (the account, the notice, the window) and
// no message: the message is kept elsewhere.
func testStoreNotice(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550003101")
	c := creds(5)
	note := queuedSMS("nn1", string(n), noticeT0)
	w := sms.NoticeWindow{To: string(n), Opened: noticeT0, Closes: noticeT0.Add(10 * time.Minute)}
	must(t, db.StoreNotice(ctx, string(n), sms.NoticePlan{To: n, At: noticeT0, Create: true, Credentials: &c,
		FirstNotice: true, SMS: []sms.Pending{note}, Window: &w}))
	if a, err := db.Account(ctx, n); err != nil || a.State != auth.StateUnclaimed {
		t.Errorf("account %+v, %v", a, err)
	}
	if got, err := db.CountOffline(ctx, string(n)); err != nil || got != 0 {
		t.Errorf("%d stored (%v), want none", got, err)
	}
	due, err := db.DueSMS(ctx, noticeT0, 10)
	must(t, err)
	if len(due) != 1 || !samePending(due[0], note) {
		t.Errorf("queued %+v, want %+v", due, note)
	}
	got, err := db.NoticeWindow(ctx, string(n))
	must(t, err)
	if !sameWindow(got, w) {
		t.Errorf("window %+v, want %+v", got, w)
	}
}

// noticeT0 is a fixed time with microseconds, not in UTC.
var noticeT0 = time.Date(2031, 5, 6, 7, 8, 9, 123456000, time.FixedZone("KST", 9*3600))

func offlineMsg(owner, body string, at time.Time) offline.Message {
	return offline.Message{Owner: owner, From: "+15550009999@example.org/x", Stamp: at,
		Stanza: []byte("<message><body>" + body + "</body></message>")}
}

func sameWindow(got, want sms.NoticeWindow) bool {
	return got.To == want.To && got.Count == want.Count && got.Sender == want.Sender &&
		got.Opened.Equal(want.Opened) && got.Opened.Location() == time.UTC &&
		got.Closes.Equal(want.Closes) && got.Closes.Location() == time.UTC
}

// A message to a latent number: the account, the message, the notice with
// its log row, the window and the sender's count, all written.
func testStoreOfflineWithNotice(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550003001")
	r, err := db.NoticeReceiver(ctx, n)
	must(t, err)
	if r.Exists {
		t.Fatalf("receiver of a latent number %+v", r)
	}
	c := with512(3) // every key, SHA-512 too, as a notice makes them
	note := queuedSMS("n1", string(n), noticeT0)
	note.Sealed, note.Body = true, []byte{0, 1, 2, 255}
	w := sms.NoticeWindow{To: string(n), Opened: noticeT0, Closes: noticeT0.Add(10 * time.Minute)}
	id, err := db.StoreOffline(ctx, offlineMsg(string(n), "hi", noticeT0), offline.Limits{}, sms.NoticePlan{
		To: n, At: noticeT0, Create: true, Credentials: &c, FirstNotice: true, PasswordDelivered: true,
		SMS: []sms.Pending{note}, Window: &w, CountFor: "+15550009999"})
	must(t, err)
	a, err := db.Account(ctx, n)
	must(t, err)
	if a.State != auth.StateUnclaimed || a.Generation != 1 || !reflect.DeepEqual(a.Credentials, c) || !a.Created.Equal(noticeT0) {
		t.Errorf("account %+v", a)
	}
	r, err = db.NoticeReceiver(ctx, n)
	must(t, err)
	if r != (sms.Receiver{Exists: true, FirstNoticed: true, PasswordDelivered: true}) {
		t.Errorf("receiver %+v", r)
	}
	msgs, err := db.OfflineMessages(ctx, string(n), 0)
	must(t, err)
	if len(msgs) != 1 || msgs[0].ID != id || string(msgs[0].Stanza) != "<message><body>hi</body></message>" {
		t.Errorf("stored %+v", msgs)
	}
	due, err := db.DueSMS(ctx, noticeT0, 10)
	must(t, err)
	if len(due) != 1 || !samePending(due[0], note) {
		t.Errorf("queued %+v, want %+v", due, note)
	}
	times, err := db.QueuedTimes(ctx, string(n), sms.PurposeNotice, time.Time{})
	must(t, err)
	if len(times) != 1 {
		t.Errorf("log %v", times)
	}
	got, err := db.NoticeWindow(ctx, string(n))
	must(t, err)
	if !sameWindow(got, w) {
		t.Errorf("window %+v, want %+v", got, w)
	}
	nums, err := db.NoticedNumbers(ctx, "+15550009999", noticeT0.Add(-time.Hour))
	must(t, err)
	if !slices.Equal(nums, []string{string(n)}) {
		t.Errorf("noticed numbers %v", nums)
	}

	// counted in the window: it is replaced, no account change
	w.Count, w.Sender = 1, "+15550009999"
	_, err = db.StoreOffline(ctx, offlineMsg(string(n), "again", noticeT0.Add(time.Minute)), offline.Limits{},
		sms.NoticePlan{To: n, At: noticeT0.Add(time.Minute), Window: &w})
	must(t, err)
	got, err = db.NoticeWindow(ctx, string(n))
	must(t, err)
	if !sameWindow(got, w) {
		t.Errorf("counted window %+v, want %+v", got, w)
	}
	// a password for the unclaimed account replaces its credentials
	c2 := with512(4)
	_, err = db.StoreOffline(ctx, offlineMsg(string(n), "3", noticeT0.Add(2*time.Minute)), offline.Limits{},
		sms.NoticePlan{To: n, At: noticeT0.Add(2 * time.Minute), Credentials: &c2, FirstNotice: true, PasswordDelivered: true, DropWindow: true})
	must(t, err)
	a, err = db.Account(ctx, n)
	must(t, err)
	if a.Generation != 2 || !reflect.DeepEqual(a.Credentials, c2) {
		t.Errorf("account after a new password %+v", a)
	}
	_, err = db.NoticeWindow(ctx, string(n))
	wantNotFound(t, "dropped window", err)
	if c, err := db.CountOffline(ctx, string(n)); err != nil || c != 3 {
		t.Errorf("%d stored (%v), want 3", c, err)
	}
}

// A plan made for an account that changed meanwhile writes nothing.
func testStoreOfflineStale(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550003002")
	c := creds(5)
	_, err := db.SetCredentials(ctx, n, c)
	must(t, err)
	// made meanwhile
	_, err = db.StoreOffline(ctx, offlineMsg(string(n), "x", noticeT0), offline.Limits{}, sms.NoticePlan{To: n, At: noticeT0,
		Create: true, Credentials: &c, SMS: []sms.Pending{queuedSMS("s1", string(n), noticeT0)}})
	if !errors.Is(err, sms.ErrStale) {
		t.Errorf("create over an account: %v, want ErrStale", err)
	}
	// claimed meanwhile: its password is not replaced
	must(t, db.RecordLogin(ctx, n, noticeT0))
	_, err = db.StoreOffline(ctx, offlineMsg(string(n), "x", noticeT0), offline.Limits{}, sms.NoticePlan{To: n, At: noticeT0,
		Credentials: &c, FirstNotice: true, PasswordDelivered: true, SMS: []sms.Pending{queuedSMS("s2", string(n), noticeT0)}})
	if !errors.Is(err, sms.ErrStale) {
		t.Errorf("new password for an active account: %v, want ErrStale", err)
	}
	if c, err := db.CountOffline(ctx, string(n)); err != nil || c != 0 {
		t.Errorf("%d stored (%v) by stale plans", c, err)
	}
	if due, err := db.DueSMS(ctx, noticeT0, 10); err != nil || len(due) != 0 {
		t.Errorf("queued %v (%v) by stale plans", due, err)
	}
	if a, err := db.Account(ctx, n); err != nil || a.Generation != 1 {
		t.Errorf("account %+v %v", a, err)
	}
}

// A full store refuses the message and writes nothing of its plan.
func testStoreOfflineFull(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550003003")
	c := creds(6)
	plan := func(id string) sms.NoticePlan {
		return sms.NoticePlan{To: n, At: noticeT0, SMS: []sms.Pending{queuedSMS(id, string(n), noticeT0)}, CountFor: "s"}
	}
	p := plan("f1")
	p.Create, p.Credentials = true, &c
	_, err := db.StoreOffline(ctx, offlineMsg(string(n), "1", noticeT0), offline.Limits{Messages: 1}, p)
	must(t, err)
	_, err = db.StoreOffline(ctx, offlineMsg(string(n), "2", noticeT0), offline.Limits{Messages: 1}, plan("f2"))
	if !errors.Is(err, offline.ErrFull) {
		t.Fatalf("over the limit: %v, want ErrFull", err)
	}
	due, err := db.DueSMS(ctx, noticeT0, 10)
	must(t, err)
	if !slices.Equal(pendingIDs(due), []string{"f1"}) {
		t.Errorf("queued %v, want only f1", pendingIDs(due))
	}
}

// Each stored message moves an unclaimed account's TTL clock; the release
// takes the account with its messages and window.
func testStoreOfflineTouches(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550003004")
	c := creds(7)
	_, err := db.StoreOffline(ctx, offlineMsg(string(n), "1", noticeT0), offline.Limits{},
		sms.NoticePlan{To: n, At: noticeT0, Create: true, Credentials: &c})
	must(t, err)
	later := noticeT0.Add(time.Hour)
	w := sms.NoticeWindow{To: string(n), Opened: later, Closes: later.Add(time.Minute)}
	_, err = db.StoreOffline(ctx, offlineMsg(string(n), "2", later), offline.Limits{}, sms.NoticePlan{To: n, At: later, Window: &w})
	must(t, err)
	if got := released(t, db, later.Add(-time.Second), 0); len(got) != 0 {
		t.Fatalf("released %v though touched at %v", got, later)
	}
	if got := released(t, db, later.Add(time.Second), 0); !slices.Equal(got, []auth.Number{n}) {
		t.Fatalf("released %v, want %s", got, n)
	}
	if c, err := db.CountOffline(ctx, string(n)); err != nil || c != 0 {
		t.Errorf("%d messages (%v) left of a released account", c, err)
	}
	_, err = db.NoticeWindow(ctx, string(n))
	wantNotFound(t, "window of a released account", err)
}

// Windows come due in closing order; closing is conditional on the window
// being the same one and queues its notice with it.
func testNoticeWindows(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	open := func(n string, opened time.Time, closes time.Duration) sms.NoticeWindow {
		w := sms.NoticeWindow{To: n, Opened: opened, Closes: opened.Add(closes), Count: 2, Sender: "+1555"}
		_, err := db.StoreOffline(ctx, offlineMsg(n, "x", opened), offline.Limits{}, sms.NoticePlan{To: auth.Number(n), At: opened, Window: &w})
		must(t, err)
		return w
	}
	a := open("+15550003011", noticeT0, 3*time.Minute)
	b := open("+15550003012", noticeT0, time.Minute)
	c := open("+15550003013", noticeT0, 10*time.Minute)
	due, err := db.DueNoticeWindows(ctx, noticeT0.Add(3*time.Minute), 10)
	must(t, err)
	if len(due) != 2 || !sameWindow(due[0], b) || !sameWindow(due[1], a) {
		t.Fatalf("due %+v, want b then a", due)
	}
	if first, err := db.DueNoticeWindows(ctx, noticeT0.Add(time.Hour), 1); err != nil || len(first) != 1 || !sameWindow(first[0], b) {
		t.Fatalf("first window %+v %v", first, err)
	}
	// a window that is no longer the one read is not closed
	stale := b
	stale.Opened = stale.Opened.Add(-time.Second)
	fold := queuedSMS("fold-b", b.To, noticeT0)
	if closed, err := db.CloseNoticeWindow(ctx, stale, &fold); err != nil || closed {
		t.Fatalf("closed a stale window: %v %v", closed, err)
	}
	if closed, err := db.CloseNoticeWindow(ctx, b, &fold); err != nil || !closed {
		t.Fatalf("close: %v %v", closed, err)
	}
	if closed, err := db.CloseNoticeWindow(ctx, a, nil); err != nil || !closed {
		t.Fatalf("close without notice: %v %v", closed, err)
	}
	due, err = db.DueNoticeWindows(ctx, noticeT0.Add(time.Hour), 10)
	must(t, err)
	if len(due) != 1 || !sameWindow(due[0], c) {
		t.Fatalf("left %+v, want c", due)
	}
	if q, err := db.DueSMS(ctx, noticeT0, 10); err != nil || !slices.Equal(pendingIDs(q), []string{"fold-b"}) {
		t.Errorf("queued %v %v, want the one fold", pendingIDs(q), err)
	}
	must(t, db.DropNoticeWindow(ctx, c.To))
	must(t, db.DropNoticeWindow(ctx, c.To)) // no error when gone
	_, err = db.NoticeWindow(ctx, c.To)
	wantNotFound(t, "dropped window", err)
}

// The numbers a sender caused notices to, counted since a time, refreshed
// by a new notice, and pruned.
func testNoticedNumbers(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	count := func(sender, n string, at time.Time) {
		_, err := db.StoreOffline(ctx, offlineMsg(n, "x", at), offline.Limits{}, sms.NoticePlan{To: auth.Number(n), At: at, CountFor: sender})
		must(t, err)
	}
	count("alice", "+15550003022", noticeT0)
	count("alice", "+15550003021", noticeT0.Add(time.Hour))
	count("bob", "+15550003023", noticeT0)
	count("alice", "+15550003022", noticeT0.Add(2*time.Hour)) // again: refreshed
	nums, err := db.NoticedNumbers(ctx, "alice", noticeT0.Add(time.Minute))
	must(t, err)
	if !slices.Equal(nums, []string{"+15550003021", "+15550003022"}) {
		t.Errorf("alice %v", nums)
	}
	must(t, db.PruneNoticedNumbers(ctx, noticeT0.Add(90*time.Minute)))
	nums, err = db.NoticedNumbers(ctx, "alice", time.Time{})
	must(t, err)
	if !slices.Equal(nums, []string{"+15550003022"}) {
		t.Errorf("alice after prune %v", nums)
	}
	if nums, err := db.NoticedNumbers(ctx, "bob", time.Time{}); err != nil || len(nums) != 0 {
		t.Errorf("bob after prune %v %v", nums, err)
	}
}

// XMPPD_NEW_NUMBERS_PER_SENDER_DAY in the store: a sender's message to one
// more never-logged-in number than the cap allows is refused with nothing
// written; numbers counted before, other senders and older counts do not
// stop it; the counts are pruned.
func testStoreOfflineNewNumbers(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	write := func(sender string, n auth.Number, at time.Time, id string) error {
		c := creds(8)
		_, err := db.StoreOffline(ctx, offlineMsg(string(n), "x", at), offline.Limits{}, sms.NoticePlan{
			To: n, At: at, Create: true, Credentials: &c, SMS: []sms.Pending{queuedSMS(id, string(n), at)},
			NewNumber: &sms.NewNumberCap{Sender: sender, Limit: 2, Since: at.Add(-24 * time.Hour)}})
		if errors.Is(err, sms.ErrStale) { // made by an earlier message: store without creating
			_, err = db.StoreOffline(ctx, offlineMsg(string(n), "x", at), offline.Limits{}, sms.NoticePlan{
				To: n, At: at, NewNumber: &sms.NewNumberCap{Sender: sender, Limit: 2, Since: at.Add(-24 * time.Hour)}})
		}
		return err
	}
	n1, n2, n3 := auth.Number("+15550003031"), auth.Number("+15550003032"), auth.Number("+15550003033")
	must(t, write("alice", n1, noticeT0, "a1"))
	must(t, write("alice", n2, noticeT0.Add(time.Hour), "a2"))
	must(t, write("alice", n1, noticeT0.Add(2*time.Hour), "a3")) // counted already
	if err := write("alice", n3, noticeT0.Add(2*time.Hour), "a4"); !errors.Is(err, sms.ErrTooManyNewNumbers) {
		t.Fatalf("a third new number: %v, want ErrTooManyNewNumbers", err)
	}
	if c, err := db.CountOffline(ctx, string(n3)); err != nil || c != 0 {
		t.Errorf("%d stored (%v) over the cap", c, err)
	}
	_, err := db.Account(ctx, n3)
	wantNotFound(t, "account over the cap", err)
	if due, err := db.DueSMS(ctx, noticeT0.Add(time.Hour), 10); err != nil || slices.Contains(pendingIDs(due), "a4") {
		t.Errorf("queued over the cap: %v %v", pendingIDs(due), err)
	}
	must(t, write("bob", n3, noticeT0.Add(2*time.Hour), "b1")) // another sender
	// n1 was counted at +2h, n2 at +1h: 24 hours after n2, one slot is free.
	if err := write("alice", "+15550003034", noticeT0.Add(25*time.Hour-time.Second), "a5"); !errors.Is(err, sms.ErrTooManyNewNumbers) {
		t.Fatalf("before n2's count ran out: %v", err)
	}
	must(t, write("alice", "+15550003034", noticeT0.Add(25*time.Hour+time.Second), "a6"))

	// Pruning forgets the old counts (n2 at +1h); the kept ones still count.
	must(t, db.PruneNoticedNumbers(ctx, noticeT0.Add(90*time.Minute)))
	at := noticeT0.Add(3 * time.Hour)
	c := creds(9)
	_, err = db.StoreOffline(ctx, offlineMsg("+15550003035", "x", at), offline.Limits{}, sms.NoticePlan{
		To: "+15550003035", At: at, Create: true, Credentials: &c,
		NewNumber: &sms.NewNumberCap{Sender: "alice", Limit: 2, Since: time.Time{}}})
	if !errors.Is(err, sms.ErrTooManyNewNumbers) {
		t.Fatalf("after the prune, n1 and +15550003034 still count: %v", err)
	}
	_, err = db.StoreOffline(ctx, offlineMsg("+15550003035", "x", at), offline.Limits{}, sms.NoticePlan{
		To: "+15550003035", At: at, Create: true, Credentials: &c,
		NewNumber: &sms.NewNumberCap{Sender: "alice", Limit: 3, Since: time.Time{}}})
	must(t, err)
}

// Concurrent messages of one sender to new numbers never pass the cap
// together.
func testStoreOfflineNewNumbersConcurrent(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	errs := make(chan error, 10)
	for i := range 10 {
		go func() {
			n := auth.Number(fmt.Sprintf("+155500031%02d", i))
			c := creds(byte(i))
			_, err := db.StoreOffline(ctx, offlineMsg(string(n), "x", noticeT0), offline.Limits{}, sms.NoticePlan{
				To: n, At: noticeT0, Create: true, Credentials: &c,
				NewNumber: &sms.NewNumberCap{Sender: "carol", Limit: 3, Since: noticeT0.Add(-time.Hour)}})
			errs <- err
		}()
	}
	stored := 0
	for range 10 {
		err := <-errs
		switch {
		case err == nil:
			stored++
		case !errors.Is(err, sms.ErrTooManyNewNumbers):
			t.Error(err)
		}
	}
	if stored != 3 {
		t.Fatalf("%d of 10 concurrent messages to new numbers stored, want 3", stored)
	}
}

// XMPPD_OFFLINE_BYTES: a message that would take the owner's stored
// stanzas over the limit is refused with ErrFull and writes nothing.
func testStoreOfflineBytes(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550003041")
	msg := offlineMsg(string(n), "0123456789", noticeT0)
	size := len(msg.Stanza)
	limits := offline.Limits{Bytes: 3 * size}
	for range 3 {
		_, err := db.StoreOffline(ctx, msg, limits, sms.NoticePlan{To: n, At: noticeT0})
		must(t, err)
	}
	_, err := db.StoreOffline(ctx, offlineMsg(string(n), "", noticeT0), limits,
		sms.NoticePlan{To: n, At: noticeT0, SMS: []sms.Pending{queuedSMS("over", string(n), noticeT0)}})
	if !errors.Is(err, offline.ErrFull) {
		t.Fatalf("over the byte limit: %v, want ErrFull", err)
	}
	if due, err := db.DueSMS(ctx, noticeT0, 10); err != nil || len(due) != 0 {
		t.Errorf("queued %v %v by a refused message", pendingIDs(due), err)
	}
	// Another owner has its own bytes; room made by delivery is room again.
	_, err = db.StoreOffline(ctx, offlineMsg("+15550003042", "0123456789", noticeT0), limits, sms.NoticePlan{To: "+15550003042", At: noticeT0})
	must(t, err)
	msgs, err := db.OfflineMessages(ctx, string(n), 1)
	must(t, err)
	must(t, db.DeleteOffline(ctx, string(n), []int64{msgs[0].ID}))
	_, err = db.StoreOffline(ctx, msg, limits, sms.NoticePlan{To: n, At: noticeT0})
	must(t, err)
	// Both limits apply.
	_, err = db.StoreOffline(ctx, offlineMsg("+15550003042", "x", noticeT0), offline.Limits{Messages: 1, Bytes: 1 << 20},
		sms.NoticePlan{To: "+15550003042", At: noticeT0})
	if !errors.Is(err, offline.ErrFull) {
		t.Fatalf("over the message limit: %v, want ErrFull", err)
	}
}
