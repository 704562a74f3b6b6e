package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/offline"
	"dialtone/sms"
	"dialtone/storage"
)

// groupCommitTests are the contract of InTx, the group commit of offline
// messages; Run runs them.
var groupCommitTests = []struct {
	name string
	fn   func(t *testing.T, db *storage.DB)
}{
	{"GroupCommitKeepsEachRule", testGroupCommit},
	{"GroupCommitRollsBackAll", testGroupCommitRollback},
	{"GroupCommitWindowLastState", testGroupCommitWindow},
	{"RecordLoginConcurrent", testRecordLoginConcurrent},
}

// The window a group's plans count in is written once, as the last
// plan that was kept left it; a dropped one is deleted.
func testGroupCommitWindow(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n, gone = auth.Number("+15550003221"), auth.Number("+15550003222")
	c := creds(3)
	for _, x := range []auth.Number{n, gone} {
		_, err := db.SetCredentials(ctx, x, c)
		must(t, err)
		must(t, db.RecordLogin(ctx, x, noticeT0))
	}
	old := sms.NoticeWindow{To: string(gone), Opened: noticeT0, Closes: noticeT0.Add(time.Minute), Count: 4}
	_, err := db.StoreOffline(ctx, offlineMsg(string(gone), "x", noticeT0), offline.Limits{}, sms.NoticePlan{To: gone, At: noticeT0, Window: &old})
	must(t, err)
	w := sms.NoticeWindow{To: string(n), Opened: noticeT0, Closes: noticeT0.Add(10 * time.Minute), Sender: "+15550009999"}
	limits := offline.Limits{Messages: 3}
	err = db.InTx(ctx, func(tx *storage.DB) error {
		for i := range 4 {
			if _, err := tx.NoticeReceiver(ctx, n); err != nil {
				return err
			}
			w.Count = i + 1
			_, err := tx.StoreOffline(ctx, offlineMsg(string(n), "x", noticeT0), limits, sms.NoticePlan{To: n, At: noticeT0, Window: &w})
			if i == 3 && !errors.Is(err, offline.ErrFull) || i < 3 && err != nil {
				t.Errorf("message %d: %v", i, err)
			}
		}
		if got, err := tx.NoticeWindow(ctx, string(gone)); err != nil || got.Count != 4 {
			t.Errorf("window of %s in the group: %+v %v", gone, got, err)
		}
		_, err := tx.StoreOffline(ctx, offlineMsg(string(gone), "y", noticeT0), offline.Limits{}, sms.NoticePlan{To: gone, At: noticeT0, DropWindow: true})
		return err
	})
	must(t, err)
	w.Count = 3
	if got, err := db.NoticeWindow(ctx, string(n)); err != nil || !sameWindow(got, w) {
		t.Errorf("window %+v %v, want %+v (the last kept plan's)", got, err, w)
	}
	if _, err := db.NoticeWindow(ctx, string(gone)); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("dropped window of %s: %v", gone, err)
	}
}

// Many messages in one transaction obey every rule as if each had its
// own: the limits (counted once, then kept up to date through released
// and rolled-back savepoints), a stale plan undoing only its own message
// and notice, reads seeing what the transaction wrote; then one commit
// keeps what was accepted.
func testGroupCommit(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const a, b = auth.Number("+15550003201"), auth.Number("+15550003202")
	c := creds(7)
	_, err := db.SetCredentials(ctx, a, c)
	must(t, err)
	must(t, db.RecordLogin(ctx, a, noticeT0)) // claimed: a new password for it is stale
	one := offlineMsg(string(a), "0123456789", noticeT0)
	limits := offline.Limits{Messages: 3, Bytes: 3 * len(one.Stanza)}
	w := sms.NoticeWindow{To: string(a), Opened: noticeT0, Closes: noticeT0.Add(10 * time.Minute)}
	var ids []int64
	const c3 = auth.Number("+15550003203")
	want := sms.Receiver{Exists: true, FirstNoticed: true, PasswordDelivered: true}
	err = db.InTx(ctx, func(tx *storage.DB) error {
		id, err := tx.StoreOffline(ctx, one, limits, sms.NoticePlan{To: a, At: noticeT0, Window: &w,
			SMS: []sms.Pending{queuedSMS("g1", string(a), noticeT0)}})
		if err != nil {
			return err
		}
		ids = append(ids, id)
		// stored, then its plan is stale: the message and the SMS go,
		// and the limit does not count it
		_, err = tx.StoreOffline(ctx, one, limits, sms.NoticePlan{To: a, At: noticeT0, Credentials: &c,
			SMS: []sms.Pending{queuedSMS("g-stale", string(a), noticeT0)}})
		if !errors.Is(err, sms.ErrStale) {
			t.Errorf("stale plan in a group: %v, want ErrStale", err)
		}
		if got, err := tx.NoticeWindow(ctx, string(a)); err != nil || !sameWindow(got, w) {
			t.Errorf("window read in the group: %+v %v, want %+v", got, err, w)
		}
		for range 2 {
			id, err := tx.StoreOffline(ctx, one, limits, sms.NoticePlan{To: a, At: noticeT0})
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		if _, err := tx.StoreOffline(ctx, one, limits, sms.NoticePlan{To: a, At: noticeT0}); !errors.Is(err, offline.ErrFull) {
			t.Errorf("a 4th message over a limit of 3: %v, want ErrFull", err)
		}
		if n, err := tx.CountOffline(ctx, string(a)); err != nil || n != 3 {
			t.Errorf("counted %d (%v) in the group, want 3", n, err)
		}
		// room made in the group is room again
		if err := tx.DeleteOffline(ctx, string(a), ids[:1]); err != nil {
			return err
		}
		id, err = tx.StoreOffline(ctx, one, limits, sms.NoticePlan{To: a, At: noticeT0})
		if err != nil {
			return err
		}
		ids = append(ids[1:], id)
		id, err = tx.StoreOffline(ctx, offlineMsg(string(b), "x", noticeT0), limits, sms.NoticePlan{To: b, At: noticeT0})
		if err != nil {
			return err
		}
		// what the group's plans wrote is what its reads see
		if r, err := tx.NoticeReceiver(ctx, a); err != nil || !r.Exists || !r.Claimed {
			t.Errorf("receiver %s in the group: %+v %v, want claimed", a, r, err)
		}
		c3creds := creds(9)
		if _, err := tx.NoticeReceiver(ctx, c3); err != nil {
			return err
		}
		if _, err := tx.StoreOffline(ctx, offlineMsg(string(c3), "z", noticeT0), limits, sms.NoticePlan{To: c3, At: noticeT0,
			Create: true, Credentials: &c3creds, FirstNotice: true, PasswordDelivered: true, DropWindow: true}); err != nil {
			return err
		}
		if r, err := tx.NoticeReceiver(ctx, c3); err != nil || r != want {
			t.Errorf("receiver %s made in the group: %+v %v, want %+v", c3, r, err, want)
		}
		if _, err := tx.NoticeWindow(ctx, string(c3)); !errors.Is(err, auth.ErrNotFound) {
			t.Errorf("window of %s after a plan that drops it: %v", c3, err)
		}
		_, err = tx.PushOffline(ctx, offlineMsg(string(b), "y", noticeT0), 1)
		if !errors.Is(err, offline.ErrFull) {
			t.Errorf("PushOffline over its limit in a group: %v, want ErrFull", err)
		}
		return nil
	})
	must(t, err)
	if r, err := db.NoticeReceiver(ctx, c3); err != nil || r != want {
		t.Errorf("receiver %s after the commit: %+v %v, want %+v", c3, r, err, want)
	}
	msgs, err := db.OfflineMessages(ctx, string(a), 0)
	must(t, err)
	if len(msgs) != 3 || msgs[0].ID != ids[0] || msgs[1].ID != ids[1] || msgs[2].ID != ids[2] {
		t.Errorf("committed %d messages of %s, want ids %v", len(msgs), a, ids)
	}
	if n, err := db.CountOffline(ctx, string(b)); err != nil || n != 1 {
		t.Errorf("%s has %d (%v), want 1", b, n, err)
	}
	due, err := db.DueSMS(ctx, noticeT0, 10)
	must(t, err)
	if got := pendingIDs(due); len(got) != 1 || got[0] != "g1" {
		t.Errorf("queued %v, want [g1] (not the stale plan's)", got)
	}
	if got, err := db.NoticeWindow(ctx, string(a)); err != nil || !sameWindow(got, w) {
		t.Errorf("window %+v %v, want %+v", got, err, w)
	}
}

// A group whose function fails keeps none of it.
func testGroupCommitRollback(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550003211")
	boom := errors.New("boom")
	err := db.InTx(ctx, func(tx *storage.DB) error {
		for i := range 3 {
			plan := sms.NoticePlan{To: n, At: noticeT0}
			if i == 0 {
				plan.SMS = []sms.Pending{queuedSMS("r1", string(n), noticeT0)}
			}
			if _, err := tx.StoreOffline(ctx, offlineMsg(string(n), "x", noticeT0), offline.Limits{}, plan); err != nil {
				return err
			}
		}
		if err := tx.InTx(ctx, func(*storage.DB) error { return nil }); err == nil {
			t.Error("InTx inside InTx did not fail")
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx: %v, want the function's error", err)
	}
	if c, err := db.CountOffline(ctx, string(n)); err != nil || c != 0 {
		t.Errorf("%d stored (%v) by a group rolled back", c, err)
	}
	if due, err := db.DueSMS(ctx, noticeT0, 10); err != nil || len(due) != 0 {
		t.Errorf("queued %v (%v) by a group rolled back", pendingIDs(due), err)
	}
}

// Concurrent logins are stamped together (one transaction for many), and
// each caller learns its own result: committed, or auth.ErrNotFound for
// a number without an account in the same group.
func testRecordLoginConcurrent(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const accounts = 8
	num := func(i int) auth.Number { return auth.Number(fmt.Sprintf("+155500032%02d", 30+i)) }
	for i := range accounts {
		_, err := db.SetCredentials(ctx, num(i), creds(byte(i)))
		must(t, err)
	}
	at := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	var wg sync.WaitGroup
	errs := make([]error, 4*accounts)
	for k := range errs {
		wg.Go(func() {
			n := num(k % accounts)
			if k >= 3*accounts {
				n = num(accounts + k) // no account
			}
			errs[k] = db.RecordLogin(ctx, n, at.Add(time.Duration(k)*time.Second))
		})
	}
	wg.Wait()
	for k, err := range errs {
		if k >= 3*accounts {
			if !errors.Is(err, auth.ErrNotFound) {
				t.Errorf("login %d without an account: %v, want ErrNotFound", k, err)
			}
		} else if err != nil {
			t.Errorf("login %d: %v", k, err)
		}
	}
	for i := range accounts {
		a, err := db.Account(ctx, num(i))
		must(t, err)
		if a.State != auth.StateActive || a.LastLogin.IsZero() {
			t.Errorf("%s after its logins: %+v", num(i), a)
		}
	}
}
