package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"dialtone/sms"
)

// The store is the SMS outbox, and lets the worker prune the log and count
// what waits.
var (
	_ sms.Outbox        = (*DB)(nil)
	_ sms.OutboxPruner  = (*DB)(nil)
	_ sms.OutboxCounter = (*DB)(nil)
)

// EnqueueSMS adds p to the outbox and records it in the SMS log, in one
// transaction. A zero Created is now; a zero NextAttempt is Created.
func (db *DB) EnqueueSMS(ctx context.Context, p sms.Pending) error {
	err := db.b.inTx(ctx, func(q querier) error { return enqueueSMS(ctx, q, p) })
	if err != nil {
		return fmt.Errorf("storage: queue SMS %s to %s: %w", p.ID, p.To, err)
	}
	return nil
}

// enqueueSMS inserts p into the outbox and the SMS log on q, for store code
// that queues an SMS in the same transaction as what it reports (a new
// password and its SMS: both or neither). q must be a transaction, so that
// the two rows go together. Defaults as in EnqueueSMS.
func enqueueSMS(ctx context.Context, q querier, p sms.Pending) error {
	if p.ID == "" || p.To == "" || p.Purpose == "" {
		return errors.New("SMS without id, receiver or purpose")
	}
	if p.Created.IsZero() {
		p.Created = time.Now()
	}
	if p.NextAttempt.IsZero() {
		p.NextAttempt = p.Created
	}
	if p.Body == nil {
		p.Body = []byte{} // NULL is not a body
	}
	if _, err := q.exec(ctx, `INSERT INTO sms_log (recipient, purpose, queued) VALUES (?, ?, ?)`,
		p.To, p.Purpose, p.Created); err != nil {
		return err
	}
	_, err := q.exec(ctx, `INSERT INTO sms_outbox
		(id, recipient, purpose, voice, sealed, body, created, attempts, next_attempt, last_error)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.To, p.Purpose, p.Voice, p.Sealed, p.Body, p.Created, p.Attempts, p.NextAttempt, p.LastError)
	return err
}

// DueSMS returns up to limit messages whose NextAttempt is not after now,
// the earliest due first (then in the order they were queued).
func (db *DB) DueSMS(ctx context.Context, now time.Time, limit int) ([]sms.Pending, error) {
	if limit <= 0 {
		return nil, nil
	}
	r, err := db.b.query(ctx, `SELECT id, recipient, purpose, voice, sealed, body, created, attempts, next_attempt, last_error
		FROM sms_outbox WHERE next_attempt <= ? ORDER BY next_attempt, created, id LIMIT ?`, now, limit)
	due, err := collect(r, err, func(r rows) (p sms.Pending, err error) {
		err = r.Scan(&p.ID, &p.To, &p.Purpose, &p.Voice, &p.Sealed, &p.Body,
			timeCol{&p.Created}, &p.Attempts, timeCol{&p.NextAttempt}, &p.LastError)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: due SMS: %w", err)
	}
	return due, nil
}

// ClaimDueSMS implements sms.Claimer: the messages due at now, earliest
// first, get NextAttempt until in the statement that selects them. On
// PostgreSQL the rows another node is claiming are skipped (FOR UPDATE SKIP
// LOCKED), so two senders never take the same message; SQLite has one
// writer at a time.
func (db *DB) ClaimDueSMS(ctx context.Context, by string, now, until time.Time, limit int) ([]sms.Pending, error) {
	if limit <= 0 {
		return nil, nil
	}
	skip := ""
	if _, ok := db.b.(*postgresDB); ok {
		skip = " FOR UPDATE SKIP LOCKED"
	}
	var due []sms.Pending
	err := db.b.inTx(ctx, func(q querier) error {
		r, err := q.query(ctx, `UPDATE sms_outbox SET next_attempt = ?, claimed_by = ? WHERE id IN (
				SELECT id FROM sms_outbox WHERE next_attempt <= ? ORDER BY next_attempt, created, id LIMIT ?`+skip+`)
			RETURNING id, recipient, purpose, voice, sealed, body, created, attempts, next_attempt, last_error`, until, by, now, limit)
		due, err = collect(r, err, func(r rows) (p sms.Pending, err error) {
			err = r.Scan(&p.ID, &p.To, &p.Purpose, &p.Voice, &p.Sealed, &p.Body,
				timeCol{&p.Created}, &p.Attempts, timeCol{&p.NextAttempt}, &p.LastError)
			return p, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: claim due SMS: %w", err)
	}
	// RETURNING keeps no order: the oldest first, as DueSMS.
	slices.SortFunc(due, func(a, b sms.Pending) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return due, nil
}

// ReleaseClaims implements sms.Claimer: by's claims still in the outbox
// are due at now (and claimed by nobody).
func (db *DB) ReleaseClaims(ctx context.Context, by string, now time.Time) error {
	if by == "" {
		return nil // unnamed claims cannot be told from unclaimed rows
	}
	if _, err := db.b.exec(ctx, `UPDATE sms_outbox SET next_attempt = ?, claimed_by = '' WHERE claimed_by = ? AND next_attempt > ?`, now, by, now); err != nil {
		return fmt.Errorf("storage: release the SMS claims of %s: %w", by, err)
	}
	return nil
}

// DeleteSMS removes a message from the outbox; its log entry stays for the
// caps. A message no longer there is no error.
func (db *DB) DeleteSMS(ctx context.Context, id string) error {
	if _, err := db.b.exec(ctx, `DELETE FROM sms_outbox WHERE id = ?`, id); err != nil {
		return fmt.Errorf("storage: delete SMS %s: %w", id, err)
	}
	return nil
}

// RetrySMS records a failed attempt: the number of attempts so far, when to
// try again and why it failed. A message no longer there is no error.
func (db *DB) RetrySMS(ctx context.Context, id string, attempts int, next time.Time, lastErr string) error {
	if next.IsZero() {
		return fmt.Errorf("storage: retry SMS %s: zero time", id) // NULL would break NOT NULL
	}
	if _, err := db.b.exec(ctx, `UPDATE sms_outbox SET attempts = ?, next_attempt = ?, last_error = ?, claimed_by = '' WHERE id = ?`,
		attempts, next, lastErr, id); err != nil {
		return fmt.Errorf("storage: retry SMS %s: %w", id, err)
	}
	return nil
}

// QueuedTimes returns when SMS of purpose were queued for to after since
// (a time exactly since is not counted), oldest first. It reads the SMS
// log, so messages already sent count too.
func (db *DB) QueuedTimes(ctx context.Context, to, purpose string, since time.Time) ([]time.Time, error) {
	if since.IsZero() {
		since = time.Unix(0, 0) // a zero time is bound as NULL, which compares with nothing
	}
	r, err := db.b.query(ctx, `SELECT queued FROM sms_log WHERE recipient = ? AND purpose = ? AND queued > ?
		ORDER BY queued, seq`, to, purpose, since)
	times, err := collect(r, err, func(r rows) (t time.Time, err error) {
		err = r.Scan(timeCol{&t})
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: SMS queued for %s: %w", to, err)
	}
	return times, nil
}

// PruneSMSLog deletes the SMS log entries queued before before.
func (db *DB) PruneSMSLog(ctx context.Context, before time.Time) error {
	if _, err := db.b.exec(ctx, `DELETE FROM sms_log WHERE queued < ?`, before); err != nil {
		return fmt.Errorf("storage: prune SMS log: %w", err)
	}
	return nil
}

// CountSMS returns how many messages wait in the outbox.
func (db *DB) CountSMS(ctx context.Context) (n int, err error) {
	if err := db.b.queryRow(ctx, `SELECT COUNT(*) FROM sms_outbox`, nil, &n); err != nil {
		return 0, fmt.Errorf("storage: count SMS: %w", err)
	}
	return n, nil
}
