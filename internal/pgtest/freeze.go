package pgtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// Private is a throwaway PostgreSQL cluster of one test, which the test
// may freeze: one that hangs rather than refuses, without touching the
// cluster other tests share.
type Private struct {
	c *cluster

	mu     sync.Mutex
	frozen []int // stopped PIDs, the postmaster first
}

// StartPrivate starts a cluster for t alone and stops it (thawed first)
// when t ends. Without PostgreSQL binaries, or with -short, t is skipped
// as URL skips it;
// with DIALTONE_TEST_DATABASE_URL set it is skipped too, since a server
// this package did not start is not its to freeze.
func StartPrivate(t testing.TB) *Private {
	t.Helper()
	skipShort(t)
	if os.Getenv(EnvURL) != "" {
		t.Skipf("SKIPPED: %s points at a server the test may not freeze", EnvURL)
	}
	c, err := newCluster()
	if maySkip(err, os.Getenv("CI")) {
		t.Skipf("SKIPPED, no PostgreSQL: %v", err)
	}
	if err != nil {
		t.Fatalf("PostgreSQL for tests: %v", err)
	}
	p := &Private{c: c}
	t.Cleanup(func() {
		if err := p.Thaw(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
		c.stop()
	})
	return p
}

// URL is the cluster's "postgres" database, as Start returns it.
func (p *Private) URL() string { return p.c.url }

// Freeze stops (SIGSTOP) the cluster's postmaster, so it accepts no
// connection, then every process it started (backends, checkpointer,
// WAL writer, …), so nothing answers: connections that are open stay
// open, and new ones are taken by the kernel and never answered. Only
// this cluster's processes are signalled.
func (p *Private) Freeze() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.frozen) > 0 {
		return errors.New("pgtest: frozen already")
	}
	postmaster := p.c.cmd.Process.Pid
	if err := syscall.Kill(postmaster, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("pgtest: stop postmaster %d: %w", postmaster, err)
	}
	p.frozen = []int{postmaster}
	// Stopped, it forks no more: its children now are all there are.
	children, err := childrenOf(postmaster)
	for _, pid := range children {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err == nil {
			p.frozen = append(p.frozen, pid)
		}
	}
	if err != nil {
		return fmt.Errorf("pgtest: children of postmaster %d: %w", postmaster, err)
	}
	return nil
}

// Thaw resumes (SIGCONT) what Freeze stopped, the postmaster last. It
// does nothing when the cluster is not frozen.
func (p *Private) Thaw() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, pid := range slices.Backward(p.frozen) {
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("pgtest: resume %d: %w", pid, err))
		}
	}
	p.frozen = nil
	return errors.Join(errs...)
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // ended meanwhile
		}
		// "pid (comm) state ppid …": comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := bytes.Fields(stat[i+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(string(fields[1])); err == nil && ppid == pid {
			out = append(out, child)
		}
	}
	return out, nil
}
