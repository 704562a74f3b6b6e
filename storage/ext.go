package storage

import (
	"context"
	"fmt"
)

// Private returns the XML stored for owner under key, or auth.ErrNotFound.
func (db *DB) Private(ctx context.Context, owner, key string) ([]byte, error) {
	var data []byte
	if err := db.b.queryRow(ctx, `SELECT data FROM private_xml WHERE owner = ? AND key = ?`,
		[]any{owner, key}, &data); err != nil {
		return nil, fmt.Errorf("storage: private %q of %s: %w", key, owner, err)
	}
	return data, nil
}

// PutPrivate stores (replaces) the XML for key; empty data deletes it, which
// is how a client clears its vCard or private storage.
func (db *DB) PutPrivate(ctx context.Context, owner, key string, data []byte) error {
	var err error
	if len(data) == 0 {
		_, err = db.b.exec(ctx, `DELETE FROM private_xml WHERE owner = ? AND key = ?`, owner, key)
	} else {
		_, err = db.b.exec(ctx, `INSERT INTO private_xml (owner, key, data) VALUES (?, ?, ?)
			ON CONFLICT (owner, key) DO UPDATE SET data = excluded.data`, owner, key, data)
	}
	if err != nil {
		return fmt.Errorf("storage: put private %q of %s: %w", key, owner, err)
	}
	return nil
}

// BlockList returns owner's blocked JIDs in byte order.
func (db *DB) BlockList(ctx context.Context, owner string) ([]string, error) {
	r, err := db.b.query(ctx, `SELECT jid FROM blocklist WHERE owner = ? ORDER BY jid`, owner)
	jids, err := collect(r, err, func(r rows) (jid string, err error) {
		err = r.Scan(&jid)
		return jid, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: blocklist of %s: %w", owner, err)
	}
	return jids, nil
}

// Block adds the JIDs to owner's blocklist; ones already there stay once.
func (db *DB) Block(ctx context.Context, owner string, jids []string) error {
	return db.eachJID(ctx, "block", owner, jids,
		`INSERT INTO blocklist (owner, jid) VALUES (?, ?) ON CONFLICT (owner, jid) DO NOTHING`)
}

// Unblock removes the JIDs from owner's blocklist; an empty list removes
// all (XEP-0191 §3.4).
func (db *DB) Unblock(ctx context.Context, owner string, jids []string) error {
	if len(jids) == 0 {
		if _, err := db.b.exec(ctx, `DELETE FROM blocklist WHERE owner = ?`, owner); err != nil {
			return fmt.Errorf("storage: unblock all of %s: %w", owner, err)
		}
		return nil
	}
	return db.eachJID(ctx, "unblock", owner, jids, `DELETE FROM blocklist WHERE owner = ? AND jid = ?`)
}

// eachJID runs stmt for every JID of a block or unblock request.
func (db *DB) eachJID(ctx context.Context, what, owner string, jids []string, stmt string) error {
	if err := execEach(ctx, db.b, stmt, owner, jids); err != nil {
		return fmt.Errorf("storage: %s for %s: %w", what, owner, err)
	}
	return nil
}

// execEach runs stmt(owner, v) for every value in one transaction, so that
// a request about several items takes effect whole or not at all.
func execEach[T any](ctx context.Context, b backend, stmt, owner string, vals []T) error {
	return b.inTx(ctx, func(q querier) error {
		for _, v := range vals {
			if _, err := q.exec(ctx, stmt, owner, v); err != nil {
				return fmt.Errorf("%v: %w", v, err)
			}
		}
		return nil
	})
}
