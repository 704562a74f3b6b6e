package storage_test

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"dialtone/storage"
	"dialtone/storage/storetest"
)

// sqliteAt returns a function that opens the embedded store in dir.
func sqliteAt(dir string) func() (*storage.DB, error) {
	return func() (*storage.DB, error) { return storage.Open(context.Background(), "", dir) }
}

func TestSQLite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *storage.DB { return mustOpen(t, "sqlite", sqliteAt(t.TempDir())) })
}

func TestSQLiteReopen(t *testing.T) {
	storetest.RunReopen(t, func(t *testing.T) func() (*storage.DB, error) {
		return sqliteAt(filepath.Join(t.TempDir(), "data"))
	})
}

// The embedded database is DATA_DIR/dialtone.db, in a directory only the
// server's user can enter, in WAL mode.
func TestSQLiteFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "data")
	mustOpen(t, "sqlite", sqliteAt(dir)).Close()
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o700 {
		t.Errorf("data dir mode %o, want 700", perm)
	}
	raw, err := sql.Open("sqlite", filepath.Join(dir, "dialtone.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var mode string
	if err := raw.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
}
