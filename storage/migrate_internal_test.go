package storage

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"dialtone/archive"
	"dialtone/auth"
	"dialtone/internal/pgtest"
)

// engine opens an empty database of one engine.
type engine struct {
	name string
	open func(t *testing.T) (backend, error)
}

// engines are both engines.
var engines = []engine{
	{"sqlite", func(t *testing.T) (backend, error) { return openSQLite(t.Context(), t.TempDir(), Options{}) }},
	{"postgres", func(t *testing.T) (backend, error) {
		return openPostgres(t.Context(), pgtest.NewDatabase(t, pgtest.URL(t)), Options{})
	}},
}

// at opens an empty database of the engine with the first n migrations
// applied (closed at the end of the test).
func (e engine) at(t *testing.T, n int) *DB {
	t.Helper()
	b, err := e.open(t)
	if err != nil {
		t.Fatal(err)
	}
	db := &DB{b: b, now: time.Now}
	t.Cleanup(func() { db.Close() })
	if err := db.migrateSteps(context.Background(), migrations[:n]); err != nil {
		t.Fatal(err)
	}
	return db
}

// Upgrading to migration 16 moves an archive of a row per message into
// chunks: every message reads back as it was, pages and filters included,
// across the conversion's pages.
func TestMigrationChunksArchive(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine.name, func(t *testing.T) {
			t.Parallel()
			db := engine.at(t, 15)
			ctx := context.Background()
			const n = 10_050 // more than one page of the conversion
			var want []int64
			err := db.b.inTx(ctx, func(q querier) error {
				for i := range n {
					owner := []string{"+15550006001", "+15550006002"}[i%2]
					with := fmt.Sprintf("+1555000700%d@example.com", i%3)
					if owner == "+15550006001" {
						want = append(want, int64(1000+i))
					}
					if _, err := q.exec(ctx, `INSERT INTO archive (owner, id, with_jid, with_resource, stanza) VALUES (?, ?, ?, ?, ?)`,
						owner, 1000+i, with, fmt.Sprint("r", i%5), fmt.Appendf(nil, "<message><body>%d</body></message>", i)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := db.migrate(ctx); err != nil {
				t.Fatal(err)
			}
			var got []archive.Message
			q := archive.Query{Owner: "+15550006001", Max: 250}
			for range n {
				page, more, err := db.QueryArchive(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, page...)
				if !more {
					break
				}
				q.After = page[len(page)-1].ID
			}
			ids := make([]int64, len(got))
			for i, m := range got {
				ids[i] = m.ID
			}
			if !slices.Equal(ids, want) {
				t.Fatalf("after the upgrade %d messages, want %d (first %v)", len(ids), len(want), ids[:min(5, len(ids))])
			}
			m := got[7] // message 14
			if m.With != "+15550007002@example.com" || m.WithResource != "r4" || string(m.Stanza) != "<message><body>14</body></message>" {
				t.Fatalf("message 14 read back as %+v", m)
			}
			if _, err := db.b.exec(ctx, `SELECT 1 FROM archive`); err == nil {
				t.Fatal("the old archive table is still there")
			}
		})
	}
}

// Upgrading to migration 4 marks the passwords of the accounts already
// there as delivered: one printed by xmppctl left no trace, and a notice
// must not replace a password someone may hold.
func TestMigrationMarksPasswordsDelivered(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine.name, func(t *testing.T) {
			t.Parallel()
			db := engine.at(t, 3)
			ctx := context.Background()
			at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
			for _, n := range []string{"+15550005001", "+15550005002"} {
				if _, err := db.b.exec(ctx, `INSERT INTO accounts (number, state, created, touched, generation,
					sha1_iterations, sha256_iterations) VALUES (?, 'unclaimed', ?, ?, 1, 4096, 4096)`, n, at, at); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := db.b.exec(ctx, `UPDATE accounts SET password_noticed = ? WHERE number = '+15550005002'`, at); err != nil {
				t.Fatal(err)
			}
			if err := db.migrate(ctx); err != nil {
				t.Fatal(err)
			}
			for n, want := range map[auth.Number]bool{"+15550005001": false, "+15550005002": true} {
				r, err := db.NoticeReceiver(ctx, n)
				if err != nil || !r.PasswordDelivered || r.FirstNoticed != want {
					t.Errorf("%s after the upgrade: %+v %v, want delivered, first noticed %v", n, r, err, want)
				}
			}
			if a, err := db.Account(ctx, "+15550005001"); err != nil || a.Pending.SHA256.StoredKey != nil {
				t.Errorf("account after the upgrade %+v %v, want none pending", a, err)
			}
		})
	}
}
