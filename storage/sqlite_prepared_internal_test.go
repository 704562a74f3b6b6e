package storage

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// TestSQLitePreparedStatements: statements outside transactions are
// prepared once and reused from concurrent callers (the login path's
// reads), at most maxPrepared of them; past that, and for SQL SQLite
// refuses, queries run unprepared, with the same results and errors.
func TestSQLitePreparedStatements(t *testing.T) {
	ctx := context.Background()
	b, err := openSQLite(ctx, t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	p := b.(*sqliteDB).sqliteConn.r.(*preparedDB)
	if _, err := b.exec(ctx, `CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := range 32 {
		wg.Go(func() {
			for i := range 20 {
				k := w*100 + i
				if _, err := b.exec(ctx, `INSERT INTO t (k, v) VALUES (?, ?)`, k, fmt.Sprint("v", k)); err != nil {
					errs <- err
					return
				}
				var v string
				if err := b.queryRow(ctx, `SELECT v FROM t WHERE k = ?`, []any{k}, &v); err != nil || v != fmt.Sprint("v", k) {
					errs <- fmt.Errorf("row %d: %q, %v", k, v, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := p.n.Load(); n != 3 {
		t.Errorf("%d statements prepared, want 3 (create, insert, select)", n)
	}
	for i := range maxPrepared + 10 {
		var got int
		if err := b.queryRow(ctx, fmt.Sprintf(`SELECT %d + ?`, i), []any{1}, &got); err != nil || got != i+1 {
			t.Fatalf("query %d: %d, %v", i, got, err)
		}
	}
	if n := p.n.Load(); n != maxPrepared {
		t.Errorf("%d statements prepared, want the bound %d", n, maxPrepared)
	}
	if _, err := b.exec(ctx, `INSERT INTO nosuch VALUES (1)`); err == nil {
		t.Error("a statement on a missing table: no error")
	}
	var n int
	if err := b.queryRow(ctx, `SELECT count(*) FROM t`, nil, &n); err != nil || n != 32*20 {
		t.Errorf("count %d, %v", n, err)
	}
}
