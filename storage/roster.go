package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"dialtone/auth"
	"dialtone/roster"
)

// rosterColumns is the column list that scanRosterItem reads, in its order.
const rosterColumns = `contact, name, subscription, pending_out, pending_in, approved, in_roster, groups_json`

// scanRosterItem reads one item. Groups are kept as a JSON array so that
// their order, and nil as opposed to empty, come back exactly as stored.
func scanRosterItem(scan func(dest ...any) error) (roster.Item, error) {
	var it roster.Item
	var groups string
	if err := scan(&it.Contact, &it.Name, &it.Subscription, &it.PendingOut, &it.PendingIn,
		&it.Approved, &it.InRoster, &groups); err != nil {
		return roster.Item{}, err
	}
	if err := json.Unmarshal([]byte(groups), &it.Groups); err != nil {
		return roster.Item{}, fmt.Errorf("groups of %s: %w", it.Contact, err)
	}
	return it, nil
}

// Roster returns all items of owner, ordered by contact, and the roster
// version (0 when it never changed).
func (db *DB) Roster(ctx context.Context, owner string) (items []roster.Item, version int64, err error) {
	// The version is read before the items, without a transaction (which on
	// SQLite would take the write lock): a change in between makes the
	// items newer than the version, never older, so a client that caches
	// them under that version only refetches once more.
	version, err = rosterVersion(ctx, db.b, owner)
	if err == nil {
		r, qerr := db.b.query(ctx, `SELECT `+rosterColumns+` FROM roster_items WHERE owner = ? ORDER BY contact`, owner)
		items, err = collect(r, qerr, func(r rows) (roster.Item, error) { return scanRosterItem(r.Scan) })
	}
	if err != nil {
		return nil, 0, fmt.Errorf("storage: roster of %s: %w", owner, err)
	}
	return items, version, nil
}

// RosterItem returns one item of owner's roster, or auth.ErrNotFound.
func (db *DB) RosterItem(ctx context.Context, owner, contact string) (roster.Item, error) {
	it, err := scanRosterItem(func(dest ...any) error {
		return db.b.queryRow(ctx, `SELECT `+rosterColumns+` FROM roster_items WHERE owner = ? AND contact = ?`,
			[]any{owner, contact}, dest...)
	})
	if err != nil {
		return roster.Item{}, fmt.Errorf("storage: roster item %s of %s: %w", contact, owner, err)
	}
	return it, nil
}

// PutRosterItem inserts or replaces the item and returns the new version.
func (db *DB) PutRosterItem(ctx context.Context, owner string, it roster.Item) (version int64, err error) {
	groups, err := json.Marshal(it.Groups)
	if err != nil {
		return 0, fmt.Errorf("storage: put roster item %s of %s: %w", it.Contact, owner, err)
	}
	err = db.b.inTx(ctx, func(q querier) error {
		_, err := q.exec(ctx, `INSERT INTO roster_items (owner, `+rosterColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (owner, contact) DO UPDATE SET
				name = excluded.name, subscription = excluded.subscription,
				pending_out = excluded.pending_out, pending_in = excluded.pending_in,
				approved = excluded.approved, in_roster = excluded.in_roster,
				groups_json = excluded.groups_json`,
			owner, it.Contact, it.Name, it.Subscription, it.PendingOut, it.PendingIn, it.Approved, it.InRoster, string(groups))
		if err != nil {
			return err
		}
		version, err = bumpRosterVersion(ctx, q, owner)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("storage: put roster item %s of %s: %w", it.Contact, owner, err)
	}
	return version, nil
}

// DeleteRosterItem removes the item and returns the new version. Deleting
// an absent item changes nothing, so the version stays what it was.
func (db *DB) DeleteRosterItem(ctx context.Context, owner, contact string) (version int64, err error) {
	err = db.b.inTx(ctx, func(q querier) error {
		gone, err := q.exec(ctx, `DELETE FROM roster_items WHERE owner = ? AND contact = ?`, owner, contact)
		switch {
		case err != nil:
			return err
		case gone == 0:
			version, err = rosterVersion(ctx, q, owner)
		default:
			version, err = bumpRosterVersion(ctx, q, owner)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("storage: delete roster item %s of %s: %w", contact, owner, err)
	}
	return version, nil
}

// bumpRosterVersion increments owner's version inside the caller's
// transaction; the row lock of the upsert orders concurrent changes.
func bumpRosterVersion(ctx context.Context, q querier, owner string) (v int64, err error) {
	err = q.queryRow(ctx, `INSERT INTO roster_versions (owner, version) VALUES (?, 1)
		ON CONFLICT (owner) DO UPDATE SET version = roster_versions.version + 1
		RETURNING version`, []any{owner}, &v)
	return v, err
}

// rosterVersion is owner's current version, 0 when the roster never changed.
func rosterVersion(ctx context.Context, q querier, owner string) (v int64, err error) {
	err = q.queryRow(ctx, `SELECT version FROM roster_versions WHERE owner = ?`, []any{owner}, &v)
	if errors.Is(err, auth.ErrNotFound) {
		return 0, nil
	}
	return v, err
}
