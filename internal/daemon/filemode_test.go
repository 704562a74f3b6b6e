package daemon_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"dialtone/internal/datadir/datadirtest"
)

// TestDataDirModes: every file the server makes in the data dir (the
// database and its -wal and -shm, the certificate and its key, the
// secret keys, the admin socket) is 0600 under a umask of 0, in an
// existing data dir that others may enter; a data dir it makes is 0700
// (SPEC.md "Accounts"). Not parallel: the umask is the process's.
func TestDataDirModes(t *testing.T) {
	datadirtest.PermissiveUmask(t) // restored after the daemons stopped
	existing := t.TempDir()
	if err := os.Chmod(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	made := filepath.Join(t.TempDir(), "new")
	for _, dir := range []string{existing, made} {
		s := startDaemon(t, noticeEnv(t, "", map[string]string{
			"XMPPD_DATA_DIR":     dir,
			"XMPPD_ADMIN_SOCKET": filepath.Join(dir, "admin.sock"),
			"XMPPD_S2S_ADDR":     "127.0.0.1:0", // makes dialback.key
		}))
		// Writes: an account, a login, a message stored for a number
		// that never logged in (and its notice SMS in the outbox).
		u := s.newUser(t)
		c := s.online(t, u, "phone")
		c.Send(`<message type='chat' id='m1' to='` + s.newNumber() + `@` + domain + `'><body>kept for later</body></message>`)
		c.Sync()
		want := []string{"dialtone.db", "dialtone.db-wal", "dialtone.db-shm", "cert.pem", "key.pem", "secret.key", "dialback.key", "admin.sock"}
		waitFor(t, "the admin socket", func() bool {
			_, err := os.Stat(filepath.Join(dir, "admin.sock"))
			return err == nil
		})
		dirMode := fs.FileMode(0o755)
		if dir == made {
			dirMode = 0o700
		}
		datadirtest.WantDirMode(t, dir, dirMode)
		datadirtest.WantPrivate(t, dir, datadirtest.Modes(t, dir), want...)
		c.Send(`</stream:stream>`)
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
	}
}
