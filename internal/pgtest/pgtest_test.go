package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Databases made by NewDatabase are separate, and dropped after the test.
func TestNewDatabaseIsolatedAndDropped(t *testing.T) {
	base := URL(t)
	ctx := context.Background()
	var name string
	t.Run("create", func(t *testing.T) {
		a, b := NewDatabase(t, base), NewDatabase(t, base)
		if a == b {
			t.Fatalf("two calls gave the same database %s", a)
		}
		if _, err := connect(t, a).Exec(ctx, "CREATE TABLE only_in_a (x int)"); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := connect(t, b).QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("a table made in %s is visible in %s", a, b)
		}
		if err := connect(t, a).QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
	})
	var left int
	if err := connect(t, base).QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if name == "" || left != 0 {
		t.Fatalf("database %q still exists after its test ended", name)
	}
}

// A cluster of its own: Start makes a working server and stop ends it and
// removes its files.
func TestStartStop(t *testing.T) {
	if os.Getenv(EnvURL) != "" {
		t.Skipf("%s is set: Start does not launch a server", EnvURL)
	}
	URL(t) // skips or fails as the shared cluster does when binaries are missing
	url, stop, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var one int
	if err := connect(t, url).QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
	stop()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, url); err == nil {
		conn.Close(ctx)
		t.Fatal("server still accepts connections after stop")
	}
}

func TestFindBin(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	root := t.TempDir()
	glob := filepath.Join(root, "*", "bin")
	if _, err := findBin(glob); !errors.Is(err, ErrNoPostgres) {
		t.Fatalf("findBin without binaries = %v, want ErrNoPostgres", err)
	}
	for _, v := range []string{"9.6", "15", "13"} {
		bin := filepath.Join(root, v, "bin")
		for _, name := range []string{"initdb", "postgres"} {
			if err := os.MkdirAll(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(bin, name), nil, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := findBin(glob)
	if want := filepath.Join(root, "15", "bin"); got != want || err != nil {
		t.Fatalf("findBin = %q, %v; want the newest, %q", got, err, want)
	}
}

// Files a killed test binary left are removed; those of a running one, or
// of a Start still setting up, are not.
func TestRemoveStale(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	old := time.Now().Add(-time.Hour)
	dirs := map[string]struct {
		owner string
		mtime time.Time
		kept  bool
	}{
		"dead":    {"999999999", old, false}, // beyond the kernel's pid_max
		"noowner": {"", old, false},
		"alive":   {strconv.Itoa(os.Getpid()), old, true},
		"fresh":   {"", time.Now(), true},
	}
	for name, d := range dirs {
		p := filepath.Join(tmp, tempPrefix+name)
		if err := os.MkdirAll(filepath.Join(p, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if d.owner != "" {
			if err := os.WriteFile(filepath.Join(p, ownerFile), []byte(d.owner), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chtimes(p, d.mtime, d.mtime); err != nil {
			t.Fatal(err)
		}
	}
	removeStale()
	for name, d := range dirs {
		_, err := os.Stat(filepath.Join(tmp, tempPrefix+name))
		if kept := err == nil; kept != d.kept {
			t.Errorf("%s: kept = %v, want %v", name, kept, d.kept)
		}
	}
}

func TestMaySkip(t *testing.T) {
	missing := fmt.Errorf("pgtest: %w", ErrNoPostgres)
	for _, tc := range []struct {
		err  error
		ci   string
		skip bool
	}{
		{missing, "", true},
		{missing, "false", true},
		{missing, "true", false}, // CI must not pass by testing nothing
		{errors.New("initdb: exit status 1"), "", false},
	} {
		if got := maySkip(tc.err, tc.ci); got != tc.skip {
			t.Errorf("maySkip(%v, CI=%q) = %v, want %v", tc.err, tc.ci, got, tc.skip)
		}
	}
}

// A frozen private cluster hangs (a query waits rather than fails) and
// answers again once thawed; the shared cluster goes on meanwhile.
func TestPrivateFreezeThaw(t *testing.T) {
	p := StartPrivate(t)
	shared := connect(t, URL(t))
	conn := connect(t, p.URL())
	if err := p.Freeze(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := conn.Exec(ctx, "SELECT 1")
	cancel()
	if err == nil {
		t.Fatal("a query on a frozen cluster was answered")
	}
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err = pgx.Connect(ctx, p.URL())
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("connecting to a frozen cluster: %v, want it to hang until the deadline", err)
	}
	if _, err := shared.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatalf("the shared cluster, while a private one is frozen: %v", err)
	}
	if err := p.Thaw(); err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, p.URL()).Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatalf("after thawing: %v", err)
	}
}
