package storage

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"time"

	"dialtone/auth"
	"dialtone/sms"
)

var _ sms.PINStore = (*DB)(nil)

// SavePIN makes hash the PIN of n until expires, with no try used,
// replacing any PIN n had, and queues p, the SMS that texts it, with its
// log row, in one transaction: a PIN never works without its SMS on the
// way. PINs that expired before p.Created (now when zero) are deleted on
// the way, whatever their number, so that the table holds little more
// than the PINs of the last few minutes.
func (db *DB) SavePIN(ctx context.Context, n auth.Number, hash []byte, expires time.Time, p sms.Pending) error {
	if len(hash) == 0 || expires.IsZero() {
		return fmt.Errorf("storage: save PIN of %s: no hash or expiry", n)
	}
	now := p.Created
	if now.IsZero() {
		now = db.stamp()
	}
	err := db.b.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `DELETE FROM pins WHERE expires <= ?`, now); err != nil {
			return err
		}
		if _, err := q.exec(ctx, `INSERT INTO pins (number, hash, expires, tries) VALUES (?, ?, ?, 0)
			ON CONFLICT (number) DO UPDATE SET hash = excluded.hash, expires = excluded.expires, tries = 0`,
			string(n), hash, expires); err != nil {
			return err
		}
		return enqueueSMS(ctx, q, p)
	})
	if err != nil {
		return fmt.Errorf("storage: save PIN of %s: %w", n, err)
	}
	return nil
}

// UsePIN checks hash against the PIN of n at now (see sms.PINStore), in
// one transaction that holds the number's lock, so that of two requests
// with the right PIN only one finds it, and concurrent wrong ones each
// use up a try.
func (db *DB) UsePIN(ctx context.Context, n auth.Number, hash []byte, tries int, now time.Time) (sms.PINCheck, error) {
	var check sms.PINCheck
	err := db.b.inTx(ctx, func(q querier) error {
		if err := db.b.lock(ctx, q, "dialtone pin "+string(n)); err != nil {
			return err
		}
		var (
			stored  []byte
			expires time.Time
			used    int
		)
		err := q.queryRow(ctx, `SELECT hash, expires, tries FROM pins WHERE number = ?`,
			[]any{string(n)}, &stored, timeCol{&expires}, &used)
		if errors.Is(err, auth.ErrNotFound) {
			check = sms.PINCheck{Result: sms.PINAbsent}
			return nil
		}
		if err != nil {
			return err
		}
		remove := func() error {
			_, err := q.exec(ctx, `DELETE FROM pins WHERE number = ?`, string(n))
			return err
		}
		switch {
		case !now.Before(expires):
			check = sms.PINCheck{Result: sms.PINAbsent}
			return remove()
		case used >= tries:
			check = sms.PINCheck{Result: sms.PINSpent, Expires: expires}
			return nil
		case hmac.Equal(stored, hash):
			check = sms.PINCheck{Result: sms.PINMatched, Expires: expires}
			return remove()
		default:
			check = sms.PINCheck{Result: sms.PINWrong, Expires: expires}
			_, err := q.exec(ctx, `UPDATE pins SET tries = tries + 1 WHERE number = ?`, string(n))
			return err
		}
	})
	if err != nil {
		return sms.PINCheck{}, fmt.Errorf("storage: use PIN of %s: %w", n, err)
	}
	return check, nil
}
