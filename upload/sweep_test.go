package upload_test

import (
	"context"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"dialtone/internal/datadir/datadirtest"
	"dialtone/upload"
)

// uploaded makes a slot and PUTs size bytes into it.
func (f *fixture) uploaded(t *testing.T, owner, name string) upload.Slot {
	t.Helper()
	s, err := f.svc.RequestSlot(t.Context(), owner, name, 3, "text/plain")
	if err != nil {
		t.Fatal(err)
	}
	if a := put(t, s, "abc", "text/plain"); a.code != http.StatusCreated {
		t.Fatalf("PUT %s: %d %q", name, a.code, a.body)
	}
	return s
}

func (f *fixture) sweep(t *testing.T) int {
	t.Helper()
	n, err := f.svc.Sweep(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// wantServed checks which of the slots are served and which are gone.
func wantServed(t *testing.T, served, gone []upload.Slot) {
	t.Helper()
	for _, s := range served {
		if a := do(t, "GET", s.GetURL, nil); a.code != 200 {
			t.Errorf("%s: %d, want it served", s.GetURL, a.code)
		}
	}
	for _, s := range gone {
		if a := do(t, "GET", s.GetURL, nil); a.code != 404 {
			t.Errorf("%s: %d, want it gone", s.GetURL, a.code)
		}
	}
}

// Files go XMPPD_UPLOAD_EXPIRY after their upload, slots never used a
// day after their PUT URL expired, each with its directory.
func TestSweepExpired(t *testing.T) {
	f := newFixture(t, nil) // expiry 24h
	old := f.uploaded(t, owner, "old.txt")
	f.advance(23 * time.Hour)
	fresh := f.uploaded(t, owner, "fresh.txt")
	unused, err := f.svc.RequestSlot(t.Context(), owner, "unused.txt", 3, "")
	if err != nil {
		t.Fatal(err)
	}
	f.advance(2 * time.Hour)
	if n := f.sweep(t); n != 1 {
		t.Errorf("first sweep removed %d, want 1", n)
	}
	wantServed(t, []upload.Slot{fresh}, []upload.Slot{old})
	if files := f.files(t); len(files) != 1 || filepath.Base(files[0]) != "fresh.txt" {
		t.Errorf("files left: %v", files)
	}
	if ids, _ := f.db.UploadIDs(t.Context(), owner); len(ids) != 2 {
		t.Errorf("slots left: %v, want fresh and unused", ids)
	}
	f.advance(24 * time.Hour)
	if n := f.sweep(t); n != 2 {
		t.Errorf("second sweep removed %d, want 2", n)
	}
	wantServed(t, nil, []upload.Slot{fresh, unused})
	if ids, _ := f.db.UploadIDs(t.Context(), owner); len(ids) != 0 {
		t.Errorf("slots left: %v", ids)
	}
	if entries, _ := os.ReadDir(filepath.Join(f.data, "uploads")); len(entries) != 0 {
		t.Errorf("left in uploads: %v", entries)
	}
}

// XMPPD_UPLOAD_EXPIRY=0 keeps files.
func TestSweepNoExpiry(t *testing.T) {
	f := newFixture(t, func(s *upload.Service) { s.Expiry = 0 })
	kept := f.uploaded(t, owner, "kept.txt")
	f.advance(10 * 365 * 24 * time.Hour)
	if n := f.sweep(t); n != 0 {
		t.Errorf("sweep removed %d", n)
	}
	wantServed(t, []upload.Slot{kept}, nil)
	if f.svc.Interval() != time.Hour {
		t.Errorf("Interval without expiry = %v, want 1h", f.svc.Interval())
	}
}

// The files of an account whose rows went (xmppctl account delete, which
// does not reach the server) are removed by the next sweep; RemoveOwner
// removes them at once.
func TestSweepOrphansAndRemoveOwner(t *testing.T) {
	f := newFixture(t, nil)
	const gone, other = "+12025550124", "+12025550125"
	orphan := f.uploaded(t, gone, "orphan.txt")
	kept := f.uploaded(t, owner, "kept.txt")
	removed := f.uploaded(t, other, "removed.txt")
	if err := f.db.WipeAccountData(t.Context(), gone); err != nil {
		t.Fatal(err)
	}
	if n := f.sweep(t); n != 1 {
		t.Errorf("sweep removed %d, want the orphan", n)
	}
	if _, err := os.Stat(filepath.Join(f.data, "uploads", gone)); !os.IsNotExist(err) {
		t.Errorf("the directory of %s is still there: %v", gone, err)
	}
	if err := f.svc.RemoveOwner(other); err != nil {
		t.Fatal(err)
	}
	wantServed(t, []upload.Slot{kept}, []upload.Slot{orphan, removed})
	var left []string
	for _, p := range f.files(t) {
		left = append(left, filepath.Base(p))
	}
	if !slices.Equal(left, []string{"kept.txt"}) {
		t.Errorf("files left: %v", left)
	}
	if err := f.svc.RemoveOwner("../.."); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.data); err != nil {
		t.Fatalf("RemoveOwner(../..) removed the data dir: %v", err)
	}
}

// Run sweeps at once and every Interval, until its context ends.
func TestRun(t *testing.T) {
	f := newFixture(t, func(s *upload.Service) { s.Expiry = 40 * time.Millisecond })
	if f.svc.Interval() != 10*time.Millisecond {
		t.Fatalf("Interval = %v, want a quarter of the expiry", f.svc.Interval())
	}
	s := f.uploaded(t, owner, "short-lived.txt")
	f.advance(time.Second)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		f.svc.Run(ctx)
		close(done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(f.files(t)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run removed nothing in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	wantServed(t, nil, []upload.Slot{s})
}

// Files are 0600 and directories 0700 whatever the umask (SPEC.md
// "Accounts": every file under the data dir is private).
func TestFileModes(t *testing.T) {
	datadirtest.PermissiveUmask(t)
	f := newFixture(t, nil)
	f.uploaded(t, owner, "private.txt")
	err := filepath.WalkDir(filepath.Join(f.data, "uploads"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, info.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
