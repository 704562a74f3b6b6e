package storage

import (
	"context"
	"fmt"
	"math"

	"dialtone/offline"
)

// PushOffline stores m unless its owner already has limit messages
// (limit <= 0: no limit), and returns the id it was given. Counting and
// inserting happen under a per-owner lock in one transaction, so concurrent
// pushes never exceed the limit, and ids of one owner increase in the order
// the messages were stored. A zero Stamp is set to now.
func (db *DB) PushOffline(ctx context.Context, m offline.Message, limit int) (id int64, err error) {
	err = db.b.inTx(ctx, func(q querier) (err error) {
		id, err = db.pushOffline(ctx, q, m, offline.Limits{Messages: limit})
		return err
	})
	if err == nil {
		db.stored(m)
	}
	if err != nil {
		return 0, fmt.Errorf("storage: store offline message for %s: %w", m.Owner, err)
	}
	return id, nil
}

// pushOffline is PushOffline in q, which must be a transaction (the
// per-owner lock lasts until it commits), with limits on the number and
// the bytes of the owner's messages.
func (db *DB) pushOffline(ctx context.Context, q querier, m offline.Message, limits offline.Limits) (id int64, err error) {
	if m.Stamp.IsZero() {
		m.Stamp = db.stamp()
	}
	if m.Stanza == nil {
		m.Stanza = []byte{} // NULL is not a stanza
	}
	if err := db.b.lock(ctx, q, "dialtone offline "+m.Owner); err != nil {
		return 0, err
	}
	if limits.Messages > 0 || limits.Bytes > 0 {
		u, cached := db.usage[m.Owner]
		if !cached {
			if err := q.queryRow(ctx, `SELECT COUNT(*), COALESCE(SUM(LENGTH(stanza)), 0) FROM offline_messages WHERE owner = ?`,
				[]any{m.Owner}, &u.n, &u.size); err != nil {
				return 0, err
			}
			if db.usage != nil {
				db.usage[m.Owner] = u // as it is before m, whether m is then kept or rolled back
			}
		}
		if limits.Messages > 0 && u.n >= int64(limits.Messages) ||
			limits.Bytes > 0 && u.size+int64(len(m.Stanza)) > int64(limits.Bytes) {
			return 0, offline.ErrFull
		}
	}
	err = q.queryRow(ctx, `INSERT INTO offline_messages (owner, sender, stamp, stanza)
		VALUES (?, ?, ?, ?) RETURNING id`, []any{m.Owner, m.From, m.Stamp, m.Stanza}, &id)
	return id, err
}

// stored notes, in the DB of an InTx, that the savepoint that stored m
// for its owner was released: the cached usage grows by it.
func (db *DB) stored(m offline.Message) {
	if u, cached := db.usage[m.Owner]; cached {
		db.usage[m.Owner] = offlineUsage{u.n + 1, u.size + int64(len(m.Stanza))}
	}
}

// OfflineMessages returns up to max (<= 0: all) of owner's messages, oldest
// first.
func (db *DB) OfflineMessages(ctx context.Context, owner string, max int) ([]offline.Message, error) {
	limit := int64(math.MaxInt64) // LIMIT with no bound is spelled differently in each dialect
	if max > 0 {
		limit = int64(max)
	}
	r, err := db.b.query(ctx, `SELECT id, owner, sender, stamp, stanza FROM offline_messages
		WHERE owner = ? ORDER BY id LIMIT ?`, owner, limit)
	msgs, err := collect(r, err, func(r rows) (m offline.Message, err error) {
		err = r.Scan(&m.ID, &m.Owner, &m.From, timeCol{&m.Stamp}, &m.Stanza)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: offline messages of %s: %w", owner, err)
	}
	return msgs, nil
}

// DeleteOffline removes the given messages of owner; ids of other owners
// and ids no longer stored are ignored.
func (db *DB) DeleteOffline(ctx context.Context, owner string, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	delete(db.usage, owner) // counted again when next needed
	err := execEach(ctx, db.b, `DELETE FROM offline_messages WHERE owner = ? AND id = ?`, owner, ids)
	if err != nil {
		return fmt.Errorf("storage: delete offline messages of %s: %w", owner, err)
	}
	return nil
}

// CountOffline returns how many messages owner has stored.
func (db *DB) CountOffline(ctx context.Context, owner string) (int, error) {
	n, err := countOffline(ctx, db.b, owner)
	if err != nil {
		return 0, fmt.Errorf("storage: count offline messages of %s: %w", owner, err)
	}
	return n, nil
}

func countOffline(ctx context.Context, q querier, owner string) (n int, err error) {
	err = q.queryRow(ctx, `SELECT COUNT(*) FROM offline_messages WHERE owner = ?`, []any{owner}, &n)
	return n, err
}
