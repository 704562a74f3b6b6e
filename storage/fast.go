package storage

import (
	"context"
	"fmt"
	"time"

	"dialtone/auth"
)

var _ auth.FastStore = (*DB)(nil)

// maxFastTokens bounds the tokens one client of an account keeps: the one
// in use and the one a rotation just gave out.
const maxFastTokens = 2

// AddFastToken stores t, keeping the newest maxFastTokens of its client,
// and forgets every token expired at t.Created.
func (db *DB) AddFastToken(ctx context.Context, t auth.FastToken) error {
	err := db.b.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `DELETE FROM fast_tokens WHERE expires <= ?`, t.Created); err != nil {
			return err
		}
		if _, err := q.exec(ctx, `INSERT INTO fast_tokens (id, owner, user_agent, generation, created, expires)
			VALUES (?, ?, ?, ?, ?, ?)`, t.ID, string(t.Number), t.UserAgent, t.Generation, t.Created, t.Expires); err != nil {
			return err
		}
		_, err := q.exec(ctx, `DELETE FROM fast_tokens WHERE owner = ? AND user_agent = ? AND id NOT IN (
				SELECT id FROM fast_tokens WHERE owner = ? AND user_agent = ? ORDER BY created DESC, id DESC LIMIT ?)`,
			string(t.Number), t.UserAgent, string(t.Number), t.UserAgent, maxFastTokens)
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: FAST token of %s: %w", t.Number, err)
	}
	return nil
}

// FastTokens returns n's tokens for userAgent not expired at now, newest
// first.
func (db *DB) FastTokens(ctx context.Context, n auth.Number, userAgent string, now time.Time) ([]auth.FastToken, error) {
	r, err := db.b.query(ctx, `SELECT id, owner, user_agent, generation, created, expires FROM fast_tokens
		WHERE owner = ? AND user_agent = ? AND expires > ? ORDER BY created DESC, id DESC LIMIT ?`,
		string(n), userAgent, now, maxFastTokens)
	list, err := collect(r, err, func(r rows) (t auth.FastToken, err error) {
		err = r.Scan(&t.ID, &t.Number, &t.UserAgent, &t.Generation, timeCol{&t.Created}, timeCol{&t.Expires})
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: FAST tokens of %s: %w", n, err)
	}
	return list, nil
}

// DeleteFastTokens removes n's tokens for userAgent created before
// before; all of them when before is zero.
func (db *DB) DeleteFastTokens(ctx context.Context, n auth.Number, userAgent string, before time.Time) error {
	var err error
	if before.IsZero() {
		_, err = db.b.exec(ctx, `DELETE FROM fast_tokens WHERE owner = ? AND user_agent = ?`, string(n), userAgent)
	} else {
		_, err = db.b.exec(ctx, `DELETE FROM fast_tokens WHERE owner = ? AND user_agent = ? AND created < ?`, string(n), userAgent, before)
	}
	if err != nil {
		return fmt.Errorf("storage: delete FAST tokens of %s: %w", n, err)
	}
	return nil
}
