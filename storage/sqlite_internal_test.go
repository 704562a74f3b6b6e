package storage

import (
	"context"
	"database/sql"
	"testing"
)

// TestSQLiteConnectionPragmas checks what every connection of the pool is
// opened with: the statement journal in memory (temp_store 2, see
// sqliteParams), foreign keys on, and WAL.
func TestSQLiteConnectionPragmas(t *testing.T) {
	ctx := context.Background()
	b, err := openSQLite(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	db := b.(*sqliteDB).db
	defer db.Close()
	// Several connections held at once, so that the pool opens each.
	var conns []*sql.Conn
	for range 3 {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		var temp, fk int
		var mode string
		if err := c.QueryRowContext(ctx, "PRAGMA temp_store").Scan(&temp); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if temp != 2 || fk != 1 || mode != "wal" {
			t.Errorf("connection %d: temp_store %d, foreign_keys %d, journal_mode %q; want 2, 1, wal", i, temp, fk, mode)
		}
		c.Close()
	}
}
