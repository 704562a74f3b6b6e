package storage_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"dialtone/archive"
	"dialtone/internal/pgtest"
	"dialtone/storage"
)

// archiveSize is the archive the query benchmarks read: one account with
// a million messages (the goal: its newest page in under 20 ms).
const archiveSize = 1_000_000

// fillArchive stores archiveSize messages of owner, going round parties
// parties, with bulk inserts of 10,000 a transaction: with 10 parties a
// conversation's messages fill whole chunks (a busy conversation), with
// 5,000 a chunk holds two (the sparse case: rows as many as messages
// nearly).
func fillArchive(b *testing.B, db *storage.DB, owner string, parties int) {
	start := time.Now()
	// A message a millisecond: a very busy account (a thousand messages
	// a second), for a forward read the worst case of its look-ahead.
	base := archive.FirstID(time.Now().Add(-24 * time.Hour))
	const batch = 10_000
	msgs := make([]archive.Message, batch)
	for done := 0; done < archiveSize; done += batch {
		for i := range msgs {
			n := done + i
			msgs[i] = archive.Message{Owner: owner, ID: base + int64(n)<<archive.CounterBits, With: fmt.Sprintf("+821055%06d@example.com", n%parties),
				Stanza: fmt.Appendf(nil, `<message type="chat" to="%s@localhost" from="x@example.com/r" id="m%d"><body>message number %d, of about a hundred bytes on the wire</body></message>`, owner, n, n)}
		}
		if err := db.AppendArchive(context.Background(), msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("%s: %d messages stored in %v", db.Driver(), archiveSize, time.Since(start).Round(time.Millisecond))
}

func benchArchiveLastPage(b *testing.B, open func(b *testing.B) *storage.DB, analyze func(db *storage.DB)) {
	if testing.Short() {
		b.Skip("builds a 1,000,000-message archive")
	}
	for _, parties := range []int{10, 5000} {
		b.Run(fmt.Sprintf("parties=%d", parties), func(b *testing.B) {
			db := open(b)
			defer db.Close()
			benchArchiveQueries(b, db, parties, analyze)
		})
	}
}

func benchArchiveQueries(b *testing.B, db *storage.DB, parties int, analyze func(db *storage.DB)) {
	const owner = "+821099990000"
	fillArchive(b, db, owner, parties)
	// The steady state: the planner has statistics of the table, as
	// autovacuum keeps them on a server that grew its archive over time.
	analyze(db)
	for _, bc := range []struct {
		name string
		q    archive.Query
	}{
		{"newest", archive.Query{Owner: owner, Max: 50, Last: true}},
		{"newest_with", archive.Query{Owner: owner, Max: 50, Last: true, With: "+821055000003@example.com"}},
		{"oldest", archive.Query{Owner: owner, Max: 50}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			run := func() time.Duration {
				t := time.Now()
				page, _, err := db.QueryArchive(context.Background(), bc.q)
				if err != nil || len(page) != 50 {
					b.Fatalf("%d messages, %v", len(page), err)
				}
				return time.Since(t)
			}
			run() // the first read after the bulk load sets PostgreSQL's hint bits
			var times []time.Duration
			for b.Loop() {
				times = append(times, run())
			}
			slices.Sort(times)
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(times[len(times)/2]), "p50-ms")
			b.ReportMetric(ms(times[len(times)*99/100]), "p99-ms")
			b.ReportMetric(ms(times[len(times)-1]), "max-ms")
		})
	}
}

func BenchmarkArchiveLastPageSQLite(b *testing.B) {
	benchArchiveLastPage(b, func(b *testing.B) *storage.DB {
		db, err := storage.Open(context.Background(), "", b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		return db
	}, func(*storage.DB) {})
}

func BenchmarkArchiveLastPagePostgres(b *testing.B) {
	var url string
	benchArchiveLastPage(b, func(b *testing.B) *storage.DB {
		url = pgtest.NewDatabase(b, pgtest.URL(b))
		db, err := storage.Open(context.Background(), url, "")
		if err != nil {
			b.Fatal(err)
		}
		return db
	}, func(*storage.DB) {
		conn, err := pgx.Connect(context.Background(), url)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "ANALYZE archive_chunks"); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkAppendArchive measures the archive writer's batches: a
// conversation between two accounts, both copies of each message (one op),
// 4,096 copies a batch (the write-behind queue's batch).
func BenchmarkAppendArchive(b *testing.B) {
	db, err := storage.Open(context.Background(), "", b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const batch = 4096
	msgs := make([]archive.Message, batch)
	// Bodies that differ, as a chat's do (compression gains less on them
	// than on one repeated text).
	rng := rand.New(rand.NewPCG(1, 2))
	bodies := []string{"Hello, this is a message of about a hundred bytes on the wire.", "are you coming tonight?",
		"I'll be there in ten minutes, the bus is late again", "ok", "Did you see the pictures from Saturday? Mina sent them",
		"네, 알겠습니다. 내일 뵙겠습니다!", "Can you call me back when you're free", "lol", "Meeting moved to 3pm, room 401",
		"Thanks!! 🎉", "The package arrived, thank you so much", "what time is it there?"}
	id := archive.FirstID(time.Now())
	b.ReportAllocs()
	for done := 0; b.Loop(); done++ {
		if done%(batch/2) == 0 && done > 0 {
			if err := db.AppendArchive(context.Background(), msgs); err != nil {
				b.Fatal(err)
			}
		}
		i := done % (batch / 2)
		id += 2
		st := fmt.Appendf(nil, `<message type="chat" to="+821033334444@localhost/b" from="+821011112222@localhost/a" id="%x"><body>%s (%d)</body><stanza-id xmlns="urn:xmpp:sid:0" by="+821033334444@localhost" id="%s"/></message>`,
			rng.Uint64(), bodies[rng.IntN(len(bodies))], rng.IntN(1000), archive.FormatID(id))
		msgs[2*i] = archive.Message{Owner: "+821011112222", ID: id, With: "+821033334444@localhost", WithResource: "b", Stanza: st}
		msgs[2*i+1] = archive.Message{Owner: "+821033334444", ID: id + 1, With: "+821011112222@localhost", WithResource: "a", Stanza: st}
	}
}
