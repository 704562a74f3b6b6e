package storage

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"dialtone/internal/pgtest"
)

func TestStatementTimeout(t *testing.T) {
	for in, want := range map[time.Duration]time.Duration{
		0:                0,
		time.Second:      2 * time.Second,
		5 * time.Second:  6 * time.Second,
		30 * time.Second: 36 * time.Second,
	} {
		if got := statementTimeout(in); got != want {
			t.Errorf("statementTimeout(%v) = %v, want %v", in, got, want)
		}
	}
}

// PostgreSQL: the pool has XMPPD_DATABASE_MAX_CONNS connections, and a
// statement that runs past the statement timeout is ended by the server,
// but a migration is not (it may take long, or wait for another
// process's).
func TestPostgresOptions(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t, pgtest.URL(t))
	db, err := OpenWith(ctx, url, "", Options{MaxConns: 3, StoreTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := db.b.(*postgresDB).pool.Config().MaxConns; got != 3 {
		t.Errorf("pool MaxConns = %d, want 3", got)
	}
	var setting string
	if err := db.b.queryRow(ctx, "SHOW statement_timeout", nil, &setting); err != nil || setting != "1100ms" {
		t.Errorf("statement_timeout = %q, %v; want 1100ms", setting, err)
	}
	start := time.Now()
	_, err = db.b.exec(ctx, "SELECT pg_sleep(30)")
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "57014" { // query_canceled
		t.Errorf("a 30 s statement: %v after %v, want SQLSTATE 57014", err, time.Since(start))
	}
	slow := append(migrations[:len(migrations):len(migrations)], migration{version: 1 << 20, name: "slow", stmts: []string{"SELECT pg_sleep(1.5)"}})
	if err := db.migrateSteps(ctx, slow); err != nil {
		t.Errorf("a migration longer than the statement timeout: %v", err)
	}
}

// SQLite: a writer waits for a lock that another process holds until its
// context ends, and one without a deadline a little longer than the store
// timeout: then SQLITE_BUSY.
func TestSQLiteLockedElsewhere(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := OpenWith(ctx, "", dir, Options{StoreTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	other, err := sql.Open("sqlite", filepath.Join(dir, sqliteFile))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, "ROLLBACK")

	write := func(ctx context.Context) (time.Duration, error) {
		start := time.Now()
		err := db.b.inTx(ctx, func(q querier) error {
			_, err := q.exec(ctx, `INSERT INTO blocklist (owner, jid) VALUES ('+15550001111', 'x@example.com')`)
			return err
		})
		return time.Since(start), err
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if took, err := write(cctx); !errors.Is(err, context.DeadlineExceeded) || took > 5*time.Second {
		t.Errorf("write with a 50 ms deadline: %v after %v, want DeadlineExceeded soon", err, took)
	}
	// No deadline: busy_timeout, 1.1 s.
	if took, err := write(ctx); err == nil || took < time.Second || took > 10*time.Second {
		t.Errorf("write without a deadline: %v after %v, want SQLITE_BUSY after about 1.1 s", err, took)
	}
	var n int
	if err := db.b.queryRow(ctx, "SELECT COUNT(*) FROM blocklist", nil, &n); err != nil || n != 0 {
		t.Errorf("read beside the lock: %d, %v; want 0 rows, no error (WAL)", n, err)
	}
}
