package storage_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"dialtone/auth"
	"dialtone/internal/datadir/datadirtest"
)

// TestSQLiteFileModes: the database and the -wal and -shm files SQLite
// makes beside it hold SCRAM keys and message bodies; they are 0600
// under any umask, in an existing data dir that others may enter (SPEC.md
// "Accounts"). Not parallel: the umask is the process's.
func TestSQLiteFileModes(t *testing.T) {
	datadirtest.PermissiveUmask(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sqliteFiles := []string{"dialtone.db", "dialtone.db-shm", "dialtone.db-wal"}
	db := mustOpen(t, "sqlite", sqliteAt(dir))
	creds, err := auth.NewCredentials("a-password-123")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SetCredentials(context.Background(), "+821012345678", creds); err != nil {
		t.Fatal(err)
	}
	// While the store is open SQLite keeps its -wal and -shm files.
	datadirtest.WantPrivate(t, "new store", datadirtest.Modes(t, dir), sqliteFiles...)
	db.Close()

	// Files that an earlier version left 0644 are narrowed at the next
	// open.
	for _, name := range []string{"dialtone.db", "dialtone.db-wal"} {
		p := filepath.Join(dir, name)
		if f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			f.Close()
		}
		if err := os.Chmod(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	db = mustOpen(t, "sqlite", sqliteAt(dir))
	if _, err := db.Account(context.Background(), "+821012345678"); err != nil {
		t.Fatal(err)
	}
	datadirtest.WantPrivate(t, "reopened store", datadirtest.Modes(t, dir), sqliteFiles...)
	db.Close()
	datadirtest.WantDirMode(t, dir, 0o755) // the operator's dir, left alone
}
