// Package pgtest gives tests a real, throwaway PostgreSQL server: one
// cluster per test binary, started from the PostgreSQL binaries on the
// machine, and a fresh database per test.
//
// In a test binary:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		url := pgtest.NewDatabase(t, pgtest.URL(t))
//		…
//	}
//
// Set DIALTONE_TEST_DATABASE_URL (a postgres:// URL of a role that may
// CREATE DATABASE) to use an existing server instead. With go test -short
// (make check) URL and StartPrivate skip the test.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the variable that points the tests at an existing server.
const EnvURL = "DIALTONE_TEST_DATABASE_URL"

// ErrNoPostgres means the PostgreSQL server binaries are not installed.
var ErrNoPostgres = errors.New("PostgreSQL server binaries (initdb, postgres) not found under /usr/lib/postgresql/*/bin or on PATH")

const (
	readyTimeout = 30 * time.Second // how long a new cluster may take to accept connections
	stopTimeout  = 10 * time.Second // how long a fast shutdown may take before SIGKILL
)

// Start launches a throwaway PostgreSQL cluster and returns the URL of its
// "postgres" database (superuser "postgres", trust authentication,
// 127.0.0.1 only). stop ends the server by its PID and removes its files.
// When DIALTONE_TEST_DATABASE_URL is set, Start returns it and stop does
// nothing. ErrNoPostgres (wrapped) means the binaries are missing.
func Start() (dbURL string, stop func(), err error) {
	if u := os.Getenv(EnvURL); u != "" {
		return u, func() {}, nil
	}
	c, err := newCluster()
	if err != nil {
		return "", nil, err
	}
	return c.url, c.stop, nil
}

// newCluster starts a cluster in a new directory.
func newCluster() (*cluster, error) {
	bin, err := findBin(binGlob)
	if err != nil {
		return nil, err
	}
	removeStale()
	dir, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	// The owner file lets a later Start tell this cluster's files from those
	// a killed test binary left behind.
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c := &cluster{bin: bin, dir: dir}
	if err := c.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

const (
	tempPrefix = "dialtone-pgtest-"
	ownerFile  = "owner.pid" // PID of the test binary that made the cluster
)

// removeStale deletes clusters' files whose test binary is gone. A test
// binary killed on timeout cannot run stop; its server dies with it (see
// command), but its files stay. Directories younger than a minute may
// belong to a Start that has not written its owner file yet.
func removeStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, d := range dirs {
		st, err := os.Stat(d)
		if err != nil || time.Since(st.ModTime()) < time.Minute {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(d, ownerFile))
		pid, err := strconv.Atoi(string(b))
		if err == nil && syscall.Kill(pid, 0) != syscall.ESRCH {
			continue // its owner still runs
		}
		os.RemoveAll(d)
	}
}

// binGlob is where Debian and Ubuntu install each PostgreSQL version.
const binGlob = "/usr/lib/postgresql/*/bin"

// findBin returns the directory of the newest server binaries under the
// glob, else the one of initdb on PATH.
func findBin(glob string) (string, error) {
	dirs, _ := filepath.Glob(glob)
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isFile(filepath.Join(d, "initdb")) && isFile(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("pgtest: %w", ErrNoPostgres)
}

// majorOf is the version in /usr/lib/postgresql/VERSION/bin, so that 15
// sorts above 9.6.
func majorOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// cluster is one running server.
type cluster struct {
	bin, dir string
	url      string
	cred     *syscall.Credential // nil: run as ourselves
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the postgres process has ended
	stopOnce sync.Once
}

func (c *cluster) start() error {
	// PostgreSQL refuses to run as root, and tests run as root in CI: then
	// the server runs as the "postgres" user, which must own its files.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("pgtest: running as root, and there is no \"postgres\" user to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(c.dir, uid, gid); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	data := filepath.Join(c.dir, "data")
	initdb := c.command("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	// The free port is found by binding and releasing it, so another
	// process can take it in between: then the server fails to bind and we
	// try another port.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = c.launch(data); err == nil {
			return nil
		}
	}
	return err
}

// command prepares a server binary to run as the cluster's user.
func (c *cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	// SIGQUIT (immediate shutdown) if the test binary dies without calling
	// stop, e.g. on a test timeout, so no server outlives its tests.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGQUIT}
	return cmd
}

// launch starts postgres on a free port and waits until it accepts
// connections.
func (c *cluster) launch(data string) error {
	port, err := freePort()
	if err != nil {
		return fmt.Errorf("pgtest: free port: %w", err)
	}
	logPath := filepath.Join(c.dir, "postgres.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor
	// Durability is worth nothing for a throwaway cluster; speed is.
	c.cmd = c.command("postgres", "-D", data, "-p", strconv.Itoa(port), "-k", c.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200")
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	c.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) { _ = cmd.Wait(); close(exited) }(c.cmd, c.exited)
	c.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	if err := c.waitReady(); err != nil {
		c.kill()
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("pgtest: postgres on port %d: %w\n%s", port, err, log)
	}
	return nil
}

// waitReady polls until the server answers a query, it exits, or
// readyTimeout passes.
func (c *cluster) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, c.url)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not accepting connections after %s: %w", readyTimeout, err)
		}
		select {
		case <-c.exited:
			return fmt.Errorf("exited before accepting connections (%s)", c.cmd.ProcessState)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop ends the server and removes the cluster's files.
func (c *cluster) stop() {
	c.stopOnce.Do(func() {
		c.kill()
		os.RemoveAll(c.dir)
	})
}

// kill asks the server for a fast shutdown (SIGINT) and kills it if it has
// not ended in time.
func (c *cluster) kill() {
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.exited:
	case <-time.After(stopTimeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// NewDatabase creates a database with a fresh unique name on the server at
// baseURL and returns its URL; it is dropped when the test ends (after the
// test's own cleanups, which registered later and so run first).
func NewDatabase(t testing.TB, baseURL string) string {
	t.Helper()
	u, err := url.Parse(baseURL)
	if err != nil {
		t.Fatalf("pgtest: base URL does not parse: %v", err)
	}
	suffix := make([]byte, 8)
	_, _ = rand.Read(suffix)
	name := "dialtone_test_" + hex.EncodeToString(suffix)
	if err := admin(baseURL, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := admin(baseURL, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// admin runs one statement on its own connection: CREATE and DROP
// DATABASE cannot run inside a transaction or a pool's session state.
func admin(baseURL, stmt string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, baseURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}

// shared is the one cluster of this test binary, started on first use.
var shared struct {
	once sync.Once
	url  string
	stop func()
	err  error
}

// URL returns the shared cluster's URL, starting the cluster on first use.
// Without PostgreSQL binaries the test is skipped, loudly, unless CI=true,
// where it fails: CI must never pass by testing nothing.
func URL(t testing.TB) string {
	t.Helper()
	skipShort(t)
	shared.once.Do(func() {
		shared.url, shared.stop, shared.err = Start()
		if maySkip(shared.err, os.Getenv("CI")) {
			fmt.Fprintf(os.Stderr, "\n*** pgtest: SKIPPING PostgreSQL tests: %v.\n*** Install the postgresql package or set %s.\n\n", shared.err, EnvURL)
		}
	})
	if shared.err != nil {
		if maySkip(shared.err, os.Getenv("CI")) {
			t.Skipf("SKIPPED, no PostgreSQL: %v", shared.err)
		}
		t.Fatalf("PostgreSQL for tests: %v", shared.err)
	}
	return shared.url
}

// skipShort skips t under go test -short (make check): the PostgreSQL
// suites run in make test, make check keeps to SQLite.
func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("PostgreSQL: not with -short (make check); make test runs it")
	}
}

// maySkip tells whether a failed Start skips the tests rather than failing
// them: only for missing binaries, and never in CI (env CI=true).
func maySkip(err error, ci string) bool {
	return errors.Is(err, ErrNoPostgres) && ci != "true"
}

// Main runs the tests of a binary that uses URL and stops the shared
// cluster afterwards. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared.stop != nil {
		shared.stop()
	}
	os.Exit(code)
}
