package storage

import (
	"context"
	"fmt"
	"strings"
	"time"

	"dialtone/auth"
	"dialtone/sms"
)

// DefaultReleaseBatch is how many accounts ReleaseUnclaimed removes in one
// transaction when the caller gives no batch size.
const DefaultReleaseBatch = 1000

var _ sms.PasswordStore = (*DB)(nil)

// iterations512 is the sha512_iterations column of k: NULL without
// SHA-512 keys (a password set before they were kept).
func iterations512(k auth.ScramKeys) any {
	if k.StoredKey == nil {
		return nil
	}
	return k.Iterations
}

// upsertCredentials sets the credentials of n in q, creating the account
// unclaimed (generation 1) when absent, drops its pending password, and
// returns the new generation. An unclaimed account's touched time becomes
// now: a password was just given out, and the unclaimed-account TTL counts
// from it. delivered marks the password as given to someone. It is one
// upsert, so concurrent calls for a new number cannot both create.
func (db *DB) upsertCredentials(ctx context.Context, q querier, n auth.Number, c auth.Credentials, delivered bool) (gen int64, err error) {
	s1, s256, s512 := c.SHA1, c.SHA256, c.SHA512
	it512 := iterations512(s512)
	now := db.stamp()
	var deliveredAt any // NULL: not delivered
	if delivered {
		deliveredAt = now
	}
	err = q.queryRow(ctx, `INSERT INTO accounts (number, state, created, touched, generation, password_delivered,
			sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key,
			sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key,
			sha512_salt, sha512_iterations, sha512_stored_key, sha512_server_key)
		VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (number) DO UPDATE SET
			generation = accounts.generation + 1,
			touched = CASE WHEN accounts.state = excluded.state THEN excluded.touched ELSE accounts.touched END,
			password_delivered = COALESCE(accounts.password_delivered, excluded.password_delivered),
			sha1_salt = excluded.sha1_salt, sha1_iterations = excluded.sha1_iterations,
			sha1_stored_key = excluded.sha1_stored_key, sha1_server_key = excluded.sha1_server_key,
			sha256_salt = excluded.sha256_salt, sha256_iterations = excluded.sha256_iterations,
			sha256_stored_key = excluded.sha256_stored_key, sha256_server_key = excluded.sha256_server_key,
			sha512_salt = excluded.sha512_salt, sha512_iterations = excluded.sha512_iterations,
			sha512_stored_key = excluded.sha512_stored_key, sha512_server_key = excluded.sha512_server_key,
			pending_sha1_stored_key = NULL, pending_sha1_server_key = NULL,
			pending_sha256_stored_key = NULL, pending_sha256_server_key = NULL,
			pending_sha512_stored_key = NULL, pending_sha512_server_key = NULL
		RETURNING generation`,
		[]any{string(n), string(auth.StateUnclaimed), now, now, deliveredAt,
			s1.Salt, s1.Iterations, s1.StoredKey, s1.ServerKey,
			s256.Salt, s256.Iterations, s256.StoredKey, s256.ServerKey,
			s512.Salt, it512, s512.StoredKey, s512.ServerKey},
		&gen)
	return gen, err
}

// IssuePassword sets the credentials of n (creating the account unclaimed
// when absent, generation+1, touched now when unclaimed, the pending
// password dropped), marks the password delivered, and queues the SMS p
// that texts it, with its log row, in one transaction: a password is never
// valid without its SMS on the way, nor the SMS queued for a password that
// was not stored.
func (db *DB) IssuePassword(ctx context.Context, n auth.Number, c auth.Credentials, p sms.Pending) (created bool, err error) {
	var gen int64
	err = db.b.inTx(ctx, func(q querier) error {
		if gen, err = db.upsertCredentials(ctx, q, n, c, true); err != nil {
			return err
		}
		return enqueueSMS(ctx, q, p)
	})
	if err != nil {
		return false, fmt.Errorf("storage: issue password of %s: %w", n, err)
	}
	return gen == 1, nil
}

// IssuePendingPassword makes pending (derived alike the current
// credentials) the pending password of n, replacing any pending one,
// while n is still at generation: the current password keeps working
// until pending logs in. In the same transaction the password is marked
// delivered, an unclaimed account's touched time moves to now, and p, the
// SMS that texts it, is queued with its log row. sms.ErrStale when the
// account is gone or its credentials changed since generation.
func (db *DB) IssuePendingPassword(ctx context.Context, n auth.Number, generation int64, pending auth.Credentials, p sms.Pending) error {
	s1, s256, s512 := pending.SHA1, pending.SHA256, pending.SHA512
	now := db.stamp()
	err := db.b.inTx(ctx, func(q querier) error {
		set, err := q.exec(ctx, `UPDATE accounts SET
				pending_sha1_stored_key = ?, pending_sha1_server_key = ?,
				pending_sha256_stored_key = ?, pending_sha256_server_key = ?,
				pending_sha512_stored_key = ?, pending_sha512_server_key = ?,
				password_delivered = COALESCE(password_delivered, ?),
				touched = CASE WHEN state = ? THEN ? ELSE touched END
			WHERE number = ? AND generation = ?`,
			s1.StoredKey, s1.ServerKey, s256.StoredKey, s256.ServerKey, s512.StoredKey, s512.ServerKey,
			now, string(auth.StateUnclaimed), now, string(n), generation)
		if err != nil {
			return err
		}
		if set == 0 {
			return sms.ErrStale
		}
		return enqueueSMS(ctx, q, p)
	})
	if err != nil {
		return fmt.Errorf("storage: pending password of %s: %w", n, err)
	}
	return nil
}

// TouchAccount moves the touched time of n, when it is unclaimed, forward
// to t (a message was stored for it): the unclaimed-account TTL counts
// from the last password SMS or message. An active account is left as it
// is; auth.ErrNotFound when there is no account.
func (db *DB) TouchAccount(ctx context.Context, n auth.Number, t time.Time) error {
	changed, err := db.b.exec(ctx, `UPDATE accounts SET touched =
			CASE WHEN state = ? AND (touched IS NULL OR touched < ?) THEN ? ELSE touched END
		WHERE number = ?`, string(auth.StateUnclaimed), t, t, string(n))
	if err == nil && changed == 0 {
		err = auth.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("storage: touch account %s: %w", n, err)
	}
	return nil
}

// ReleaseUnclaimed deletes the unclaimed accounts touched before
// touchedBefore (or, never touched, created before it) with everything
// they own, batch accounts per transaction (<= 0: DefaultReleaseBatch),
// and returns their numbers. The candidates are found through the index
// accounts_unclaimed_touched, and the delete checks the state again, so an
// account that logs in meanwhile stays.
func (db *DB) ReleaseUnclaimed(ctx context.Context, touchedBefore time.Time, batch int) (released []auth.Number, err error) {
	if batch <= 0 {
		batch = DefaultReleaseBatch
	}
	for _, cond := range []string{
		`touched < ?`,
		// Accounts made before touched existed.
		`touched IS NULL AND created < ?`,
	} {
		for {
			if err := ctx.Err(); err != nil {
				return released, fmt.Errorf("storage: release unclaimed accounts: %w", err)
			}
			gone, err := db.releaseBatch(ctx, cond, touchedBefore, batch)
			released = append(released, gone...)
			if err != nil {
				return released, fmt.Errorf("storage: release unclaimed accounts: %w", err)
			}
			if len(gone) < batch {
				break
			}
		}
	}
	return released, nil
}

// releaseBatch deletes up to batch unclaimed accounts that match cond (one
// time placeholder) and their owned rows, in one transaction.
func (db *DB) releaseBatch(ctx context.Context, cond string, before time.Time, batch int) (gone []auth.Number, err error) {
	unclaimed := string(auth.StateUnclaimed)
	err = db.b.inTx(ctx, func(q querier) error {
		r, err := q.query(ctx, `DELETE FROM accounts
			WHERE state = ? AND `+cond+` AND number IN (
				SELECT number FROM accounts WHERE state = ? AND `+cond+` LIMIT ?)
			RETURNING number`, unclaimed, before, unclaimed, before, batch)
		gone, err = collect(r, err, func(r rows) (n auth.Number, err error) {
			err = r.Scan(&n)
			return n, err
		})
		if err != nil || len(gone) == 0 {
			return err
		}
		owners := make([]string, len(gone))
		for i, n := range gone {
			owners[i] = string(n)
		}
		return deleteOwned(ctx, q, owners...)
	})
	if err != nil {
		return nil, err
	}
	return gone, nil
}

// WipeAccountData removes everything n owns but the account itself:
// roster and roster version, vCard and private data, blocklist, stored
// messages, upload slots (the files on disk are the caller's), and its
// opt-out of contact discovery. It is how a recycled number starts afresh (SPEC.md
// "Accounts"); the credentials are the caller's next step.
func (db *DB) WipeAccountData(ctx context.Context, n auth.Number) error {
	err := db.b.inTx(ctx, func(q querier) error {
		// The opt-out of contact discovery was the old owner's choice.
		if _, err := q.exec(ctx, `UPDATE accounts SET hidden = FALSE WHERE number = ?`, string(n)); err != nil {
			return err
		}
		return deleteOwned(ctx, q, string(n))
	})
	if err != nil {
		return fmt.Errorf("storage: wipe data of %s: %w", n, err)
	}
	return nil
}

// deleteOwned removes the rows of every owned table (ownedTables) that
// belong to one of owners, in q.
func deleteOwned(ctx context.Context, q querier, owners ...string) error {
	if len(owners) == 0 {
		return nil
	}
	args := make([]any, len(owners))
	for i, o := range owners {
		args[i] = o
	}
	in := "(?" + strings.Repeat(", ?", len(owners)-1) + ")"
	for _, table := range ownedTables {
		if _, err := q.exec(ctx, `DELETE FROM `+table+` WHERE owner IN `+in, args...); err != nil {
			return fmt.Errorf("%s: %w", table, err)
		}
	}
	return nil
}
