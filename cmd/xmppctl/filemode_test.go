package main

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"dialtone/internal/datadir/datadirtest"
)

// TestDataDirModes: what xmppctl makes in the data dir (the database and
// the -wal and -shm SQLite keeps beside it while open, the secret key)
// is 0600 under a umask of 0, in an existing data dir others may enter;
// a data dir it makes is 0700 (SPEC.md "Accounts"). The files are looked
// at while xmppctl has the store open: from the SMS webhook it calls.
// Not parallel: xmppctl inherits the test's umask.
func TestDataDirModes(t *testing.T) {
	datadirtest.PermissiveUmask(t)
	for _, fresh := range []bool{false, true} {
		e := newEnv(t)
		if err := os.Chmod(e.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		dir, dirMode := e.dir, fs.FileMode(0o755)
		if fresh {
			dir, dirMode = filepath.Join(e.dir, "new"), 0o700
			e.vars["XMPPD_DATA_DIR"] = dir
		}
		var mu sync.Mutex
		var during map[string]fs.FileMode
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			during = datadirtest.Modes(t, dir)
		}))
		e.vars["XMPPD_SMS_GATEWAY"] = "webhook"
		e.vars["XMPPD_SMS_WEBHOOK_URL"] = srv.URL + "/sms"
		e.must(0, "account", "reset", "+821012345678")
		srv.Close()

		mu.Lock()
		datadirtest.WantPrivate(t, dir+" while xmppctl ran", during, "dialtone.db", "dialtone.db-wal", "dialtone.db-shm", "secret.key")
		mu.Unlock()
		datadirtest.WantPrivate(t, dir+" after xmppctl", datadirtest.Modes(t, dir), "dialtone.db", "secret.key")
		datadirtest.WantDirMode(t, dir, dirMode)
	}
}
