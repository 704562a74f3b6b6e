package storage

import (
	"context"
	"errors"
	"fmt"

	"dialtone/sms"
)

// InTx runs fn on a DB bound to one transaction, committed when fn
// returns nil and rolled back otherwise: many writes, one commit (the
// group commit of offline messages). Inside it, a store method that
// writes in a transaction of its own writes in a savepoint instead, so
// that its failure (offline.ErrFull, a refused or stale notice plan)
// undoes only its own writes; reads see what fn wrote so far. The bound
// DB must not be used after fn returns, nor from another goroutine.
func (db *DB) InTx(ctx context.Context, fn func(tx *DB) error) error {
	if _, nested := db.b.(*txBackend); nested {
		return errors.New("storage: InTx inside InTx")
	}
	return db.b.inTx(ctx, func(q querier) error {
		tx := &DB{b: &txBackend{querier: q, outer: db.b}, now: db.now, usage: map[string]offlineUsage{},
			notices: &noticeCache{receivers: map[string]sms.Receiver{}, windows: map[string]*sms.NoticeWindow{}}}
		if err := fn(tx); err != nil {
			return err
		}
		return tx.flushNotices(ctx)
	})
}

// offlineUsage is what an owner's stored messages take, as counted in
// the transaction of an InTx: one count per owner and transaction rather
// than one per message (the per-owner lock holds until the commit, so
// nobody else changes it meanwhile).
type offlineUsage struct{ n, size int64 }

// txBackend is a backend bound to the open transaction of an InTx.
type txBackend struct {
	querier
	outer backend
	depth int
}

// inTx runs fn in a savepoint, rolled back alone when fn fails.
func (b *txBackend) inTx(ctx context.Context, fn func(querier) error) error {
	b.depth++
	defer func() { b.depth-- }()
	sp := fmt.Sprintf("dialtone_sp%d", b.depth)
	if _, err := b.exec(ctx, "SAVEPOINT "+sp); err != nil {
		return err
	}
	if err := fn(b.querier); err != nil {
		if _, rerr := b.exec(ctx, "ROLLBACK TO SAVEPOINT "+sp); rerr != nil {
			return errors.Join(err, fmt.Errorf("roll back to a savepoint: %w", rerr))
		}
		if _, rerr := b.exec(ctx, "RELEASE SAVEPOINT "+sp); rerr != nil {
			return errors.Join(err, fmt.Errorf("release a savepoint: %w", rerr))
		}
		return err
	}
	_, err := b.exec(ctx, "RELEASE SAVEPOINT "+sp)
	return err
}

func (b *txBackend) lock(ctx context.Context, q querier, key string) error {
	return b.outer.lock(ctx, q, key)
}

func (b *txBackend) unbounded(ctx context.Context, q querier) error {
	return b.outer.unbounded(ctx, q)
}

func (b *txBackend) ddl(stmt string) string { return b.outer.ddl(stmt) }

func (b *txBackend) ping(ctx context.Context) error { return b.outer.ping(ctx) }

func (b *txBackend) close() error { return errors.New("storage: Close on the DB of an InTx") }

func (b *txBackend) driver() string { return b.outer.driver() }
