package storage_test

import (
	"context"
	"strings"
	"testing"

	"dialtone/storage"
)

// mustOpen opens a store and checks that it runs on the expected engine.
func mustOpen(t *testing.T, driver string, open func() (*storage.DB, error)) *storage.DB {
	t.Helper()
	db, err := open()
	if err != nil {
		t.Fatal(err)
	}
	if d := db.Driver(); d != driver {
		db.Close()
		t.Fatalf("Driver() = %q, want %q", d, driver)
	}
	return db
}

func TestOpenRejects(t *testing.T) {
	for _, tc := range []struct{ url, dataDir, want string }{
		{"mysql://u@h/db", "", "postgres://"},
		{"sqlite:///tmp/x.db", "", "postgres://"},
		{"/var/lib/dialtone.db", "", "postgres://"},
		{"postgres://u:%zz@h/db", "", "postgres://"}, // does not parse
		{"", "", "data dir"},
	} {
		db, err := storage.Open(context.Background(), tc.url, tc.dataDir)
		if err == nil {
			db.Close()
			t.Errorf("Open(%q, %q) succeeded", tc.url, tc.dataDir)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q, %q) = %v; want it to mention %q", tc.url, tc.dataDir, err, tc.want)
		}
	}
}
