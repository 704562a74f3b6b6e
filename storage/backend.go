package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"dialtone/auth"
)

// querier is what the store methods run SQL on: the connection pool or one
// transaction. SQL is written once, with "?" placeholders and the subset of
// syntax both SQLite and PostgreSQL accept (ON CONFLICT upserts, RETURNING);
// the adapters translate placeholders and argument types.
type querier interface {
	// exec runs a statement and returns the number of rows it affected.
	exec(ctx context.Context, query string, args ...any) (int64, error)
	query(ctx context.Context, query string, args ...any) (rows, error)
	// queryRow scans the first row into dest; no row is auth.ErrNotFound.
	queryRow(ctx context.Context, query string, args []any, dest ...any) error
}

// rows is the part of a result set the store reads. Close reports nothing
// because both drivers report deferred failures through Err.
type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// backend is one database engine behind the store: the pool as a querier,
// transactions, and the few things the dialects cannot share.
type backend interface {
	querier
	// inTx runs fn in one write transaction and commits if fn returns nil.
	// SQLite transactions begin IMMEDIATE, so they are serialised from the
	// start and never fail half-way on a lock upgrade.
	inTx(ctx context.Context, fn func(q querier) error) error
	// lock serialises transactions that name the same key until q commits.
	// On SQLite the immediate transaction already holds the database's only
	// write lock, so only PostgreSQL needs to do anything.
	lock(ctx context.Context, q querier, key string) error
	// unbounded lifts the statement timeout for the rest of the
	// transaction q (migrations).
	unbounded(ctx context.Context, q querier) error
	// ddl rewrites the type tokens of a migration into the dialect's types.
	ddl(stmt string) string
	ping(ctx context.Context) error
	close() error
	driver() string
}

// timeUnit is the precision the store keeps: PostgreSQL timestamps have
// microseconds, so both engines round to that and give back equal values.
const timeUnit = time.Microsecond

// bindArgs converts arguments into what the driver stores. Times are the one
// type whose representation differs (SQLite has no time type: microseconds
// since the epoch in an INTEGER; PostgreSQL: TIMESTAMPTZ), and a zero time
// is NULL in both.
func bindArgs(args []any, encodeTime func(time.Time) any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		t, ok := a.(time.Time)
		switch {
		case !ok:
			out[i] = a
		case t.IsZero():
			out[i] = nil
		default:
			out[i] = encodeTime(t.UTC().Truncate(timeUnit))
		}
	}
	return out
}

// timeCol scans a time column of either engine: INTEGER microseconds from
// SQLite, TIMESTAMPTZ from PostgreSQL, NULL as the zero time. Results are
// always UTC.
type timeCol struct{ t *time.Time }

// Scan implements sql.Scanner; pgx also honours it.
func (c timeCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*c.t = time.Time{}
	case int64:
		*c.t = time.UnixMicro(v).UTC()
	case time.Time:
		*c.t = v.UTC().Truncate(timeUnit)
	default:
		return fmt.Errorf("storage: cannot scan %T into a time", src)
	}
	return nil
}

// noRows maps each driver's "no row" to the store's not-found sentinel;
// pgx.ErrNoRows also matches sql.ErrNoRows.
func noRows(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return auth.ErrNotFound
	}
	return err
}

// collect reads every row of a result with scan and closes it.
func collect[T any](r rows, err error, scan func(rows) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []T
	for r.Next() {
		v, err := scan(r)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, r.Err()
}
