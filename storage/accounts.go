package storage

import (
	"context"
	"fmt"
	"time"

	"dialtone/auth"
)

// accountColumns is the column list that scanAccount reads, in its order.
const accountColumns = `number, state, created, last_login, generation,
	sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key,
	sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key`

func accountDest(a *auth.Account) []any {
	s1, s256 := &a.Credentials.SHA1, &a.Credentials.SHA256
	return []any{&a.Number, &a.State, timeCol{&a.Created}, timeCol{&a.LastLogin}, &a.Generation,
		&s1.Salt, &s1.Iterations, &s1.StoredKey, &s1.ServerKey,
		&s256.Salt, &s256.Iterations, &s256.StoredKey, &s256.ServerKey}
}

// Account returns the stored account for n, or auth.ErrNotFound.
func (db *DB) Account(ctx context.Context, n auth.Number) (auth.Account, error) {
	var a auth.Account
	err := db.b.queryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE number = ?`, []any{string(n)}, accountDest(&a)...)
	if err != nil {
		return auth.Account{}, fmt.Errorf("storage: account %s: %w", n, err)
	}
	return a, nil
}

// SetCredentials replaces the credentials of n, creating the account
// unclaimed (generation 1) when absent, and increments its generation; an
// unclaimed account's touched time becomes now (see upsertCredentials).
// The generation it returns is 1 exactly when this call made the row.
func (db *DB) SetCredentials(ctx context.Context, n auth.Number, c auth.Credentials) (created bool, err error) {
	gen, err := db.upsertCredentials(ctx, db.b, n, c)
	if err != nil {
		return false, fmt.Errorf("storage: set credentials of %s: %w", n, err)
	}
	return gen == 1, nil
}

// RecordLogin marks a successful login at t: state active, LastLogin t.
func (db *DB) RecordLogin(ctx context.Context, n auth.Number, t time.Time) error {
	if t.IsZero() {
		// A zero time would be stored as "never logged in".
		return fmt.Errorf("storage: record login of %s: zero time", n)
	}
	changed, err := db.b.exec(ctx, `UPDATE accounts SET state = ?, last_login = ? WHERE number = ?`,
		string(auth.StateActive), t, string(n))
	if err == nil && changed == 0 {
		err = auth.ErrNotFound
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
	list, err := collect(r, err, func(r rows) (a auth.Account, err error) {
		err = r.Scan(accountDest(&a)...)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list accounts: %w", err)
	}
	return list, nil
}
