package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"dialtone/auth"
)

// What the nodes of a cluster share through the store (SPEC.md "Several
// servers (clustering)"): limits (auth.SharedLimits), secret keys made
// once, and jobs that run on one node at a time (RunExclusive). On SQLite
// there is one node; the same methods work and RunExclusive just runs.

// UpdateLimit implements auth.SharedLimits: the key's row is read and
// written in one transaction under an advisory lock on the key (on SQLite
// the write transaction is already exclusive), so two nodes counting the
// same key at once count twice, never once.
func (db *DB) UpdateLimit(ctx context.Context, kind, key string, now time.Time,
	fn func(state []byte) (auth.LimitState, error)) error {
	err := db.b.inTx(ctx, func(q querier) error {
		if err := db.b.lock(ctx, q, "dialtone limit "+kind+" "+key); err != nil {
			return err
		}
		var state []byte
		var expires time.Time
		err := q.queryRow(ctx, `SELECT state, expires FROM shared_limits WHERE kind = ? AND key = ?`,
			[]any{kind, key}, &state, timeCol{&expires})
		switch {
		case errors.Is(err, auth.ErrNotFound):
			state = nil
		case err != nil:
			return err
		case !expires.After(now):
			state = nil // expired: as if it were not there
		}
		next, err := fn(state)
		if err != nil {
			return err
		}
		if next.State == nil {
			_, err = q.exec(ctx, `DELETE FROM shared_limits WHERE kind = ? AND key = ?`, kind, key)
			return err
		}
		_, err = q.exec(ctx, `INSERT INTO shared_limits (kind, key, state, held_until, expires) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (kind, key) DO UPDATE SET state = excluded.state, held_until = excluded.held_until, expires = excluded.expires`,
			kind, key, next.State, next.Held, next.Expires)
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: limit %s %s: %w", kind, key, err)
	}
	return nil
}

// HeldLimits implements auth.SharedLimits.
func (db *DB) HeldLimits(ctx context.Context, kind string, now time.Time, max int) (map[string]time.Time, error) {
	type held struct {
		key   string
		until time.Time
	}
	r, err := db.b.query(ctx, `SELECT key, held_until FROM shared_limits WHERE kind = ? AND held_until > ? LIMIT ?`, kind, now, max)
	all, err := collect(r, err, func(r rows) (h held, err error) {
		err = r.Scan(&h.key, timeCol{&h.until})
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: held limits %s: %w", kind, err)
	}
	out := make(map[string]time.Time, len(all))
	for _, h := range all {
		out[h.key] = h.until
	}
	return out, nil
}

// clearBatch bounds the keys one statement of ClearLimits names.
const clearBatch = 500

// ClearLimits implements auth.SharedLimits. On PostgreSQL one statement
// per batch of keys: a node clears the lockouts of every login it
// accepted, so this runs at the login rate (batched by the caller).
func (db *DB) ClearLimits(ctx context.Context, kind string, keys []string) error {
	for len(keys) > 0 {
		n := min(len(keys), clearBatch)
		batch := keys[:n]
		keys = keys[n:]
		var err error
		if _, ok := db.b.(*postgresDB); ok {
			_, err = db.b.exec(ctx, `DELETE FROM shared_limits WHERE kind = ? AND key = ANY(?)`, kind, batch)
		} else {
			err = db.b.inTx(ctx, func(q querier) error {
				for _, k := range batch {
					if _, err := q.exec(ctx, `DELETE FROM shared_limits WHERE kind = ? AND key = ?`, kind, k); err != nil {
						return err
					}
				}
				return nil
			})
		}
		if err != nil {
			return fmt.Errorf("storage: clear limits %s: %w", kind, err)
		}
	}
	return nil
}

// PruneLimits implements auth.SharedLimits.
func (db *DB) PruneLimits(ctx context.Context, now time.Time) error {
	if _, err := db.b.exec(ctx, `DELETE FROM shared_limits WHERE expires <= ?`, now); err != nil {
		return fmt.Errorf("storage: prune limits: %w", err)
	}
	return nil
}

// SharedSecret returns the secret stored under name, storing candidate
// first when there is none: the first node to start makes a key and every
// other node reads that one, whichever started first.
func (db *DB) SharedSecret(ctx context.Context, name string, candidate []byte) ([]byte, error) {
	if len(candidate) == 0 {
		return nil, fmt.Errorf("storage: shared secret %s: empty candidate", name)
	}
	var value []byte
	err := db.b.inTx(ctx, func(q querier) error {
		if _, err := q.exec(ctx, `INSERT INTO shared_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`,
			name, candidate); err != nil {
			return err
		}
		return q.queryRow(ctx, `SELECT value FROM shared_secrets WHERE name = ?`, []any{name}, &value)
	})
	if err != nil {
		return nil, fmt.Errorf("storage: shared secret %s: %w", name, err)
	}
	return value, nil
}

// RunExclusive runs fn under a cluster-wide lock named name, so that of
// all the nodes on one PostgreSQL database exactly one runs it at a time
// (the unclaimed-account sweeper, the upload expiry, the archive retention
// and the notice windows). It returns when ctx is done, or when fn returned
// on its own. A node that does not hold the lock tries again every retry;
// the holder checks every retry that its lock's connection still lives and
// cancels fn's context when it does not (another node may hold the lock
// then). The lock is a session advisory lock (pg_try_advisory_lock) on one
// connection of the store's own, outside the pool, so jobs take no
// connection from stanzas and a node that dies frees its locks with its
// connection. On SQLite, one node, fn just runs.
func (db *DB) RunExclusive(ctx context.Context, name string, retry time.Duration, fn func(ctx context.Context)) {
	pg, ok := db.b.(*postgresDB)
	if !ok {
		fn(ctx)
		return
	}
	for ctx.Err() == nil {
		if gen, held := pg.jobs.try(ctx, pg, name); held {
			if pg.jobs.hold(ctx, gen, name, retry, fn) {
				return
			}
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// jobLocks is the one connection that holds a store's job locks. Its
// generation changes when the connection is replaced: every lock taken on
// an older one is lost.
type jobLocks struct {
	mu   sync.Mutex
	conn *pgx.Conn
	gen  uint64
}

// jobKey is the advisory lock key of a job: the namespace keeps it apart
// from the transaction locks of db.b.lock.
func jobKey(name string) string { return "dialtone job " + name }

// try takes the lock of name if no node holds it.
func (j *jobLocks) try(ctx context.Context, pg *postgresDB, name string) (gen uint64, held bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.conn == nil {
		conn, err := pgx.ConnectConfig(ctx, pg.pool.Config().ConnConfig.Copy())
		if err != nil {
			return 0, false
		}
		j.conn = conn
		j.gen++
	}
	if err := j.conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, jobKey(name)).Scan(&held); err != nil {
		j.dropLocked()
		return 0, false
	}
	return j.gen, held
}

// hold runs fn while the lock of generation gen lives and ctx is not done,
// then unlocks. It reports whether fn returned on its own.
func (j *jobLocks) hold(ctx context.Context, gen uint64, name string, check time.Duration, fn func(context.Context)) (returned bool) {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(fctx)
	}()
	t := time.NewTicker(check)
	defer t.Stop()
	for {
		select {
		case <-done:
			j.unlock(gen, name)
			return ctx.Err() == nil
		case <-ctx.Done():
		case <-t.C:
			if j.alive(ctx, gen) {
				continue
			}
		}
		cancel()
		<-done
		j.unlock(gen, name)
		return false
	}
}

// alive pings the connection of generation gen; a failed ping drops it.
func (j *jobLocks) alive(ctx context.Context, gen uint64) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.conn == nil || j.gen != gen {
		return false
	}
	if err := j.conn.Ping(ctx); err != nil {
		j.dropLocked()
		return false
	}
	return true
}

// unlock frees the lock of name if it was taken on the current connection.
func (j *jobLocks) unlock(gen uint64, name string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.conn == nil || j.gen != gen {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := j.conn.Exec(ctx, `SELECT pg_advisory_unlock(hashtext($1))`, jobKey(name)); err != nil {
		j.dropLocked() // closing the connection frees its locks
	}
}

// dropLocked closes the connection, which frees every lock it held.
// Called with mu held.
func (j *jobLocks) dropLocked() {
	if j.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = j.conn.Close(ctx)
		cancel()
		j.conn = nil
	}
}

// close ends the job connection with the store.
func (j *jobLocks) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.dropLocked()
}
