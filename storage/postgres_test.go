package storage_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"dialtone/internal/pgtest"
	"dialtone/storage"
	"dialtone/storage/storetest"
)

// TestMain stops the PostgreSQL cluster that the tests of this binary share.
func TestMain(m *testing.M) { pgtest.Main(m) }

// newPostgres makes a fresh database on the shared cluster and returns a
// function that opens it.
func newPostgres(t *testing.T) func() (*storage.DB, error) {
	url := pgtest.NewDatabase(t, pgtest.URL(t))
	return func() (*storage.DB, error) { return storage.Open(context.Background(), url, "") }
}

func TestPostgres(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *storage.DB { return mustOpen(t, "postgres", newPostgres(t)) })
}

func TestPostgresReopen(t *testing.T) {
	storetest.RunReopen(t, newPostgres)
}

// A server that cannot be reached stops Open, and the error does not show
// the password of the URL (it ends up in logs).
func TestPostgresUnreachable(t *testing.T) {
	for _, url := range []string{
		"postgres://dialtone:s3cretpw@127.0.0.1:1/dialtone?connect_timeout=5",
		"postgresql://dialtone:s3cretpw@127.0.0.1:1/dialtone?connect_timeout=5",
	} {
		db, err := storage.Open(context.Background(), url, "")
		if err == nil {
			db.Close()
			t.Fatalf("Open of a closed port succeeded")
		}
		if strings.Contains(err.Error(), "s3cretpw") {
			t.Fatalf("error shows the password: %v", err)
		}
	}
}

// Numbers, JIDs and keys compare byte by byte whatever the locale the
// database was made with (the test cluster's is C, so ask the catalog).
func TestPostgresKeyCollation(t *testing.T) {
	url := pgtest.NewDatabase(t, pgtest.URL(t))
	mustOpen(t, "postgres", func() (*storage.DB, error) { return storage.Open(context.Background(), url, "") }).Close()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var wrong []string
	r, err := conn.Query(t.Context(), `SELECT table_name || '.' || column_name FROM information_schema.columns
		WHERE table_schema = 'public' AND column_name IN ('number', 'owner', 'contact', 'key', 'jid')
		AND collation_name IS DISTINCT FROM 'C'`)
	if err == nil {
		wrong, err = pgx.CollectRows(r, pgx.RowTo[string])
	}
	if err != nil || len(wrong) > 0 {
		t.Fatalf("columns without collation C: %v %v", wrong, err)
	}
}
