package storage

import (
	"context"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/internal/pgtest"
)

// Upgrading to migration 4 marks the passwords of the accounts already
// there as delivered: one printed by xmppctl left no trace, and a notice
// must not replace a password someone may hold.
func TestMigrationMarksPasswordsDelivered(t *testing.T) {
	for _, engine := range []struct {
		name string
		open func(t *testing.T) (backend, error)
	}{
		{"sqlite", func(t *testing.T) (backend, error) { return openSQLite(t.Context(), t.TempDir(), Options{}) }},
		{"postgres", func(t *testing.T) (backend, error) {
			return openPostgres(t.Context(), pgtest.NewDatabase(t, pgtest.URL(t)), Options{})
		}},
	} {
		t.Run(engine.name, func(t *testing.T) {
			t.Parallel()
			b, err := engine.open(t)
			if err != nil {
				t.Fatal(err)
			}
			db := &DB{b: b, now: time.Now}
			defer db.Close()
			ctx := context.Background()
			if err := db.migrateSteps(ctx, migrations[:3]); err != nil {
				t.Fatal(err)
			}
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
