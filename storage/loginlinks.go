package storage

import (
	"context"
	"fmt"
	"time"

	"dialtone/auth"
)

var _ auth.TicketStore = (*DB)(nil)

// linkMemory is how long a link is kept past its expiry, so that opening
// it says "expired" rather than "unknown".
const linkMemory = 7 * 24 * time.Hour

// CreateLoginLink stores a one-tap link (SPEC.md "Web client and one-tap
// login"), and forgets those that expired over a week before it was made.
func (db *DB) CreateLoginLink(ctx context.Context, l auth.LoginLink) error {
	err := db.b.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `DELETE FROM login_links WHERE expires < ?`, l.Created.Add(-linkMemory)); err != nil {
			return err
		}
		_, err := q.exec(ctx, `INSERT INTO login_links (token_hash, owner, password_tag, created, expires)
			VALUES (?, ?, ?, ?, ?)`, l.Hash, string(l.Number), l.PasswordTag, l.Created, l.Expires)
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: login link for %s: %w", l.Number, err)
	}
	return nil
}

const loginLinkColumns = `token_hash, owner, password_tag, created, expires, used`

func loginLinkDest(l *auth.LoginLink) []any {
	return []any{&l.Hash, &l.Number, &l.PasswordTag, timeCol{&l.Created}, timeCol{&l.Expires}, timeCol{&l.Used}}
}

// LoginLink returns the link stored under hash, used or not, or
// auth.ErrNotFound.
func (db *DB) LoginLink(ctx context.Context, hash string) (auth.LoginLink, error) {
	var l auth.LoginLink
	err := db.b.queryRow(ctx, `SELECT `+loginLinkColumns+` FROM login_links WHERE token_hash = ?`, []any{hash}, loginLinkDest(&l)...)
	if err != nil {
		return auth.LoginLink{}, fmt.Errorf("storage: login link: %w", err)
	}
	return l, nil
}

// UseLoginLink marks the link under hash used at now, if it was neither
// used nor expired at now, and returns it; otherwise auth.ErrNotFound
// (LoginLink tells why). Of two concurrent uses, one wins.
func (db *DB) UseLoginLink(ctx context.Context, hash string, now time.Time) (auth.LoginLink, error) {
	var l auth.LoginLink
	err := db.b.queryRow(ctx, `UPDATE login_links SET used = ?
		WHERE token_hash = ? AND used IS NULL AND expires > ?
		RETURNING `+loginLinkColumns, []any{now, hash, now}, loginLinkDest(&l)...)
	if err != nil {
		return auth.LoginLink{}, fmt.Errorf("storage: use login link: %w", err)
	}
	return l, nil
}

// AddTicket stores a web client ticket, keeping the owner's newest
// auth.MaxTickets, and forgets every ticket expired at now.
func (db *DB) AddTicket(ctx context.Context, t auth.Ticket, now time.Time) error {
	k1, k256, k512 := t.Keys.SHA1, t.Keys.SHA256, t.Keys.SHA512
	err := db.b.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `DELETE FROM web_tickets WHERE expires <= ?`, now); err != nil {
			return err
		}
		if _, err := q.exec(ctx, `INSERT INTO web_tickets (id, owner, generation,
				sha1_stored_key, sha1_server_key, sha256_stored_key, sha256_server_key,
				sha512_stored_key, sha512_server_key, expires)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, string(t.Number), t.Generation, k1.StoredKey, k1.ServerKey, k256.StoredKey, k256.ServerKey,
			k512.StoredKey, k512.ServerKey, t.Expires); err != nil {
			return err
		}
		_, err := q.exec(ctx, `DELETE FROM web_tickets WHERE owner = ? AND id NOT IN (
				SELECT id FROM web_tickets WHERE owner = ? ORDER BY expires DESC, id DESC LIMIT ?)`,
			string(t.Number), string(t.Number), auth.MaxTickets)
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: ticket for %s: %w", t.Number, err)
	}
	return nil
}

// Tickets returns n's tickets that have not expired at now, the newest
// first, at most auth.MaxTickets.
func (db *DB) Tickets(ctx context.Context, n auth.Number, now time.Time) ([]auth.Ticket, error) {
	r, err := db.b.query(ctx, `SELECT id, owner, generation,
			sha1_stored_key, sha1_server_key, sha256_stored_key, sha256_server_key,
			sha512_stored_key, sha512_server_key, expires
		FROM web_tickets WHERE owner = ? AND expires > ? ORDER BY expires DESC, id DESC LIMIT ?`,
		string(n), now, auth.MaxTickets)
	list, err := collect(r, err, func(r rows) (t auth.Ticket, err error) {
		k1, k256, k512 := &t.Keys.SHA1, &t.Keys.SHA256, &t.Keys.SHA512
		err = r.Scan(&t.ID, &t.Number, &t.Generation, &k1.StoredKey, &k1.ServerKey, &k256.StoredKey, &k256.ServerKey,
			&k512.StoredKey, &k512.ServerKey, timeCol{&t.Expires})
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: tickets of %s: %w", n, err)
	}
	return list, nil
}

// UseTicket removes n's ticket id if it has not expired at now;
// auth.ErrNotFound when it is gone. Of two concurrent uses, one wins.
func (db *DB) UseTicket(ctx context.Context, n auth.Number, id string, now time.Time) error {
	gone, err := db.b.exec(ctx, `DELETE FROM web_tickets WHERE id = ? AND owner = ? AND expires > ?`, id, string(n), now)
	if err == nil && gone == 0 {
		err = auth.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("storage: use ticket of %s: %w", n, err)
	}
	return nil
}
