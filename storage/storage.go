// Package storage implements the domain packages' store interfaces
// (auth.Accounts, offline.Store, upload.Store, sms.Outbox, sms.NoticeStore, and the
// small stores of the XMPP modules, whose methods use only builtin types)
// on embedded SQLite or on PostgreSQL, with one set of SQL for both and
// versioned migrations that run at Open. It imports no XMPP package: the
// modules' interfaces are checked against it where they are wired.
package storage

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"dialtone/auth"
	"dialtone/offline"
)

// The store satisfies every interface the domain packages declare for it.
var (
	_ auth.Accounts = (*DB)(nil)
	_ offline.Store = (*DB)(nil)
)

// DB is the server's store, on SQLite or PostgreSQL. It is safe for
// concurrent use.
type DB struct {
	b backend
	// now is the clock for the times the store itself stamps (account
	// creation, offline messages without a stamp).
	now func() time.Time
	// usage caches, in the DB of an InTx, what each owner's stored
	// messages take; nil elsewhere.
	usage map[string]offlineUsage
	// notices caches, in the DB of an InTx, the receivers and windows
	// that notice plans read; nil elsewhere.
	notices *noticeCache
	// stamps writes the login stamps in groups (RecordLogin); nil in the
	// DB of an InTx, which writes them in its transaction.
	stamps *loginStamps
}

// Open opens the store and brings its schema up to date. An empty
// databaseURL means the embedded SQLite database dataDir/dialtone.db (dataDir
// is made, mode 0700, when missing); a postgres:// or postgresql:// URL
// means that PostgreSQL database. Several processes may Open the same
// database at once: migrations are serialised.
func Open(ctx context.Context, databaseURL, dataDir string) (*DB, error) {
	return OpenWith(ctx, databaseURL, dataDir, Options{})
}

// Options tune the store's connections; the zero value is the defaults.
type Options struct {
	// MaxConns is the PostgreSQL pool size (XMPPD_DATABASE_MAX_CONNS);
	// 0: pgx's default.
	MaxConns int
	// StoreTimeout is the deadline callers put on a store call made for
	// a stanza (XMPPD_STORE_TIMEOUT). PostgreSQL ends a statement that
	// runs a little longer (statement_timeout), so that one nobody waits
	// for any more does not hold its locks, and SQLite waits as long for
	// a lock held elsewhere (busy_timeout) when the caller has no
	// deadline of its own. 0: no statement timeout, and SQLite waits
	// defaultBusyTimeout.
	StoreTimeout time.Duration

	// sqliteIdle is how long an idle SQLite connection stays open; 0:
	// sqliteIdleTime (a test's shorter one).
	sqliteIdle time.Duration
}

// statementTimeout is PostgreSQL's statement_timeout, and SQLite's busy
// timeout, for a store whose callers give up after storeTimeout: a little
// later, so that the caller's deadline, which it reports, comes first.
func statementTimeout(storeTimeout time.Duration) time.Duration {
	if storeTimeout <= 0 {
		return 0
	}
	return storeTimeout + max(storeTimeout/5, time.Second)
}

// OpenWith is Open with opts.
func OpenWith(ctx context.Context, databaseURL, dataDir string, opts Options) (*DB, error) {
	var b backend
	var err error
	if databaseURL == "" {
		b, err = openSQLite(ctx, dataDir, opts)
	} else {
		u, perr := url.Parse(databaseURL)
		switch {
		case perr != nil:
			// url.Error quotes the URL, which may hold a password.
			return nil, fmt.Errorf("storage: database URL does not parse; expected empty (embedded SQLite) or postgres://USER@HOST/DB")
		case strings.EqualFold(u.Scheme, "postgres"), strings.EqualFold(u.Scheme, "postgresql"):
			b, err = openPostgres(ctx, databaseURL, opts)
		default:
			return nil, fmt.Errorf("storage: database URL scheme %q is not supported; expected empty (embedded SQLite), postgres:// or postgresql://", u.Scheme)
		}
	}
	if err != nil {
		return nil, err
	}
	db := &DB{b: b, now: time.Now, stamps: &loginStamps{}}
	if err := db.migrate(ctx); err != nil {
		b.close()
		return nil, err
	}
	return db, nil
}

// Ping checks that the database answers (for /healthz).
func (db *DB) Ping(ctx context.Context) error {
	if err := db.b.ping(ctx); err != nil {
		return fmt.Errorf("storage: ping %s: %w", db.b.driver(), err)
	}
	return nil
}

// Close releases the connections. The DB must not be used afterwards.
func (db *DB) Close() error {
	if db.stamps != nil {
		db.stamps.close()
	}
	return db.b.close()
}

// Driver names the engine: "sqlite" or "postgres".
func (db *DB) Driver() string { return db.b.driver() }

// stamp is the current time as the store keeps it.
func (db *DB) stamp() time.Time { return db.now().UTC().Truncate(timeUnit) }
