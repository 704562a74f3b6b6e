package storetest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/sms"
	"dialtone/storage"
)

// clusterTests are the contract of what the nodes of a cluster share
// through one store (auth.SharedLimits, shared secrets, the SMS claim);
// Run runs them on one instance. RunReopen runs runTwoNodes, the same on two
// instances of one database.
var clusterTests = []struct {
	name string
	fn   func(t *testing.T, db *storage.DB)
}{
	{"SharedLimits", testSharedLimits},
	{"SharedLimitsConcurrent", testSharedLimitsConcurrent},
	{"SharedSecret", testSharedSecret},
	{"ClaimDueSMS", testClaimDueSMS},
}

var limitT0 = time.Date(2032, 5, 6, 7, 8, 9, 123456000, time.UTC)

// counter is an UpdateLimit function that adds one to a decimal count,
// holds the key until held when the count reaches 3, and keeps it a minute.
func counter(got *int, held time.Time) func([]byte) (auth.LimitState, error) {
	return func(state []byte) (auth.LimitState, error) {
		n, _ := strconv.Atoi(string(state))
		n++
		*got = n
		st := auth.LimitState{State: []byte(strconv.Itoa(n)), Expires: limitT0.Add(time.Minute)}
		if n >= 3 {
			st.Held = held
		}
		return st, nil
	}
}

func testSharedLimits(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	var n int
	until := limitT0.Add(30 * time.Second)
	for i := 1; i <= 3; i++ {
		must(t, db.UpdateLimit(ctx, "k1", "a", limitT0, counter(&n, until)))
		if n != i {
			t.Fatalf("count %d after %d updates", n, i)
		}
	}
	// Kinds and keys are apart.
	must(t, db.UpdateLimit(ctx, "k2", "a", limitT0, counter(&n, until)))
	must(t, db.UpdateLimit(ctx, "k1", "b", limitT0, counter(&n, until)))
	if n != 1 {
		t.Fatalf("another key's count = %d, want 1", n)
	}
	held, err := db.HeldLimits(ctx, "k1", limitT0, 10)
	must(t, err)
	if len(held) != 1 || !held["a"].Equal(until) {
		t.Fatalf("held = %v, want a until %v", held, until)
	}
	if held, _ := db.HeldLimits(ctx, "k1", until, 10); len(held) != 0 {
		t.Fatalf("held at its end = %v", held)
	}
	// An expired state reads as none.
	must(t, db.UpdateLimit(ctx, "k1", "b", limitT0.Add(time.Minute), counter(&n, until)))
	if n != 1 {
		t.Fatalf("count after expiry = %d, want 1", n)
	}
	// A nil state removes the key; an error from fn stores nothing.
	must(t, db.UpdateLimit(ctx, "k1", "b", limitT0, func([]byte) (auth.LimitState, error) { return auth.LimitState{}, nil }))
	boom := fmt.Errorf("boom")
	if err := db.UpdateLimit(ctx, "k1", "b", limitT0, func(s []byte) (auth.LimitState, error) {
		if s != nil {
			t.Errorf("removed key has state %q", s)
		}
		return auth.LimitState{State: []byte("x"), Expires: limitT0.Add(time.Hour)}, boom
	}); err == nil {
		t.Fatal("fn's error not returned")
	}
	must(t, db.UpdateLimit(ctx, "k1", "b", limitT0, counter(&n, until)))
	if n != 1 {
		t.Fatalf("count after remove = %d, want 1", n)
	}
	// Clear and prune.
	must(t, db.ClearLimits(ctx, "k1", []string{"a", "zz"}))
	if held, _ := db.HeldLimits(ctx, "k1", limitT0, 10); len(held) != 0 {
		t.Fatalf("held after clear = %v", held)
	}
	must(t, db.UpdateLimit(ctx, "k2", "a", limitT0, counter(&n, until)))
	if n != 2 {
		t.Fatalf("clearing k1 a touched k2 a: %d", n)
	}
	must(t, db.PruneLimits(ctx, limitT0.Add(time.Minute)))
	must(t, db.UpdateLimit(ctx, "k2", "a", limitT0, counter(&n, until)))
	if n != 1 {
		t.Fatalf("count after prune = %d, want 1", n)
	}
}

// Updates of one key from many goroutines at once all count.
func testSharedLimitsConcurrent(t *testing.T, db *storage.DB) {
	const workers, each = 8, 5
	runConcurrently(t, workers, func(int) error {
		for range each {
			var n int
			if err := db.UpdateLimit(t.Context(), "c", "one", limitT0, counter(&n, time.Time{})); err != nil {
				return err
			}
		}
		return nil
	})
	var n int
	must(t, db.UpdateLimit(t.Context(), "c", "one", limitT0, counter(&n, time.Time{})))
	if n != workers*each+1 {
		t.Fatalf("count = %d, want %d", n, workers*each+1)
	}
}

func testSharedSecret(t *testing.T, db *storage.DB) {
	first, err := db.SharedSecret(t.Context(), "key", []byte("first"))
	must(t, err)
	again, err := db.SharedSecret(t.Context(), "key", []byte("second"))
	must(t, err)
	if string(first) != "first" || string(again) != "first" {
		t.Fatalf("secrets = %q %q, want the first both times", first, again)
	}
	other, err := db.SharedSecret(t.Context(), "other", []byte("o"))
	must(t, err)
	if string(other) != "o" {
		t.Fatalf("another name = %q", other)
	}
	if _, err := db.SharedSecret(t.Context(), "empty", nil); err == nil {
		t.Fatal("an empty secret was stored")
	}
}

func testClaimDueSMS(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	for i, next := range []time.Duration{0, time.Second, time.Hour} {
		p := queuedSMS(fmt.Sprint("c", i), "+15550000140", smsT0.Add(next))
		p.Created = smsT0.Add(time.Duration(i) * time.Millisecond)
		must(t, db.EnqueueSMS(ctx, p))
	}
	lease := smsT0.Add(time.Minute)
	got, err := db.ClaimDueSMS(ctx, "n1", smsT0.Add(time.Second), lease, 10)
	must(t, err)
	if ids := fmt.Sprint(pendingIDs(got)); ids != "[c0 c1]" {
		t.Fatalf("claimed %s, want [c0 c1]", ids)
	}
	if !bytes.Equal(got[0].Body, []byte("text of c0")) {
		t.Fatalf("claimed body %q", got[0].Body)
	}
	// Claimed ones are not due again before the lease ends.
	again, err := db.ClaimDueSMS(ctx, "n2", smsT0.Add(30*time.Second), lease, 10)
	must(t, err)
	if len(again) != 0 {
		t.Fatalf("claimed again within the lease: %v", pendingIDs(again))
	}
	due, err := db.DueSMS(ctx, lease, 10)
	must(t, err)
	if len(due) != 2 {
		t.Fatalf("due at the lease's end: %v", pendingIDs(due))
	}
	// Another node's release leaves n1's claims alone; n1's own (it
	// started again) makes them due at once.
	must(t, db.ReleaseClaims(ctx, "n2", smsT0.Add(31*time.Second)))
	if due, err := db.DueSMS(ctx, smsT0.Add(31*time.Second), 10); err != nil || len(due) != 0 {
		t.Fatalf("due after another node's release: %v %v", pendingIDs(due), err)
	}
	must(t, db.ReleaseClaims(ctx, "n1", smsT0.Add(32*time.Second)))
	if due, err := db.DueSMS(ctx, smsT0.Add(32*time.Second), 10); err != nil || fmt.Sprint(pendingIDs(due)) != "[c0 c1]" {
		t.Fatalf("due after n1's release: %v %v", pendingIDs(due), err)
	}
	// A failed attempt's retry time is its own: no release moves it.
	again, err = db.ClaimDueSMS(ctx, "n1", smsT0.Add(33*time.Second), lease, 10)
	must(t, err)
	must(t, db.RetrySMS(ctx, again[0].ID, 1, smsT0.Add(40*time.Minute), "gateway down"))
	must(t, db.ReleaseClaims(ctx, "n1", smsT0.Add(34*time.Second)))
	if due, err := db.DueSMS(ctx, smsT0.Add(34*time.Second), 10); err != nil || fmt.Sprint(pendingIDs(due)) != "["+again[1].ID+"]" {
		t.Fatalf("due after a retry and a release: %v %v", pendingIDs(due), err)
	}
	// limit bounds a claim.
	one, err := db.ClaimDueSMS(ctx, "n1", smsT0.Add(2*time.Hour), smsT0.Add(3*time.Hour), 1)
	must(t, err)
	if len(one) != 1 {
		t.Fatalf("claimed %d with limit 1", len(one))
	}
}

// runTwoNodes checks, on two instances of one database (two pools, as two
// nodes of a cluster have), that a limit counted on one is seen by the
// other, a login lockout set on one holds on the other, each queued SMS is
// sent once by two senders racing, and a job under RunExclusive runs on
// one node at a time (on PostgreSQL; SQLite has one node).
func runTwoNodes(t *testing.T, open func() (*storage.DB, error)) {
	a, err := open()
	must(t, err)
	defer a.Close()
	b, err := open()
	must(t, err)
	defer b.Close()
	ctx := t.Context()

	var n int
	must(t, a.UpdateLimit(ctx, "k", "x", limitT0, counter(&n, time.Time{})))
	must(t, b.UpdateLimit(ctx, "k", "x", limitT0, counter(&n, time.Time{})))
	if n != 2 {
		t.Fatalf("count on b after one on a = %d, want 2", n)
	}

	// A lock made by failures on node A holds on node B after its sync,
	// and a success on B clears the count for both.
	la, lb := auth.NewLockout(3), auth.NewLockout(3)
	la.Share(a, "login number", 10*time.Second)
	lb.Share(b, "login number", 10*time.Second)
	const num = auth.Number("+15550000150")
	la.Fail(num)
	lb.Fail(num)
	if lb.Locked(num) != 0 {
		t.Fatal("locked after two failures of three")
	}
	la.Fail(num)
	if la.Locked(num) <= 0 {
		t.Fatal("the node that counted the third failure does not lock")
	}
	lb.Sync(ctx)
	if d := lb.Locked(num); d <= 50*time.Second || d > time.Minute {
		t.Fatalf("locked on the other node for %v, want about a minute", d)
	}
	const other = auth.Number("+15550000151")
	la.Fail(other)
	la.Fail(other)
	lb.Succeed(other)
	lb.Sync(ctx)
	la.Fail(other)
	if la.Locked(other) != 0 {
		t.Fatal("a success on another node did not reset the failures")
	}

	testClaimRace(t, a, b)
	if a.Driver() == "postgres" {
		testExclusive(t, a, b)
	}
}

// countingGateway counts the sends of each message.
type countingGateway struct {
	mu   sync.Mutex
	sent map[string]int
}

func (g *countingGateway) Send(_ context.Context, m sms.SMS) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sent[m.ID]++
	return nil
}

func testClaimRace(t *testing.T, a, b *storage.DB) {
	const msgs = 60
	for i := range msgs {
		must(t, a.EnqueueSMS(t.Context(), queuedSMS(fmt.Sprint("race", i), "+15550000160", smsT0)))
	}
	gw := &countingGateway{sent: map[string]int{}}
	now := func() time.Time { return smsT0.Add(time.Second) }
	senders := []*sms.Sender{{Outbox: a, Gateway: gw, Batch: 7, Now: now}, {Outbox: b, Gateway: gw, Batch: 7, Now: now},
		{Outbox: a, Gateway: gw, Batch: 5, Now: now}, {Outbox: b, Gateway: gw, Batch: 3, Now: now}}
	runConcurrently(t, len(senders), func(i int) error { return senders[i].Flush(t.Context()) })
	for i := range msgs {
		if c := gw.sent[fmt.Sprint("race", i)]; c != 1 {
			t.Fatalf("race%d sent %d times, want once", i, c)
		}
	}
	if left, err := a.DueSMS(t.Context(), smsT0.Add(24*time.Hour), 10); err != nil || len(left) != 0 {
		t.Fatalf("left in the outbox: %v %v", pendingIDs(left), err)
	}
}

// testExclusive runs one job on both nodes: one runs it, the other only
// after the first stopped.
func testExclusive(t *testing.T, a, b *storage.DB) {
	var running, runs atomic.Int32
	started := make(chan string, 2)
	job := func(node string) func(context.Context) {
		return func(ctx context.Context) {
			if running.Add(1) != 1 {
				t.Errorf("job runs on two nodes at once")
			}
			runs.Add(1)
			started <- node
			<-ctx.Done()
			running.Add(-1)
		}
	}
	ctxA, stopA := context.WithCancel(t.Context())
	ctxB, stopB := context.WithCancel(t.Context())
	defer stopB()
	var wg sync.WaitGroup
	wg.Go(func() { a.RunExclusive(ctxA, "test job", 20*time.Millisecond, job("a")) })
	first := <-started
	wg.Go(func() { b.RunExclusive(ctxB, "test job", 20*time.Millisecond, job("b")) })
	// b keeps trying every 20 ms; a lease held by a keeps it out. A
	// second unrelated job on b runs meanwhile: the lock is per name.
	other := make(chan struct{})
	wg.Go(func() {
		b.RunExclusive(ctxB, "another job", 20*time.Millisecond, func(context.Context) { close(other) })
	})
	select {
	case <-other:
	case <-time.After(10 * time.Second):
		t.Fatal("another job's lock was not free")
	}
	if first != "a" || runs.Load() != 1 {
		t.Fatalf("first = %s, runs = %d", first, runs.Load())
	}
	stopA() // node a stops: b takes the job over
	select {
	case n := <-started:
		if n != "b" {
			t.Fatalf("took over: %s", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the other node did not take the job over")
	}
	stopB()
	wg.Wait()
	if runs.Load() != 2 {
		t.Fatalf("runs = %d, want 2", runs.Load())
	}
}
