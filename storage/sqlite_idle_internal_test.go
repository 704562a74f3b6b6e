package storage

import (
	"context"
	"database/sql"
	"testing"
	"time"
)

// TestSQLiteIdleConnectionsClose: the connections a burst opened close
// once unused for the idle time (their page caches are the driver's
// memory, not Go's), and the store still answers after.
func TestSQLiteIdleConnectionsClose(t *testing.T) {
	ctx := context.Background()
	b, err := openSQLite(ctx, t.TempDir(), Options{sqliteIdle: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	db := b.(*sqliteDB).db
	// A burst: 8 connections in use at once, then all idle.
	conns := make([]*sql.Conn, 8)
	for i := range conns {
		if conns[i], err = db.Conn(ctx); err != nil {
			t.Fatal(err)
		}
		if err := conns[i].PingContext(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	if s := db.Stats(); s.Idle < len(conns) {
		t.Fatalf("after the burst: %d idle connections, want %d", s.Idle, len(conns))
	}
	deadline := time.Now().Add(10 * time.Second)
	for db.Stats().OpenConnections > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle connections still open after 10 s: %+v", db.Stats())
		}
		time.Sleep(20 * time.Millisecond) // polling, bounded by the deadline
	}
	if s := db.Stats(); s.MaxIdleTimeClosed < int64(len(conns)) {
		t.Errorf("%d connections closed for idleness, want %d", s.MaxIdleTimeClosed, len(conns))
	}
	var one int
	if err := b.queryRow(ctx, `SELECT 1`, nil, &one); err != nil || one != 1 {
		t.Fatalf("query after the idle connections closed: %d, %v", one, err)
	}
}
