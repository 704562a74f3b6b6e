// Package datadirtest checks in tests that the files of a data dir are
// private (package datadir; SPEC.md "Accounts").
package datadirtest

import (
	"io/fs"
	"os"
	"slices"
	"sort"
	"syscall"
	"testing"
)

// PermissiveUmask sets the process umask to 0 until the test ends, so
// that a mode not stated explicitly shows; child processes inherit it.
// Not for parallel tests: the umask is the process's.
func PermissiveUmask(t testing.TB) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
}

// Modes returns the permission bits of every entry of dir.
func Modes(t testing.TB, dir string) map[string]fs.FileMode {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Error(err)
		return nil
	}
	out := map[string]fs.FileMode{}
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			out[e.Name()] = info.Mode().Perm()
		}
	}
	return out
}

// WantPrivate checks modes (from Modes): every entry 0600, and those
// named in present there, since a check of files that are not there
// proves nothing.
func WantPrivate(t testing.TB, where string, modes map[string]fs.FileMode, present ...string) {
	t.Helper()
	names := make([]string, 0, len(modes))
	for name := range modes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if modes[name] != 0o600 {
			t.Errorf("%s: %s mode %v, want 0600", where, name, modes[name])
		}
	}
	for _, name := range present {
		if !slices.Contains(names, name) {
			t.Errorf("%s: no %s among %v", where, name, names)
		}
	}
}

// WantDirMode checks the permission bits of dir.
func WantDirMode(t testing.TB, dir string, want fs.FileMode) {
	t.Helper()
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != want {
		t.Errorf("data dir %s: mode %v, want %v", dir, st.Mode().Perm(), want)
	}
}
