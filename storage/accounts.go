package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"dialtone/auth"
)

// accountColumns is the column list that accountRow scans, in its order.
const accountColumns = `number, state, created, last_login, generation,
	sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key,
	sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key,
	pending_sha1_stored_key, pending_sha1_server_key, pending_sha256_stored_key, pending_sha256_server_key,
	sha512_salt, COALESCE(sha512_iterations, 0), sha512_stored_key, sha512_server_key,
	pending_sha512_stored_key, pending_sha512_server_key`

// accountRow is one scanned row of accountColumns.
type accountRow struct {
	a auth.Account
	// The pending keys; their salts and iteration counts are the current ones.
	pending1Stored, pending1Server, pending256Stored, pending256Server []byte
	pending512Stored, pending512Server                                 []byte
}

func (r *accountRow) dest() []any {
	a := &r.a
	s1, s256 := &a.Credentials.SHA1, &a.Credentials.SHA256
	return []any{&a.Number, &a.State, timeCol{&a.Created}, timeCol{&a.LastLogin}, &a.Generation,
		&s1.Salt, &s1.Iterations, &s1.StoredKey, &s1.ServerKey,
		&s256.Salt, &s256.Iterations, &s256.StoredKey, &s256.ServerKey,
		&r.pending1Stored, &r.pending1Server, &r.pending256Stored, &r.pending256Server,
		&a.Credentials.SHA512.Salt, &a.Credentials.SHA512.Iterations, &a.Credentials.SHA512.StoredKey, &a.Credentials.SHA512.ServerKey,
		&r.pending512Stored, &r.pending512Server}
}

// account returns the scanned account, with its pending password, if any.
func (r *accountRow) account() auth.Account {
	a := r.a
	if r.pending256Stored != nil {
		c := a.Credentials
		a.Pending = auth.Credentials{
			SHA1: auth.ScramKeys{Salt: c.SHA1.Salt, Iterations: c.SHA1.Iterations,
				StoredKey: r.pending1Stored, ServerKey: r.pending1Server},
			SHA256: auth.ScramKeys{Salt: c.SHA256.Salt, Iterations: c.SHA256.Iterations,
				StoredKey: r.pending256Stored, ServerKey: r.pending256Server},
		}
		if r.pending512Stored != nil {
			a.Pending.SHA512 = auth.ScramKeys{Salt: c.SHA512.Salt, Iterations: c.SHA512.Iterations,
				StoredKey: r.pending512Stored, ServerKey: r.pending512Server}
		}
	}
	return a
}

// Account returns the stored account for n, or auth.ErrNotFound.
func (db *DB) Account(ctx context.Context, n auth.Number) (auth.Account, error) {
	var r accountRow
	err := db.b.queryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE number = ?`, []any{string(n)}, r.dest()...)
	if err != nil {
		return auth.Account{}, fmt.Errorf("storage: account %s: %w", n, err)
	}
	return r.account(), nil
}

// SetCredentials replaces the credentials of n, creating the account
// unclaimed (generation 1) when absent, drops its pending password and
// increments its generation; an unclaimed account's touched time becomes
// now (see upsertCredentials). The generation it returns is 1 exactly when
// this call made the row. The password is not marked delivered: a notice
// may still replace it while the account is unclaimed.
func (db *DB) SetCredentials(ctx context.Context, n auth.Number, c auth.Credentials) (created bool, err error) {
	return db.setCredentials(ctx, n, c, false)
}

// SetDeliveredCredentials is SetCredentials for a password that is handed
// to someone (xmppctl --print): the account's password is marked
// delivered, so that no notice replaces it (SPEC.md "SMS texts").
func (db *DB) SetDeliveredCredentials(ctx context.Context, n auth.Number, c auth.Credentials) (created bool, err error) {
	return db.setCredentials(ctx, n, c, true)
}

// NumberCredentials is one account of SetCredentialsBatch.
type NumberCredentials struct {
	Number      auth.Number
	Credentials auth.Credentials
}

// SetCredentialsBatch is SetCredentials (or, with delivered,
// SetDeliveredCredentials) for many numbers in one transaction: one
// commit for a batch of an import instead of one each. All or nothing.
func (db *DB) SetCredentialsBatch(ctx context.Context, batch []NumberCredentials, delivered bool) error {
	return db.b.inTx(ctx, func(q querier) error {
		for _, nc := range batch {
			if _, err := db.upsertCredentials(ctx, q, nc.Number, nc.Credentials, delivered); err != nil {
				return fmt.Errorf("storage: set credentials of %s: %w", nc.Number, err)
			}
		}
		return nil
	})
}

func (db *DB) setCredentials(ctx context.Context, n auth.Number, c auth.Credentials, delivered bool) (bool, error) {
	gen, err := db.upsertCredentials(ctx, db.b, n, c, delivered)
	if err != nil {
		return false, fmt.Errorf("storage: set credentials of %s: %w", n, err)
	}
	return gen == 1, nil
}

// PromotePending makes the pending password of n, if its keys are still
// those of pending, the current one, dropping it as pending, and moves the
// generation on: the first login with a requested password (SPEC.md
// "HTTP"). When pending is already current (a concurrent login promoted
// it) the generation is returned as it is, with promoted false.
// auth.ErrNotFound when pending is neither (replaced by a newer password)
// or there is no account.
func (db *DB) PromotePending(ctx context.Context, n auth.Number, pending auth.Credentials) (gen int64, promoted bool, err error) {
	s1, s256 := pending.SHA1, pending.SHA256
	err = db.b.inTx(ctx, func(q querier) error {
		err := q.queryRow(ctx, `UPDATE accounts SET generation = generation + 1,
				sha1_stored_key = pending_sha1_stored_key, sha1_server_key = pending_sha1_server_key,
				sha256_stored_key = pending_sha256_stored_key, sha256_server_key = pending_sha256_server_key,
				sha512_stored_key = pending_sha512_stored_key, sha512_server_key = pending_sha512_server_key,
				sha512_salt = CASE WHEN pending_sha512_stored_key IS NULL THEN NULL ELSE sha512_salt END,
				sha512_iterations = CASE WHEN pending_sha512_stored_key IS NULL THEN NULL ELSE sha512_iterations END,
				pending_sha1_stored_key = NULL, pending_sha1_server_key = NULL,
				pending_sha256_stored_key = NULL, pending_sha256_server_key = NULL,
				pending_sha512_stored_key = NULL, pending_sha512_server_key = NULL
			WHERE number = ? AND pending_sha1_stored_key = ? AND pending_sha1_server_key = ?
				AND pending_sha256_stored_key = ? AND pending_sha256_server_key = ?
			RETURNING generation`,
			[]any{string(n), s1.StoredKey, s1.ServerKey, s256.StoredKey, s256.ServerKey}, &gen)
		if err == nil {
			promoted = true
			return nil
		}
		if !errors.Is(err, auth.ErrNotFound) {
			return err
		}
		return q.queryRow(ctx, `SELECT generation FROM accounts
			WHERE number = ? AND sha1_stored_key = ? AND sha1_server_key = ?
				AND sha256_stored_key = ? AND sha256_server_key = ?`,
			[]any{string(n), s1.StoredKey, s1.ServerKey, s256.StoredKey, s256.ServerKey}, &gen)
	})
	if err != nil {
		return 0, false, fmt.Errorf("storage: make the pending password of %s current: %w", n, err)
	}
	return gen, promoted, nil
}

// RecordLogin marks a successful login at t: state active, LastLogin t.
// Concurrent logins are written in one transaction (loginStamps); each
// returns once its own stamp is committed.
func (db *DB) RecordLogin(ctx context.Context, n auth.Number, t time.Time) error {
	if t.IsZero() {
		// A zero time would be stored as "never logged in".
		return fmt.Errorf("storage: record login of %s: zero time", n)
	}
	var err error
	if db.stamps != nil {
		err = db.stamps.record(ctx, db.b, string(n), t)
	} else {
		var changed int64
		changed, err = db.b.exec(ctx, `UPDATE accounts SET state = ?, last_login = ? WHERE number = ?`,
			string(auth.StateActive), t, string(n))
		if err == nil && changed == 0 {
			err = auth.ErrNotFound
		}
	}
	if err != nil {
		return fmt.Errorf("storage: record login of %s: %w", n, err)
	}
	return nil
}

// DeleteAccount removes the account and every row stored for it, in one
// transaction; when there is no account nothing is removed.
func (db *DB) DeleteAccount(ctx context.Context, n auth.Number) error {
	err := db.b.inTx(ctx, func(q querier) error {
		gone, err := q.exec(ctx, `DELETE FROM accounts WHERE number = ?`, string(n))
		if err != nil {
			return err
		}
		if gone == 0 {
			return auth.ErrNotFound
		}
		return deleteOwned(ctx, q, string(n))
	})
	if err != nil {
		return fmt.Errorf("storage: delete account %s: %w", n, err)
	}
	return nil
}

// ListAccounts returns the accounts ordered by number; state "" means all.
func (db *DB) ListAccounts(ctx context.Context, state auth.State) ([]auth.Account, error) {
	r, err := db.b.query(ctx, `SELECT `+accountColumns+` FROM accounts
		WHERE ? = '' OR state = ? ORDER BY number`, string(state), string(state))
	list, err := collect(r, err, func(r rows) (auth.Account, error) {
		var row accountRow
		err := r.Scan(row.dest()...)
		return row.account(), err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list accounts: %w", err)
	}
	return list, nil
}

// AccountsWithoutSHA512 counts the accounts whose password was set before
// SCRAM-SHA-512 keys were kept: while there are any, SCRAM-SHA-512 is not
// offered (auth.SHA512Gate).
func (db *DB) AccountsWithoutSHA512(ctx context.Context) (int, error) {
	var n int
	err := db.b.queryRow(ctx, `SELECT COUNT(*) FROM accounts WHERE sha512_stored_key IS NULL`, nil, &n)
	if err != nil {
		return 0, fmt.Errorf("storage: accounts without SHA-512 keys: %w", err)
	}
	return n, nil
}
