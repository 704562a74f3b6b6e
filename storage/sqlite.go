package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite" // also registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"dialtone/internal/datadir"
)

// sqliteFile is the name of the embedded database inside the data dir.
const sqliteFile = "dialtone.db"

// sqliteParams configure every connection the pool opens. busy_timeout
// (added by openSQLite) makes a writer wait for the lock instead of
// failing; _txlock=immediate takes the write lock at BEGIN, so a
// read-then-write transaction (count, then insert) is never interleaved
// with another writer. synchronous stays at its default (FULL): a stored
// message must survive a power cut too. WAL, which lets readers run beside
// the one writer, is not set here but once by setWAL: see there.
// temp_store(2) keeps temporary data in memory, above all the statement
// journal each INSERT of a transaction keeps to undo itself alone: in a
// file it spilled past 64 KiB, so a batch of archive chunks or offline
// messages wrote (and made, and removed) a temporary file as it went:
// half the write calls of the archive's writer.
const sqliteParams = "?_pragma=foreign_keys(1)&_pragma=temp_store(2)&_txlock=immediate"

// defaultBusyTimeout is how long a writer waits for the lock when no
// store timeout is set (xmppctl, tests).
const defaultBusyTimeout = 10 * time.Second

// walTimeout bounds how long Open retries switching a new database to WAL
// while other processes open it too; as long as the default busy timeout.
const walTimeout = defaultBusyTimeout

// sqliteTypes are the column types of the migrations in SQLite.
var sqliteTypes = strings.NewReplacer(
	"{{id}}", "INTEGER PRIMARY KEY AUTOINCREMENT", // AUTOINCREMENT: ids are never reused after deletes
	"{{key}}", "TEXT", // SQLite compares text byte by byte by default
	"{{bytes}}", "BLOB",
	"{{time}}", "INTEGER", // microseconds since the epoch, UTC
)

// openSQLite opens (creating if needed) dataDir/dialtone.db.
func openSQLite(ctx context.Context, dataDir string, opts Options) (backend, error) {
	if dataDir == "" {
		return nil, fmt.Errorf("storage: no data dir for the embedded SQLite database")
	}
	if err := datadir.Make(dataDir); err != nil {
		return nil, fmt.Errorf("storage: data dir: %w", err)
	}
	path, err := filepath.Abs(filepath.Join(dataDir, sqliteFile))
	if err != nil {
		return nil, fmt.Errorf("storage: data dir: %w", err)
	}
	// The driver reads everything after the first "?" as its parameters.
	if strings.Contains(path, "?") {
		return nil, fmt.Errorf("storage: data dir %q: a path with \"?\" is not supported by the SQLite driver", dataDir)
	}
	// SQLite would make the database 0644 (less the umask), and gives its
	// -wal, -shm and -journal files the database's mode: made 0600 first,
	// they all are. Those of earlier versions are narrowed.
	if err := datadir.Create(path); err != nil {
		return nil, fmt.Errorf("storage: create %s: %w", path, err)
	}
	for _, side := range []string{"-wal", "-shm", "-journal"} {
		if err := datadir.Restrict(path + side); err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
	}
	// A writer waits for a lock held elsewhere (another process: xmppctl,
	// a backup) until its caller's context ends (the driver interrupts the
	// wait), and a caller without a deadline, such as a background job, a
	// little longer than a stanza's caller would.
	busy := defaultBusyTimeout
	if opts.StoreTimeout > 0 {
		busy = statementTimeout(opts.StoreTimeout)
	}
	db, err := sql.Open("sqlite", path+sqliteParams+"&_pragma=busy_timeout("+strconv.FormatInt(busy.Milliseconds(), 10)+")")
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	// database/sql keeps 2 idle connections by default: under concurrent
	// reads (50 logins at once) it opened a connection for nearly every
	// query and closed it after, and each new SQLite connection opens the
	// file and parses the whole schema before its first statement (a
	// quarter of the server's CPU during logins).
	db.SetMaxIdleConns(sqliteIdleConns)
	idle := sqliteIdleTime
	if opts.sqliteIdle > 0 {
		idle = opts.sqliteIdle
	}
	db.SetConnMaxIdleTime(idle)
	b := &sqliteDB{sqliteConn: sqliteConn{&preparedDB{DB: db}}, db: db}
	if err := setWAL(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	return b, nil
}

// sqliteIdleConns is how many SQLite connections stay open between
// queries: enough for the readers of a burst of logins, each about a page
// cache's worth of memory.
const sqliteIdleConns = 16

// sqliteIdleTime is how long a connection stays open unused. The page
// cache, schema and prepared statements of each connection live in the
// driver's own memory (not Go's heap): after a burst of logins on a
// database of 5,000 accounts, the 16 connections held about 11 MB that
// nothing used once the server was quiet, about 2 KiB of each of 5,000
// idle sessions' RSS. database/sql hands out the most recently used
// connection first, so under a steady trickle of queries one or two stay
// open and only the burst's extra ones close; reopening one costs about
// a millisecond of schema parsing, at most once per this time.
const sqliteIdleTime = 10 * time.Second

// setWAL puts the database in WAL mode, which is then kept in the file.
// Switching a new database needs its exclusive lock, and when another
// process opens it at the same moment SQLite answers SQLITE_BUSY at once,
// without waiting busy_timeout (it would risk a deadlock). As a pragma of
// every connection that made Open fail now and then when processes started
// together; done once here, the loser retries and finds WAL already set.
func setWAL(ctx context.Context, db *sql.DB) error {
	ctx, cancel := context.WithTimeout(ctx, walTimeout)
	defer cancel()
	wait := time.Millisecond
	for {
		var mode string
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
		var se *sqlite.Error
		switch {
		case err == nil && strings.EqualFold(mode, "wal"):
			return nil
		case err == nil:
			return fmt.Errorf("journal mode is %q, want wal", mode)
		case !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY:
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("set WAL mode: %w", err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// sqlRunner is what *sql.DB and *sql.Tx have in common.
type sqlRunner interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// preparedTx runs each statement of a transaction prepared once: a group
// commit (DB.InTx) runs the same few statements for every message, and
// compiling SQL is most of what SQLite spends on one. The statements
// close with the transaction.
type preparedTx struct {
	*sql.Tx
	stmts map[string]*sql.Stmt
}

func (p *preparedTx) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := p.stmts[query]; ok {
		return st, nil
	}
	st, err := p.Tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if p.stmts == nil {
		p.stmts = map[string]*sql.Stmt{}
	}
	p.stmts[query] = st
	return st, nil
}

func (p *preparedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (p *preparedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (p *preparedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := p.stmt(ctx, query)
	if err != nil {
		// a Row that reports err: the statement is refused again, unprepared
		return p.Tx.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// preparedDB runs the statements outside transactions prepared once (per
// connection: database/sql prepares a Stmt again on each connection it
// runs on): the login path's reads (the account, twice; the roster)
// otherwise compiled their SQL on every call, a sixth of a login's CPU.
// At most maxPrepared statements are kept; queries built with a varying
// number of placeholders may pass that, and then run unprepared.
type preparedDB struct {
	*sql.DB
	stmts sync.Map // query string -> *sql.Stmt
	n     atomic.Int32
}

// maxPrepared bounds preparedDB's statements: the code's queries, with
// room for the variants of the ones built per call.
const maxPrepared = 512

// stmt returns the prepared statement of query, or nil: the caller runs
// it unprepared (and an error in the SQL comes back from that).
func (p *preparedDB) stmt(ctx context.Context, query string) *sql.Stmt {
	if st, ok := p.stmts.Load(query); ok {
		return st.(*sql.Stmt)
	}
	if p.n.Load() >= maxPrepared {
		return nil
	}
	st, err := p.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	if prev, loaded := p.stmts.LoadOrStore(query, st); loaded {
		_ = st.Close()
		return prev.(*sql.Stmt)
	}
	p.n.Add(1)
	return st
}

func (p *preparedDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return p.DB.ExecContext(ctx, query, args...)
}

func (p *preparedDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return p.DB.QueryContext(ctx, query, args...)
}

func (p *preparedDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := p.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return p.DB.QueryRowContext(ctx, query, args...)
}

// sqliteConn adapts database/sql to querier.
type sqliteConn struct{ r sqlRunner }

func sqliteTime(t time.Time) any { return t.UnixMicro() }

func (c sqliteConn) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := c.r.ExecContext(ctx, query, bindArgs(args, sqliteTime)...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c sqliteConn) query(ctx context.Context, query string, args ...any) (rows, error) {
	r, err := c.r.QueryContext(ctx, query, bindArgs(args, sqliteTime)...)
	if err != nil {
		return nil, err
	}
	return sqlRows{r}, nil
}

func (c sqliteConn) queryRow(ctx context.Context, query string, args []any, dest ...any) error {
	return noRows(c.r.QueryRowContext(ctx, query, bindArgs(args, sqliteTime)...).Scan(dest...))
}

// sqlRows drops the error of Close, which Err already reports.
type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

// sqliteDB is the embedded backend.
type sqliteDB struct {
	sqliteConn
	db *sql.DB
}

func (b *sqliteDB) inTx(ctx context.Context, fn func(querier) error) error {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(sqliteConn{&preparedTx{Tx: tx}}); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (b *sqliteDB) lock(context.Context, querier, string) error { return nil }

func (b *sqliteDB) unbounded(context.Context, querier) error { return nil }

func (b *sqliteDB) ddl(stmt string) string { return sqliteTypes.Replace(stmt) }

func (b *sqliteDB) ping(ctx context.Context) error { return b.db.PingContext(ctx) }

func (b *sqliteDB) close() error { return b.db.Close() }

func (b *sqliteDB) driver() string { return "sqlite" }
