package account_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/account"
	"dialtone/auth"
	"dialtone/internal/pgtest"
	"dialtone/offline"
	"dialtone/sms"
	"dialtone/storage"
)

// TestMain runs the PostgreSQL cluster of the tests (internal/pgtest).
func TestMain(m *testing.M) { pgtest.Main(m) }

// groupFixture is a Group on a real store, as the daemon builds it: a
// claimed receiver, notices with a window.
type groupFixture struct {
	db     *storage.DB
	keeper *account.Offline
	group  *account.Group
	to     auth.Number
	from   jid.JID
}

func newGroupFixture(tb testing.TB, dbURL string) *groupFixture {
	ctx := context.Background()
	db, err := storage.Open(ctx, dbURL, tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	f := &groupFixture{db: db, to: "+821033334444", from: jid.MustParse("+821011112222@localhost/a")}
	if _, err := db.SetCredentials(ctx, f.to, auth.Credentials{}); err != nil {
		tb.Fatal(err)
	}
	if err := db.RecordLogin(ctx, f.to, time.Now()); err != nil {
		tb.Fatal(err)
	}
	notices := &sms.Notices{Domain: "localhost", Store: db, Window: 10 * time.Minute, PerDay: 10,
		NewNumbersPerSenderDay: 20, StoredNewNumbersPerSenderDay: 50}
	f.keeper = &account.Offline{Domain: "localhost", Store: db, Notices: notices, StoreTimeout: 10 * time.Second}
	f.group = &account.Group{Offline: f.keeper, Notices: notices,
		InTx: func(ctx context.Context, fn func(tx account.TxStore) error) error {
			return db.InTx(ctx, func(tx *storage.DB) error { return fn(tx) })
		}}
	gctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); f.group.Run(gctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	return f
}

func (f *groupFixture) message(i int) account.Message {
	return account.Message{Message: offline.Message{Owner: string(f.to), From: f.from.String(),
		Stanza: []byte("<message type='chat'><body>a message of some size, like a chat line typed on a phone</body></message>")},
		From: f.from, Body: "a message"}
}

// BenchmarkKeep is the store before groups: one transaction per
// message, the sender waiting for each.
func BenchmarkKeep(b *testing.B) {
	for _, store := range benchStores(b) {
		b.Run(store.name, func(b *testing.B) {
			f := newGroupFixture(b, store.url)
			ctx := context.Background()
			cpu := cpuMeter(b)
			for i := 0; b.Loop(); i++ {
				if _, err := f.keeper.Keep(ctx, f.message(i), 0); err != nil {
					b.Fatal(err)
				}
			}
			cpu()
		})
	}
}

// BenchmarkGroupKeep is one sender pipelining its messages to one
// receiver through a Group, then waiting for the last commit.
func BenchmarkGroupKeep(b *testing.B) {
	for _, store := range benchStores(b) {
		b.Run(store.name, func(b *testing.B) {
			f := newGroupFixture(b, store.url)
			ctx := context.Background()
			var wg sync.WaitGroup
			cpu := cpuMeter(b)
			b.ResetTimer()
			for i := range b.N {
				wg.Add(1)
				f.group.Keep(ctx, f.message(i), 0, func(_ account.Kept, err error) {
					if err != nil {
						b.Error(err)
					}
					wg.Done()
				})
			}
			wg.Wait()
			cpu()
			b.ReportMetric(float64(f.group.Stored.Load())/float64(max(1, f.group.Commits.Load())), "msgs/commit")
		})
	}
}

type benchStore struct{ name, url string }

// benchStores: SQLite, and PostgreSQL when DIALTONE_BENCH_PG is set.
func benchStores(tb testing.TB) []benchStore {
	s := []benchStore{{"sqlite", ""}}
	if os.Getenv("DIALTONE_BENCH_PG") != "" {
		s = append(s, benchStore{"postgres", pgtest.NewDatabase(tb, pgtest.URL(tb))})
	}
	return s
}

// cpuMeter reports the process's CPU time per op (the machine is shared:
// wall time says little) when the returned func is called.
func cpuMeter(b *testing.B) func() {
	t0 := cpuTime()
	return func() { b.ReportMetric(float64((cpuTime()-t0).Microseconds())/float64(b.N), "cpu-µs/op") }
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// A group keeps what it is handed, in order, each sender told after the
// commit; a receiver whose notice lock someone else holds waits for it
// (outside any transaction); after Run stops, what was queued is written
// and what comes later is refused.
func TestGroup(t *testing.T) {
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			url := ""
			if store == "postgres" {
				url = pgtest.NewDatabase(t, pgtest.URL(t)) // skipped with -short
			}
			f := newGroupFixture(t, url)
			ctx := t.Context()
			type res struct {
				k   account.Kept
				err error
			}
			keep := func(m account.Message, check func()) <-chan res {
				ch := make(chan res, 1)
				f.group.Keep(ctx, m, 0, func(k account.Kept, err error) {
					if check != nil {
						check()
					}
					ch <- res{k, err}
				})
				return ch
			}
			var chans []<-chan res
			for i := range 50 {
				chans = append(chans, keep(f.message(i), nil))
			}
			var last int64
			for i, ch := range chans {
				r := <-ch
				if r.err != nil || r.k.ID <= last {
					t.Fatalf("message %d: %+v %v (previous id %d)", i, r.k, r.err, last)
				}
				last = r.k.ID
			}
			if n, err := f.db.CountOffline(ctx, string(f.to)); err != nil || n != 50 {
				t.Fatalf("%d stored (%v), want 50", n, err)
			}

			// Someone else holds the receiver's lock: the message waits.
			other := f.group.Notices.Hold()
			if err := other.Take(ctx, string(f.to), "", true); err != nil {
				t.Fatal(err)
			}
			var released atomic.Bool
			ch := keep(f.message(50), func() {
				if !released.Load() {
					t.Error("kept while another held the receiver's lock")
				}
			})
			released.Store(true)
			other.Release()
			if r := <-ch; r.err != nil || r.k.ID <= last {
				t.Fatalf("after the lock: %+v %v", r.k, r.err)
			}
		})
	}
}

// What a group that fails to commit held is reported to every sender
// in it, and nothing of it is stored.
func TestGroupStoreDown(t *testing.T) {
	f := newGroupFixture(t, "")
	boom := errors.New("the store is gone")
	f.group.InTx = func(ctx context.Context, fn func(tx account.TxStore) error) error {
		err := f.db.InTx(ctx, func(tx *storage.DB) error { return fn(tx) })
		if err != nil {
			return err
		}
		return boom // as a failed commit: the caller must treat it so
	}
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range 10 {
		wg.Add(1)
		f.group.Keep(t.Context(), f.message(i), 0, func(k account.Kept, err error) {
			defer wg.Done()
			if errors.Is(err, boom) && k.ID == 0 {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() != 10 {
		t.Fatalf("%d of 10 senders told of the failure", failed.Load())
	}
}
