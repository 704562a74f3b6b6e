// Package datadir creates the files that xmppd and xmppctl keep in
// XMPPD_DATA_DIR. They hold keys, SCRAM credentials and message bodies,
// so every one is mode 0600, whatever the umask or the mode of an
// existing data dir, and a data dir made here is 0700 (SPEC.md
// "Accounts").
package datadir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

const (
	// FileMode is the mode of every file made in the data dir.
	FileMode fs.FileMode = 0o600
	// DirMode is the mode of a data dir made here.
	DirMode fs.FileMode = 0o700
)

// Make creates dir, with any missing parents, mode 0700. An existing dir
// is left as it is: where it lives is the operator's choice.
func Make(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return err
	}
	// MkdirAll's mode passes through the umask; the dir must still be
	// usable by its owner and closed to everyone else.
	return os.Chmod(dir, DirMode)
}

// Create makes sure that the file at path exists with mode 0600: made
// empty when missing, narrowed (Restrict) when it exists. For files that
// a library then writes, such as the SQLite database.
func Create(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, FileMode)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return Restrict(path)
}

// Restrict takes group and other permissions off the file at path, if
// it exists: files that earlier versions made 0644. A file of another
// user that this one may not change is left alone.
func Restrict(path string) error {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode().Perm()&^FileMode == 0 {
		return nil
	}
	if err := os.Chmod(path, st.Mode().Perm()&FileMode); err != nil && !errors.Is(err, fs.ErrPermission) {
		return err
	}
	return nil
}

// WriteFile replaces the file at path by data, mode 0600, atomically: a
// crash leaves the old file or the new one, never half of one.
func WriteFile(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// WriteOnce stores data at path, mode 0600, unless a file is there
// already, and returns what path holds afterwards: data, or the file that
// another process (xmppd and xmppctl may start together) made first. So
// that both end up with one key, the file appears whole or not at all
// and is never replaced.
func WriteOnce(path string, data []byte) ([]byte, error) {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	err = os.Link(tmp, path)
	switch {
	case err == nil:
		return data, nil
	case errors.Is(err, fs.ErrExist):
		return os.ReadFile(path)
	default:
		return nil, err
	}
}

// writeTemp writes data to a new file, mode 0600, next to path (made
// with its dir if need be) and returns its name.
func writeTemp(path string, data []byte) (name string, err error) {
	if err := Make(filepath.Dir(path)); err != nil {
		return "", err
	}
	suffix := make([]byte, 8)
	rand.Read(suffix)
	name = path + "." + hex.EncodeToString(suffix) + ".tmp"
	// O_EXCL: a file left behind by someone else is never reused with
	// its mode.
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(name)
		}
	}()
	// The umask could only have taken bits away, but state it anyway.
	if err := f.Chmod(FileMode); err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return name, nil
}
