package storage

import (
	"context"
	"fmt"

	"dialtone/push"
)

var _ push.Store = (*DB)(nil)

// AddPush implements push.Store.
func (db *DB) AddPush(ctx context.Context, r push.Registration) error {
	opts := r.Options
	if opts == nil {
		opts = []byte{}
	}
	_, err := db.b.exec(ctx, `INSERT INTO push_registrations (owner, jid, node, options) VALUES (?, ?, ?, ?)
		ON CONFLICT (owner, jid, node) DO UPDATE SET options = excluded.options`, r.Owner, r.JID, r.Node, opts)
	if err != nil {
		return fmt.Errorf("storage: add push registration of %s: %w", r.Owner, err)
	}
	return nil
}

// RemovePush implements push.Store.
func (db *DB) RemovePush(ctx context.Context, owner, jid, node string) error {
	_, err := db.b.exec(ctx, `DELETE FROM push_registrations WHERE owner = ? AND jid = ? AND (? = '' OR node = ?)`, owner, jid, node, node)
	if err != nil {
		return fmt.Errorf("storage: remove push registration of %s: %w", owner, err)
	}
	return nil
}

// PushRegistrations implements push.Store.
func (db *DB) PushRegistrations(ctx context.Context, owner string) ([]push.Registration, error) {
	r, err := db.b.query(ctx, `SELECT jid, node, options FROM push_registrations WHERE owner = ? ORDER BY jid, node`, owner)
	regs, err := collect(r, err, func(r rows) (p push.Registration, err error) {
		p.Owner = owner
		err = r.Scan(&p.JID, &p.Node, &p.Options)
		if len(p.Options) == 0 {
			p.Options = nil
		}
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: push registrations of %s: %w", owner, err)
	}
	return regs, nil
}
