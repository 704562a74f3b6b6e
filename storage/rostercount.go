package storage

import (
	"context"
	"fmt"
)

// RosterCount returns the number of roster items stored for owner, those
// kept only for a pending inbound request included (XMPPD_ROSTER_MAX
// counts them all). The primary key (owner, contact) serves the count.
func (db *DB) RosterCount(ctx context.Context, owner string) (int, error) {
	var n int64
	if err := db.b.queryRow(ctx, `SELECT COUNT(*) FROM roster_items WHERE owner = ?`, []any{owner}, &n); err != nil {
		return 0, fmt.Errorf("storage: count roster items of %s: %w", owner, err)
	}
	return int(n), nil
}
