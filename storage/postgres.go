package storage

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// postgresTypes are the column types of the migrations in PostgreSQL.
var postgresTypes = strings.NewReplacer(
	"{{id}}", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
	// Byte order whatever the database's locale, as in SQLite: listings
	// come out the same on both engines, and the indexes need no locale.
	"{{key}}", `TEXT COLLATE "C"`,
	"{{bytes}}", "BYTEA",
	"{{time}}", "TIMESTAMPTZ",
)

// openPostgres connects a pool and checks that the server answers, so that a
// wrong URL stops the server at start rather than at the first message.
func openPostgres(ctx context.Context, databaseURL string, opts Options) (backend, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// The URL may hold a password: name only what is wrong with it.
		return nil, fmt.Errorf("storage: PostgreSQL URL: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = int32(min(opts.MaxConns, math.MaxInt32))
	}
	// A statement_timeout in the URL is the operator's and stays.
	if t := statementTimeout(opts.StoreTimeout); t > 0 && cfg.ConnConfig.RuntimeParams["statement_timeout"] == "" {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(t.Milliseconds(), 10)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("storage: PostgreSQL %s: %w", cfg.ConnConfig.Host, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("storage: PostgreSQL %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	return &postgresDB{postgresConn: postgresConn{pool}, pool: pool}, nil
}

// pgxRunner is what *pgxpool.Pool and pgx.Tx have in common.
type pgxRunner interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// postgresConn adapts pgx to querier.
type postgresConn struct{ r pgxRunner }

func postgresTime(t time.Time) any { return t }

// rebind turns the "?" placeholders of the shared SQL into $1, $2, …
// None of the store's statements has a "?" inside a string literal.
func rebind(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r != '?' {
			b.WriteRune(r)
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

func (c postgresConn) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := c.r.Exec(ctx, rebind(query), bindArgs(args, postgresTime)...)
	return tag.RowsAffected(), err
}

func (c postgresConn) query(ctx context.Context, query string, args ...any) (rows, error) {
	return c.r.Query(ctx, rebind(query), bindArgs(args, postgresTime)...)
}

func (c postgresConn) queryRow(ctx context.Context, query string, args []any, dest ...any) error {
	return noRows(c.r.QueryRow(ctx, rebind(query), bindArgs(args, postgresTime)...).Scan(dest...))
}

// postgresDB is the PostgreSQL backend.
type postgresDB struct {
	postgresConn
	pool *pgxpool.Pool
	// jobs holds the job locks of RunExclusive.
	jobs jobLocks
}

func (b *postgresDB) inTx(ctx context.Context, fn func(querier) error) error {
	return pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { return fn(postgresConn{tx}) })
}

// lock takes a transaction-scoped advisory lock on the key's hash. A hash
// collision between two keys only makes them wait for each other.
func (b *postgresDB) lock(ctx context.Context, q querier, key string) error {
	_, err := q.exec(ctx, "SELECT pg_advisory_xact_lock(hashtext(?))", key)
	return err
}

// unbounded lifts statement_timeout for the rest of the transaction q:
// a migration may take long, or wait long for another process's.
func (b *postgresDB) unbounded(ctx context.Context, q querier) error {
	_, err := q.exec(ctx, "SET LOCAL statement_timeout = 0")
	return err
}

func (b *postgresDB) ddl(stmt string) string { return postgresTypes.Replace(stmt) }

func (b *postgresDB) ping(ctx context.Context) error { return b.pool.Ping(ctx) }

func (b *postgresDB) close() error { b.jobs.close(); b.pool.Close(); return nil }

func (b *postgresDB) driver() string { return "postgres" }
