package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"dialtone/auth"
	"dialtone/offline"
	"dialtone/sms"
)

var _ sms.NoticeStore = (*DB)(nil)

// StoreOffline stores m as PushOffline does (offline.ErrFull at either of
// limits) and, in the same transaction, what plan says its arrival
// causes: the receiver counted against the sender's cap of new numbers
// written to (sms.ErrTooManyNewNumbers over it), the account of a latent
// number made unclaimed, a password replaced, the unclaimed account's
// touched time moved to plan.At, the notices queued with their log rows,
// the receiver's notice window set or removed, and the receiver counted
// against the sender's cap of new numbers notified. A crash, or a
// refusal, leaves all of it or none. sms.ErrStale when the account changed
// since plan was made.
func (db *DB) StoreOffline(ctx context.Context, m offline.Message, limits offline.Limits, plan sms.NoticePlan) (id int64, err error) {
	return db.storeWithNotice(ctx, m, true, limits, plan)
}

// StoreNotice writes what plan says a message's arrival causes, as
// StoreOffline does, without storing the message: one that is kept
// elsewhere (a message archive the receiver's client reads) but whose
// receiver must still be told by SMS. owner is the receiver's number.
func (db *DB) StoreNotice(ctx context.Context, owner string, plan sms.NoticePlan) error {
	_, err := db.storeWithNotice(ctx, offline.Message{Owner: owner}, false, offline.Limits{}, plan)
	return err
}

// storeWithNotice is StoreOffline, or without store StoreNotice.
func (db *DB) storeWithNotice(ctx context.Context, m offline.Message, store bool, limits offline.Limits, plan sms.NoticePlan) (id int64, err error) {
	at := plan.At
	if at.IsZero() {
		at = m.Stamp
	}
	if at.IsZero() {
		at = db.stamp()
	}
	n := string(plan.To)
	if n == "" {
		n = m.Owner
	}
	// In a group (InTx), the window is written once per receiver at the
	// commit (flushNotices), and the account is not written when that
	// would change nothing: a message to a claimed account with no SMS is
	// one INSERT, which needs no savepoint of its own.
	grouped := db.notices != nil
	claimed := db.knownClaimed(n, plan)
	write := func(q querier) error {
		if c := plan.NewNumber; c != nil {
			if err := db.countNewNumber(ctx, q, n, at, *c); err != nil {
				return err
			}
		}
		if store {
			var err error
			if id, err = db.pushOffline(ctx, q, m, limits); err != nil {
				return err
			}
		}
		if !claimed {
			if err := applyAccount(ctx, q, n, at, plan); err != nil {
				return err
			}
		}
		return applyNoticeWrites(ctx, q, n, at, plan, grouped)
	}
	if grouped && claimed && store && plan.NewNumber == nil && len(plan.SMS) == 0 && plan.CountFor == "" {
		err = write(db.b)
	} else {
		err = db.b.inTx(ctx, write)
	}
	if err == nil && store {
		db.stored(m)
	}
	db.planned(n, plan, err)
	if err != nil {
		return 0, fmt.Errorf("storage: store offline message (or its notice) for %s: %w", m.Owner, err)
	}
	return id, nil
}

// applyNoticePlan writes in q what a notice plan for the number n does
// besides storing the message or invitation it is for: the account, the
// SMS, the notice window, the count of new numbers noticed.
func applyNoticePlan(ctx context.Context, q querier, n string, at time.Time, plan sms.NoticePlan) error {
	if err := applyAccount(ctx, q, n, at, plan); err != nil {
		return err
	}
	return applyNoticeWrites(ctx, q, n, at, plan, false)
}

// applyNoticeWrites is applyNoticePlan without the account; without the
// window too when laterWindow (a group's DB writes it at the commit).
func applyNoticeWrites(ctx context.Context, q querier, n string, at time.Time, plan sms.NoticePlan, laterWindow bool) error {
	for _, p := range plan.SMS {
		if err := enqueueSMS(ctx, q, p); err != nil {
			return err
		}
	}
	if !laterWindow {
		if plan.DropWindow {
			if err := dropWindow(ctx, q, n); err != nil {
				return err
			}
		}
		if w := plan.Window; w != nil {
			if err := putWindow(ctx, q, n, *w); err != nil {
				return err
			}
		}
	}
	if plan.CountFor != "" {
		if _, err := q.exec(ctx, `INSERT INTO notice_new_numbers (sender, number, noticed) VALUES (?, ?, ?)
			ON CONFLICT (sender, number) DO UPDATE SET noticed = excluded.noticed`,
			plan.CountFor, n, at); err != nil {
			return err
		}
	}
	return nil
}

// countNewNumber counts n, which has never logged in, among the numbers
// c.Sender left messages for, unless c.Sender already has c.Limit others
// since c.Since: then sms.ErrTooManyNewNumbers. Under a lock per sender,
// so that concurrent messages cannot pass the cap together; it is taken
// before the owner's (pushOffline), always in that order.
func (db *DB) countNewNumber(ctx context.Context, q querier, n string, at time.Time, c sms.NewNumberCap) error {
	if err := db.b.lock(ctx, q, "dialtone new numbers "+c.Sender); err != nil {
		return err
	}
	if c.Limit > 0 {
		since := c.Since
		if since.IsZero() {
			since = time.Unix(0, 0) // a zero time is bound as NULL
		}
		var others int
		if err := q.queryRow(ctx, `SELECT COUNT(*) FROM stored_new_numbers WHERE sender = ? AND stored > ? AND number <> ?`,
			[]any{c.Sender, since, n}, &others); err != nil {
			return err
		}
		if others >= c.Limit {
			return sms.ErrTooManyNewNumbers
		}
	}
	_, err := q.exec(ctx, `INSERT INTO stored_new_numbers (sender, number, stored) VALUES (?, ?, ?)
		ON CONFLICT (sender, number) DO UPDATE SET stored = excluded.stored`, c.Sender, n, at)
	return err
}

// applyAccount does plan's part on the accounts table, in q.
func applyAccount(ctx context.Context, q querier, n string, at time.Time, plan sms.NoticePlan) error {
	unclaimed := string(auth.StateUnclaimed)
	var noticed, delivered any // NULL: not yet
	if plan.FirstNotice {
		noticed = at
	}
	if plan.PasswordDelivered {
		delivered = at
	}
	switch {
	case plan.Create:
		if plan.Credentials == nil {
			return errors.New("a new account without credentials")
		}
		s1, s256, s512 := plan.Credentials.SHA1, plan.Credentials.SHA256, plan.Credentials.SHA512
		made, err := q.exec(ctx, `INSERT INTO accounts (number, state, created, touched, generation,
				password_noticed, password_delivered,
				sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key,
				sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key,
				sha512_salt, sha512_iterations, sha512_stored_key, sha512_server_key)
			VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (number) DO NOTHING`,
			n, unclaimed, at, at, noticed, delivered,
			s1.Salt, s1.Iterations, s1.StoredKey, s1.ServerKey,
			s256.Salt, s256.Iterations, s256.StoredKey, s256.ServerKey,
			s512.Salt, iterations512(s512), s512.StoredKey, s512.ServerKey)
		if err != nil {
			return err
		}
		if made == 0 {
			return sms.ErrStale
		}
		return nil
	case plan.Credentials != nil:
		s1, s256, s512 := plan.Credentials.SHA1, plan.Credentials.SHA256, plan.Credentials.SHA512
		set, err := q.exec(ctx, `UPDATE accounts SET generation = generation + 1, touched = ?,
				sha1_salt = ?, sha1_iterations = ?, sha1_stored_key = ?, sha1_server_key = ?,
				sha256_salt = ?, sha256_iterations = ?, sha256_stored_key = ?, sha256_server_key = ?,
				sha512_salt = ?, sha512_iterations = ?, sha512_stored_key = ?, sha512_server_key = ?,
				pending_sha1_stored_key = NULL, pending_sha1_server_key = NULL,
				pending_sha256_stored_key = NULL, pending_sha256_server_key = NULL,
				pending_sha512_stored_key = NULL, pending_sha512_server_key = NULL
			WHERE number = ? AND state = ?`,
			at, s1.Salt, s1.Iterations, s1.StoredKey, s1.ServerKey,
			s256.Salt, s256.Iterations, s256.StoredKey, s256.ServerKey,
			s512.Salt, iterations512(s512), s512.StoredKey, s512.ServerKey,
			n, unclaimed)
		if err != nil {
			return err
		}
		if set == 0 {
			return sms.ErrStale
		}
	}
	if plan.FirstNotice || plan.PasswordDelivered {
		if _, err := q.exec(ctx, `UPDATE accounts SET password_noticed = COALESCE(password_noticed, ?),
				password_delivered = COALESCE(password_delivered, ?) WHERE number = ?`, noticed, delivered, n); err != nil {
			return err
		}
	}
	// Each stored message moves the unclaimed account's TTL clock.
	_, err := q.exec(ctx, `UPDATE accounts SET touched = ?
		WHERE number = ? AND state = ? AND (touched IS NULL OR touched < ?)`, at, n, unclaimed, at)
	return err
}

// NoticeReceiver returns the account of n as the notices see it.
func (db *DB) NoticeReceiver(ctx context.Context, n auth.Number) (sms.Receiver, error) {
	if r, ok := db.notices.receiver(string(n)); ok {
		return r, nil
	}
	r, err := db.noticeReceiver(ctx, n)
	if err == nil && db.notices != nil {
		db.notices.receivers[string(n)] = r
	}
	return r, err
}

func (db *DB) noticeReceiver(ctx context.Context, n auth.Number) (sms.Receiver, error) {
	var state string
	var noticed, delivered time.Time
	err := db.b.queryRow(ctx, `SELECT state, password_noticed, password_delivered FROM accounts WHERE number = ?`,
		[]any{string(n)}, &state, timeCol{&noticed}, timeCol{&delivered})
	if errors.Is(err, auth.ErrNotFound) {
		return sms.Receiver{}, nil
	}
	if err != nil {
		return sms.Receiver{}, fmt.Errorf("storage: notice receiver %s: %w", n, err)
	}
	return sms.Receiver{Exists: true, Claimed: state != string(auth.StateUnclaimed),
		FirstNoticed: !noticed.IsZero(), PasswordDelivered: !delivered.IsZero()}, nil
}

const windowColumns = `owner, opened, closes, messages, sender`

func scanWindow(r interface{ Scan(...any) error }, w *sms.NoticeWindow) error {
	return r.Scan(&w.To, timeCol{&w.Opened}, timeCol{&w.Closes}, &w.Count, &w.Sender)
}

// NoticeWindow returns the open notice window of to, or auth.ErrNotFound.
func (db *DB) NoticeWindow(ctx context.Context, to string) (sms.NoticeWindow, error) {
	if w, ok := db.notices.window(to); ok {
		if w == nil {
			return sms.NoticeWindow{}, fmt.Errorf("storage: notice window of %s: %w", to, auth.ErrNotFound)
		}
		return *w, nil
	}
	w, err := db.noticeWindow(ctx, to)
	if db.notices != nil {
		switch {
		case err == nil:
			db.notices.windows[to] = &w
		case errors.Is(err, auth.ErrNotFound):
			db.notices.windows[to] = nil
		}
	}
	return w, err
}

func (db *DB) noticeWindow(ctx context.Context, to string) (sms.NoticeWindow, error) {
	var w sms.NoticeWindow
	err := db.b.queryRow(ctx, `SELECT `+windowColumns+` FROM notice_windows WHERE owner = ?`, []any{to},
		&w.To, timeCol{&w.Opened}, timeCol{&w.Closes}, &w.Count, &w.Sender)
	if err != nil {
		return sms.NoticeWindow{}, fmt.Errorf("storage: notice window of %s: %w", to, err)
	}
	return w, nil
}

// DueNoticeWindows returns up to limit windows closing at or before now,
// the earliest first, through the index on closes.
func (db *DB) DueNoticeWindows(ctx context.Context, now time.Time, limit int) ([]sms.NoticeWindow, error) {
	if limit <= 0 {
		return nil, nil
	}
	r, err := db.b.query(ctx, `SELECT `+windowColumns+` FROM notice_windows
		WHERE closes <= ? ORDER BY closes, owner LIMIT ?`, now, limit)
	ws, err := collect(r, err, func(r rows) (w sms.NoticeWindow, err error) {
		err = scanWindow(r, &w)
		return w, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: due notice windows: %w", err)
	}
	return ws, nil
}

// CloseNoticeWindow removes w if it is still the window opened at
// w.Opened and, in the same transaction, queues p (when not nil).
func (db *DB) CloseNoticeWindow(ctx context.Context, w sms.NoticeWindow, p *sms.Pending) (closed bool, err error) {
	if err := db.forgetWindow(ctx, w.To); err != nil {
		return false, err
	}
	err = db.b.inTx(ctx, func(q querier) error {
		gone, err := q.exec(ctx, `DELETE FROM notice_windows WHERE owner = ? AND opened = ?`, w.To, w.Opened)
		if err != nil || gone == 0 {
			return err
		}
		closed = true
		if p == nil {
			return nil
		}
		return enqueueSMS(ctx, q, *p)
	})
	if err != nil {
		return false, fmt.Errorf("storage: close notice window of %s: %w", w.To, err)
	}
	return closed, nil
}

// DropNoticeWindow removes the notice window of to, if any.
func (db *DB) DropNoticeWindow(ctx context.Context, to string) error {
	if err := db.forgetWindow(ctx, to); err != nil {
		return err
	}
	if _, err := db.b.exec(ctx, `DELETE FROM notice_windows WHERE owner = ?`, to); err != nil {
		return fmt.Errorf("storage: drop notice window of %s: %w", to, err)
	}
	return nil
}

// NoticedNumbers returns the numbers sender caused notices to after since,
// in byte order.
func (db *DB) NoticedNumbers(ctx context.Context, sender string, since time.Time) ([]string, error) {
	if since.IsZero() {
		since = time.Unix(0, 0) // a zero time is bound as NULL
	}
	r, err := db.b.query(ctx, `SELECT number FROM notice_new_numbers WHERE sender = ? AND noticed > ? ORDER BY number`,
		sender, since)
	nums, err := collect(r, err, func(r rows) (n string, err error) {
		err = r.Scan(&n)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: numbers noticed for %s: %w", sender, err)
	}
	return nums, nil
}

// PruneNoticedNumbers forgets the numbers noticed, and the new numbers
// written to, before before.
func (db *DB) PruneNoticedNumbers(ctx context.Context, before time.Time) error {
	for _, stmt := range []string{
		`DELETE FROM notice_new_numbers WHERE noticed < ?`,
		`DELETE FROM stored_new_numbers WHERE stored < ?`,
	} {
		if _, err := db.b.exec(ctx, stmt, before); err != nil {
			return fmt.Errorf("storage: prune noticed numbers: %w", err)
		}
	}
	return nil
}

func dropWindow(ctx context.Context, q querier, n string) error {
	_, err := q.exec(ctx, `DELETE FROM notice_windows WHERE owner = ?`, n)
	return err
}

func putWindow(ctx context.Context, q querier, n string, w sms.NoticeWindow) error {
	_, err := q.exec(ctx, `INSERT INTO notice_windows (owner, opened, closes, messages, sender)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (owner) DO UPDATE SET opened = excluded.opened, closes = excluded.closes,
			messages = excluded.messages, sender = excluded.sender`,
		n, w.Opened, w.Closes, w.Count, w.Sender)
	return err
}

// flushNotices writes, before a group's commit, the last state of each
// window its plans changed.
func (db *DB) flushNotices(ctx context.Context) error {
	c := db.notices
	for _, n := range c.changed {
		var err error
		if w := c.windows[n]; w != nil {
			err = putWindow(ctx, db.b, n, *w)
		} else {
			err = dropWindow(ctx, db.b, n)
		}
		if err != nil {
			return fmt.Errorf("storage: notice window of %s: %w", n, err)
		}
	}
	c.changed = c.changed[:0]
	return nil
}

// noticeCache is what the DB of an InTx knows of the receivers and
// windows its notice plans read: read once in the transaction, then
// kept up to date from the plans it writes (planned), so that a group
// of messages to one receiver reads them once. Only the group's own
// writes change them meanwhile: SQLite's write lock keeps everyone else
// out, and on PostgreSQL the notice locks (sms.Hold) keep out the other
// writers of windows; a receiver claimed meanwhile makes a plan stale
// (sms.ErrStale), which drops what is known of it.
type noticeCache struct {
	receivers map[string]sms.Receiver
	windows   map[string]*sms.NoticeWindow // nil: none open
	// changed lists the receivers whose window the plans changed, to be
	// written at the commit (each once).
	changed []string
}

// changeWindow records w (nil: none) as n's window, written at the commit.
func (c *noticeCache) changeWindow(n string, w *sms.NoticeWindow) {
	if !slices.Contains(c.changed, n) {
		c.changed = append(c.changed, n)
	}
	c.windows[n] = w
}

// planned updates the cache after plan for n was written (err nil) or
// rolled back.
func (db *DB) planned(n string, plan sms.NoticePlan, err error) {
	c := db.notices
	if c == nil {
		return
	}
	if err != nil {
		delete(c.receivers, n)
		if !slices.Contains(c.changed, n) { // else it holds what is to be written
			delete(c.windows, n)
		}
		return
	}
	if r, ok := c.receivers[n]; ok || plan.Create {
		if plan.Create {
			r = sms.Receiver{Exists: true}
		}
		r.FirstNoticed = r.FirstNoticed || plan.FirstNotice
		r.PasswordDelivered = r.PasswordDelivered || plan.PasswordDelivered
		c.receivers[n] = r
	}
	switch {
	case plan.Window != nil:
		w := *plan.Window
		w.To = n
		w.Opened, w.Closes = w.Opened.UTC().Truncate(timeUnit), w.Closes.UTC().Truncate(timeUnit)
		c.changeWindow(n, &w)
	case plan.DropWindow:
		c.changeWindow(n, nil)
	}
}

// knownClaimed reports whether n's account is known (in an InTx) to be
// claimed and plan changes nothing of it: the plan's only write to the
// account, the touched time of an unclaimed one, would match no row.
func (db *DB) knownClaimed(n string, plan sms.NoticePlan) bool {
	r, ok := db.notices.receiver(n)
	return ok && r.Exists && r.Claimed && !plan.Create && plan.Credentials == nil && !plan.FirstNotice && !plan.PasswordDelivered
}

func (c *noticeCache) receiver(n string) (sms.Receiver, bool) {
	if c == nil {
		return sms.Receiver{}, false
	}
	r, ok := c.receivers[n]
	return r, ok
}

func (c *noticeCache) window(n string) (*sms.NoticeWindow, bool) {
	if c == nil {
		return nil, false
	}
	w, ok := c.windows[n]
	return w, ok
}

// forgetWindow, in the DB of an InTx, writes what its plans changed
// and forgets n's window, which a statement of its own is about to
// change: it is read again when next needed.
func (db *DB) forgetWindow(ctx context.Context, n string) error {
	if db.notices == nil {
		return nil
	}
	if err := db.flushNotices(ctx); err != nil {
		return err
	}
	delete(db.notices.windows, n)
	return nil
}
