package datadir

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"dialtone/internal/datadir/datadirtest"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// onlyFiles fails unless dir holds exactly names.
func onlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if fmt.Sprint(got) != fmt.Sprint(names) {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}

func TestMake(t *testing.T) {
	datadirtest.PermissiveUmask(t)
	dir := filepath.Join(t.TempDir(), "a", "data")
	if err := Make(dir); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("new data dir %v, want 0700", m)
	}
	// An existing dir is the operator's: left as it is.
	existing := t.TempDir()
	os.Chmod(existing, 0o755)
	if err := Make(existing); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, existing); m != 0o755 {
		t.Errorf("existing dir changed to %v", m)
	}

	// A umask that would leave the owner without access still gets 0700.
	dir = filepath.Join(t.TempDir(), "strict")
	syscall.Umask(0o277)
	if err := Make(dir); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("data dir under umask 0277: %v, want 0700", m)
	}
}

func TestCreateAndRestrict(t *testing.T) {
	datadirtest.PermissiveUmask(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "db")
	if err := Create(path); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, path); m != 0o600 {
		t.Errorf("new file %v, want 0600", m)
	}
	// A file of an earlier version, 0644 with content: narrowed, kept.
	os.WriteFile(path, []byte("data"), 0o644)
	os.Chmod(path, 0o644)
	if err := Create(path); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "data" || mode(t, path) != 0o600 {
		t.Errorf("existing file: %q %v, want its content at 0600", b, mode(t, path))
	}
	// Restrict makes nothing that is not there, and narrows only.
	if err := Restrict(filepath.Join(dir, "missing")); err != nil {
		t.Fatal(err)
	}
	onlyFiles(t, dir, "db")
	os.Chmod(path, 0o400)
	if err := Restrict(path); err != nil || mode(t, path) != 0o400 {
		t.Errorf("0400 file: %v %v", mode(t, path), err)
	}
}

func TestWriteFile(t *testing.T) {
	datadirtest.PermissiveUmask(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "cert.pem")
	os.WriteFile(path, []byte("old"), 0o644)
	if err := WriteFile(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" || mode(t, path) != 0o600 {
		t.Errorf("%q %v, want \"new\" at 0600", b, mode(t, path))
	}
	onlyFiles(t, dir, "cert.pem")

	// The dir is made when missing.
	path = filepath.Join(dir, "sub", "key.pem")
	if err := WriteFile(path, []byte("k")); err != nil {
		t.Fatal(err)
	}
	if mode(t, path) != 0o600 || mode(t, filepath.Dir(path)) != 0o700 {
		t.Errorf("file %v dir %v", mode(t, path), mode(t, filepath.Dir(path)))
	}
}

// TestWriteOnce: of processes racing to make the file, one wins and all
// read its content; the file is whole and 0600, and no temporary is left.
func TestWriteOnce(t *testing.T) {
	datadirtest.PermissiveUmask(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	path := filepath.Join(dir, "secret.key")
	const racers = 8
	got := make([][]byte, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() { got[i], errs[i] = WriteOnce(path, []byte(fmt.Sprintf("key %d\n", i))) })
	}
	wg.Wait()
	stored, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range racers {
		if errs[i] != nil || !bytes.Equal(got[i], stored) {
			t.Errorf("racer %d: %q, %v; the file holds %q", i, got[i], errs[i], stored)
		}
	}
	if m := mode(t, path); m != 0o600 {
		t.Errorf("mode %v, want 0600", m)
	}
	onlyFiles(t, dir, "secret.key")

	// An existing file is never replaced.
	if b, err := WriteOnce(path, []byte("other")); err != nil || !bytes.Equal(b, stored) {
		t.Errorf("second write: %q %v", b, err)
	}
}
