package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"dialtone/auth"
	"dialtone/pubsub"
)

var _ pubsub.Store = (*DB)(nil)

// PEPNodes returns every node of owner, by name.
func (db *DB) PEPNodes(ctx context.Context, owner string) ([]pubsub.Node, error) {
	r, err := db.b.query(ctx, `SELECT node, config FROM pep_nodes WHERE owner = ? ORDER BY node`, owner)
	nodes, err := collect(r, err, func(r rows) (n pubsub.Node, err error) {
		var cfg string
		err = r.Scan(&n.Name, &cfg)
		n.Config = pubsub.Decode(cfg)
		return n, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: PEP nodes of %s: %w", owner, err)
	}
	return nodes, nil
}

// PEPNode returns the configuration of one node, or pubsub.ErrNotFound.
func (db *DB) PEPNode(ctx context.Context, owner, node string) (pubsub.Config, error) {
	c, err := pepNode(ctx, db.b, owner, node)
	if err != nil {
		return c, fmt.Errorf("storage: PEP node %q of %s: %w", node, owner, err)
	}
	return c, nil
}

func pepNode(ctx context.Context, q querier, owner, node string) (pubsub.Config, error) {
	var cfg string
	err := q.queryRow(ctx, `SELECT config FROM pep_nodes WHERE owner = ? AND node = ?`, []any{owner, node}, &cfg)
	if errors.Is(err, auth.ErrNotFound) {
		return pubsub.Config{}, pubsub.ErrNotFound
	}
	if err != nil {
		return pubsub.Config{}, err
	}
	return pubsub.Decode(cfg), nil
}

// PutPEPNode creates node or replaces its configuration and trims its
// items to the new MaxItems.
func (db *DB) PutPEPNode(ctx context.Context, owner, node string, c pubsub.Config) error {
	err := db.b.inTx(ctx, func(q querier) error {
		if err := db.b.lock(ctx, q, "dialtone pep "+owner+" "+node); err != nil {
			return err
		}
		if _, err := q.exec(ctx, `INSERT INTO pep_nodes (owner, node, config) VALUES (?, ?, ?)
			ON CONFLICT (owner, node) DO UPDATE SET config = excluded.config`, owner, node, c.Encode()); err != nil {
			return err
		}
		return trimPEP(ctx, q, owner, node, c.MaxItems)
	})
	if err != nil {
		return fmt.Errorf("storage: put PEP node %q of %s: %w", node, owner, err)
	}
	return nil
}

// trimPEP drops the oldest items of node beyond keep.
func trimPEP(ctx context.Context, q querier, owner, node string, keep int) error {
	_, err := q.exec(ctx, `DELETE FROM pep_items WHERE owner = ? AND node = ? AND seq NOT IN (
		SELECT seq FROM pep_items WHERE owner = ? AND node = ? ORDER BY seq DESC LIMIT ?)`,
		owner, node, owner, node, keep)
	return err
}

// DeletePEPNode removes node and its items.
func (db *DB) DeletePEPNode(ctx context.Context, owner, node string) error {
	err := db.b.inTx(ctx, func(q querier) error {
		n, err := q.exec(ctx, `DELETE FROM pep_nodes WHERE owner = ? AND node = ?`, owner, node)
		if err != nil {
			return err
		}
		if n == 0 {
			return pubsub.ErrNotFound
		}
		if _, err = q.exec(ctx, `DELETE FROM pep_items WHERE owner = ? AND node = ?`, owner, node); err != nil {
			return err
		}
		_, err = q.exec(ctx, `DELETE FROM pep_subscriptions WHERE owner = ? AND node = ?`, owner, node)
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: delete PEP node %q of %s: %w", node, owner, err)
	}
	return nil
}

// PublishPEPItem stores it as node's newest item, creating the node with
// c when there is none; publishes to one node are serialised so that seq
// is unique and increasing.
func (db *DB) PublishPEPItem(ctx context.Context, owner, node string, c pubsub.Config, it pubsub.Item) (cfg pubsub.Config, created bool, err error) {
	err = db.b.inTx(ctx, func(q querier) error {
		if err := db.b.lock(ctx, q, "dialtone pep "+owner+" "+node); err != nil {
			return err
		}
		cfg, err = pepNode(ctx, q, owner, node)
		if errors.Is(err, pubsub.ErrNotFound) {
			cfg, created = c, true
			_, err = q.exec(ctx, `INSERT INTO pep_nodes (owner, node, config) VALUES (?, ?, ?)`, owner, node, c.Encode())
		}
		if err != nil {
			return err
		}
		if _, err := q.exec(ctx, `DELETE FROM pep_items WHERE owner = ? AND node = ? AND id = ?`, owner, node, it.ID); err != nil {
			return err
		}
		if _, err := q.exec(ctx, `INSERT INTO pep_items (owner, node, id, seq, payload)
			SELECT ?, ?, ?, COALESCE(MAX(seq), 0) + 1, ? FROM pep_items WHERE owner = ? AND node = ?`,
			owner, node, it.ID, it.Payload, owner, node); err != nil {
			return err
		}
		return trimPEP(ctx, q, owner, node, cfg.MaxItems)
	})
	if err != nil {
		return cfg, false, fmt.Errorf("storage: publish to PEP node %q of %s: %w", node, owner, err)
	}
	return cfg, created, nil
}

// RetractPEPItem removes one item.
func (db *DB) RetractPEPItem(ctx context.Context, owner, node, id string) error {
	n, err := db.b.exec(ctx, `DELETE FROM pep_items WHERE owner = ? AND node = ? AND id = ?`, owner, node, id)
	if err == nil && n == 0 {
		err = pubsub.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("storage: retract PEP item %q of %q of %s: %w", id, node, owner, err)
	}
	return nil
}

// PEPItems returns items of node, newest first.
func (db *DB) PEPItems(ctx context.Context, owner, node string, ids []string, max int) ([]pubsub.Item, error) {
	var items []pubsub.Item
	err := db.b.inTx(ctx, func(q querier) error {
		if _, err := pepNode(ctx, q, owner, node); err != nil {
			return err
		}
		query := `SELECT id, payload FROM pep_items WHERE owner = ? AND node = ?`
		args := []any{owner, node}
		if len(ids) > 0 {
			query += ` AND id IN (?` + strings.Repeat(", ?", len(ids)-1) + `)`
			for _, id := range ids {
				args = append(args, id)
			}
		}
		query += ` ORDER BY seq DESC`
		if max > 0 && len(ids) == 0 {
			query += ` LIMIT ?`
			args = append(args, max)
		}
		r, err := q.query(ctx, query, args...)
		items, err = collect(r, err, func(r rows) (it pubsub.Item, err error) {
			err = r.Scan(&it.ID, &it.Payload)
			return it, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: PEP items of %q of %s: %w", node, owner, err)
	}
	return items, nil
}

// SubscribePEP records sub's subscription to node; an existing one is
// kept. The node must exist (pubsub.ErrNotFound).
func (db *DB) SubscribePEP(ctx context.Context, owner, node, sub string) error {
	err := db.b.inTx(ctx, func(q querier) error {
		if _, err := pepNode(ctx, q, owner, node); err != nil {
			return err
		}
		_, err := q.exec(ctx, `INSERT INTO pep_subscriptions (owner, node, subscriber) VALUES (?, ?, ?)
			ON CONFLICT (owner, node, subscriber) DO NOTHING`, owner, node, sub)
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: subscribe %s to PEP node %q of %s: %w", sub, node, owner, err)
	}
	return nil
}

// UnsubscribePEP removes sub's subscription to node, or reports
// pubsub.ErrNotFound.
func (db *DB) UnsubscribePEP(ctx context.Context, owner, node, sub string) error {
	n, err := db.b.exec(ctx, `DELETE FROM pep_subscriptions WHERE owner = ? AND node = ? AND subscriber = ?`, owner, node, sub)
	if err == nil && n == 0 {
		err = pubsub.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("storage: unsubscribe %s from PEP node %q of %s: %w", sub, node, owner, err)
	}
	return nil
}

// PEPSubscriptions returns the subscriptions to owner's nodes, to node
// only when it is not empty, by node and subscriber.
func (db *DB) PEPSubscriptions(ctx context.Context, owner, node string) ([]pubsub.Subscription, error) {
	query, args := `SELECT node, subscriber FROM pep_subscriptions WHERE owner = ?`, []any{owner}
	if node != "" {
		query += ` AND node = ?`
		args = append(args, node)
	}
	r, err := db.b.query(ctx, query+` ORDER BY node, subscriber`, args...)
	subs, err := collect(r, err, func(r rows) (s pubsub.Subscription, err error) {
		err = r.Scan(&s.Node, &s.JID)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: PEP subscriptions of %s: %w", owner, err)
	}
	return subs, nil
}
