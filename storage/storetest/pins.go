package storetest

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/sms"
	"dialtone/storage"
)

// pinTests are the contract of the app API's PINs (SPEC.md "App API").
var pinTests = []struct {
	name string
	fn   func(t *testing.T, db *storage.DB)
}{
	{"PINWorksOnce", testPINWorksOnce},
	{"PINTries", testPINTries},
	{"PINExpires", testPINExpires},
	{"PINReplaced", testPINReplaced},
	{"PINAtomicWithSMS", testPINAtomicWithSMS},
	{"PINConcurrentRight", testPINConcurrentRight},
	{"PINConcurrentWrong", testPINConcurrentWrong},
}

// pinT0 is a fixed past time for PIN tests, at the store's precision.
var pinT0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// pinHash stands for auth.PINHash: the store only compares bytes.
func pinHash(pin string) []byte { return bytes.Repeat([]byte(pin), 4) }

// pinSMS is the SMS that texts a PIN to n, queued at t.
func pinSMS(id string, n auth.Number, t time.Time) sms.Pending {
	return sms.Pending{ID: id, To: string(n), Purpose: sms.PurposePIN, Body: []byte("sealed " + id),
		Sealed: true, Created: t, NextAttempt: t}
}

// usePIN calls UsePIN with three tries and fails the test on an error.
func usePIN(t *testing.T, db *storage.DB, n auth.Number, pin string, at time.Time) sms.PINCheck {
	t.Helper()
	c, err := db.UsePIN(t.Context(), n, pinHash(pin), 3, at)
	must(t, err)
	return c
}

// wantPIN checks the result of a UsePIN.
func wantPIN(t *testing.T, what string, got sms.PINCheck, want sms.PINResult) {
	t.Helper()
	if got.Result != want {
		t.Fatalf("%s: UsePIN = %+v, want result %d", what, got, want)
	}
}

// A saved PIN is queued with its SMS and matches once; a number without
// one has none.
func testPINWorksOnce(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550002001")
	wantPIN(t, "no PIN saved", usePIN(t, db, n, "123456", pinT0), sms.PINAbsent)
	expires := pinT0.Add(5 * time.Minute)
	must(t, db.SavePIN(ctx, n, pinHash("123456"), expires, pinSMS("pin1", n, pinT0)))
	times, err := db.QueuedTimes(ctx, string(n), sms.PurposePIN, pinT0.Add(-time.Hour))
	must(t, err)
	if len(times) != 1 || !times[0].Equal(pinT0) {
		t.Fatalf("QueuedTimes(pin) = %v, want [%v]", times, pinT0)
	}
	due, err := db.DueSMS(ctx, pinT0, 10)
	must(t, err)
	if len(due) != 1 || due[0].ID != "pin1" || due[0].Purpose != sms.PurposePIN || !due[0].Sealed {
		t.Fatalf("outbox = %+v, want the PIN SMS", due)
	}
	got := usePIN(t, db, n, "123456", pinT0.Add(time.Minute))
	wantPIN(t, "right PIN", got, sms.PINMatched)
	if !got.Expires.Equal(expires) {
		t.Fatalf("Expires = %v, want %v", got.Expires, expires)
	}
	wantPIN(t, "right PIN again", usePIN(t, db, n, "123456", pinT0.Add(time.Minute)), sms.PINAbsent)
}

// Three wrong PINs use up the tries: then even the right one is refused
// unchecked, until the PIN expires.
func testPINTries(t *testing.T, db *storage.DB) {
	const n = auth.Number("+15550002002")
	expires := pinT0.Add(5 * time.Minute)
	must(t, db.SavePIN(t.Context(), n, pinHash("111111"), expires, pinSMS("pin2", n, pinT0)))
	for i := range 3 {
		got := usePIN(t, db, n, "222222", pinT0.Add(time.Second))
		wantPIN(t, fmt.Sprintf("wrong PIN %d", i+1), got, sms.PINWrong)
		if !got.Expires.Equal(expires) {
			t.Fatalf("Expires = %v, want %v", got.Expires, expires)
		}
	}
	got := usePIN(t, db, n, "111111", pinT0.Add(2*time.Second))
	wantPIN(t, "right PIN after three wrong ones", got, sms.PINSpent)
	if !got.Expires.Equal(expires) {
		t.Fatalf("Expires = %v, want %v", got.Expires, expires)
	}
	wantPIN(t, "spent PIN once expired", usePIN(t, db, n, "111111", expires), sms.PINAbsent)
}

// A PIN works until its expiry, not at it; an expired one is gone.
func testPINExpires(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n, other = auth.Number("+15550002003"), auth.Number("+15550002004")
	expires := pinT0.Add(5 * time.Minute)
	must(t, db.SavePIN(ctx, n, pinHash("333333"), expires, pinSMS("pin3", n, pinT0)))
	wantPIN(t, "at expiry", usePIN(t, db, n, "333333", expires), sms.PINAbsent)
	wantPIN(t, "after expiry", usePIN(t, db, n, "333333", pinT0), sms.PINAbsent)

	// Saving another number's PIN after n's expired deletes n's: asked
	// again before its expiry (a clock that went back), it is gone.
	must(t, db.SavePIN(ctx, n, pinHash("444444"), expires, pinSMS("pin4", n, pinT0)))
	must(t, db.SavePIN(ctx, other, pinHash("555555"), expires.Add(time.Hour), pinSMS("pin5", other, expires)))
	wantPIN(t, "expired PIN after another number's was saved", usePIN(t, db, n, "444444", pinT0), sms.PINAbsent)
	wantPIN(t, "the other number's PIN", usePIN(t, db, other, "555555", expires), sms.PINMatched)
}

// A new PIN replaces the old one, tries and expiry included.
func testPINReplaced(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550002005")
	must(t, db.SavePIN(ctx, n, pinHash("666666"), pinT0.Add(5*time.Minute), pinSMS("pin6", n, pinT0)))
	for range 3 {
		wantPIN(t, "wrong PIN", usePIN(t, db, n, "000000", pinT0), sms.PINWrong)
	}
	later := pinT0.Add(2 * time.Minute)
	must(t, db.SavePIN(ctx, n, pinHash("777777"), later.Add(5*time.Minute), pinSMS("pin7", n, later)))
	wantPIN(t, "old PIN after a new one", usePIN(t, db, n, "666666", later), sms.PINWrong)
	got := usePIN(t, db, n, "777777", pinT0.Add(6*time.Minute))
	wantPIN(t, "new PIN, past the old one's expiry", got, sms.PINMatched)
	times, err := db.QueuedTimes(ctx, string(n), sms.PurposePIN, pinT0.Add(-time.Hour))
	must(t, err)
	if len(times) != 2 {
		t.Fatalf("QueuedTimes(pin) = %v, want two", times)
	}
}

// A PIN whose SMS cannot be queued is not saved either.
func testPINAtomicWithSMS(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n, other = auth.Number("+15550002006"), auth.Number("+15550002007")
	expires := pinT0.Add(5 * time.Minute)
	must(t, db.SavePIN(ctx, n, pinHash("888888"), expires, pinSMS("dup", n, pinT0)))
	if err := db.SavePIN(ctx, other, pinHash("999999"), expires, pinSMS("dup", other, pinT0)); err == nil {
		t.Fatal("SavePIN with a used SMS id succeeded")
	}
	wantPIN(t, "PIN whose SMS failed", usePIN(t, db, other, "999999", pinT0), sms.PINAbsent)
	if err := db.SavePIN(ctx, n, pinHash("123123"), expires, pinSMS("dup", n, pinT0)); err == nil {
		t.Fatal("SavePIN with a used SMS id succeeded")
	}
	wantPIN(t, "PIN kept after a failed replacement", usePIN(t, db, n, "888888", pinT0), sms.PINMatched)
	if err := db.SavePIN(ctx, n, nil, expires, pinSMS("nohash", n, pinT0)); err == nil {
		t.Fatal("SavePIN without a hash succeeded")
	}
}

// Of many requests with the right PIN at once, exactly one gets it.
func testPINConcurrentRight(t *testing.T, db *storage.DB) {
	const n = auth.Number("+15550002008")
	must(t, db.SavePIN(t.Context(), n, pinHash("246802"), pinT0.Add(5*time.Minute), pinSMS("pin8", n, pinT0)))
	results := countResults(t, db, n, 12, func(int) string { return "246802" })
	if results[sms.PINMatched] != 1 || results[sms.PINAbsent] != 11 {
		t.Fatalf("12 concurrent right PINs: %v, want one match", results)
	}
}

// Many wrong PINs at once use up exactly the tries; the rest are refused
// unchecked, the right one among them.
func testPINConcurrentWrong(t *testing.T, db *storage.DB) {
	const n = auth.Number("+15550002009")
	must(t, db.SavePIN(t.Context(), n, pinHash("135791"), pinT0.Add(5*time.Minute), pinSMS("pin9", n, pinT0)))
	results := countResults(t, db, n, 12, func(i int) string { return fmt.Sprintf("%06d", i) })
	if results[sms.PINWrong] != 3 || results[sms.PINSpent] != 9 {
		t.Fatalf("12 concurrent wrong PINs: %v, want 3 wrong and 9 refused", results)
	}
	wantPIN(t, "right PIN after", usePIN(t, db, n, "135791", pinT0), sms.PINSpent)
}

// countResults runs calls UsePIN at once for n and counts their results.
func countResults(t *testing.T, db *storage.DB, n auth.Number, calls int, pin func(i int) string) map[sms.PINResult]int {
	t.Helper()
	var mu sync.Mutex
	results := map[sms.PINResult]int{}
	runConcurrently(t, calls, func(i int) error {
		c, err := db.UsePIN(t.Context(), n, pinHash(pin(i)), 3, pinT0.Add(time.Minute))
		mu.Lock()
		results[c.Result]++
		mu.Unlock()
		return err
	})
	return results
}
