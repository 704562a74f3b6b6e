package storage

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"dialtone/auth"
)

// discoverBatch is how many numbers one lookup statement names: well
// under SQLite's and PostgreSQL's limits on parameters, and few enough
// statements for a phone book of thousands.
const discoverBatch = 500

// SetHidden sets whether n opted out of contact discovery (SPEC.md "App
// API"); auth.ErrNotFound when n has no account.
func (db *DB) SetHidden(ctx context.Context, n auth.Number, hidden bool) error {
	changed, err := db.b.exec(ctx, `UPDATE accounts SET hidden = ? WHERE number = ?`, hidden, string(n))
	if err == nil && changed == 0 {
		err = auth.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("storage: set hidden of %s: %w", n, err)
	}
	return nil
}

// Hidden reports whether n opted out of contact discovery;
// auth.ErrNotFound when n has no account.
func (db *DB) Hidden(ctx context.Context, n auth.Number) (bool, error) {
	var hidden bool
	if err := db.b.queryRow(ctx, `SELECT hidden FROM accounts WHERE number = ?`, []any{string(n)}, &hidden); err != nil {
		return false, fmt.Errorf("storage: hidden of %s: %w", n, err)
	}
	return hidden, nil
}

// Discoverable returns those of numbers (canonical, each once) that have
// an active account that has not opted out of contact discovery, in
// ascending order. Nothing of the query is kept.
func (db *DB) Discoverable(ctx context.Context, numbers []string) ([]string, error) {
	var found []string
	for chunk := range slices.Chunk(numbers, discoverBatch) {
		args := make([]any, 0, len(chunk)+1)
		args = append(args, string(auth.StateActive))
		for _, n := range chunk {
			args = append(args, n)
		}
		r, err := db.b.query(ctx, `SELECT number FROM accounts
			WHERE state = ? AND NOT hidden AND number IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
		got, err := collect(r, err, func(r rows) (string, error) {
			var n string
			return n, r.Scan(&n)
		})
		if err != nil {
			return nil, fmt.Errorf("storage: discoverable numbers: %w", err)
		}
		found = append(found, got...)
	}
	slices.Sort(found)
	return found, nil
}
