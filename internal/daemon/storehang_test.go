package daemon_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver, for a second process's lock

	"dialtone/internal/pgtest"
	"dialtone/internal/xmpptest"
)

// storeTimeout is XMPPD_STORE_TIMEOUT in TestStoreHangs.
const storeTimeout = 2 * time.Second

// hangingStore is a store that the test makes hang rather than refuse.
type hangingStore struct {
	name string
	// start returns XMPPD_DATABASE_URL, and freeze, which makes the
	// store of the daemon on dataDir hang and returns thaw, which ends
	// that; thaw runs in a cleanup too, so a second call must be harmless.
	start func(t *testing.T) (url string, freeze func(dataDir string) (thaw func()))
}

var hangingStores = []hangingStore{
	{
		// Another process holds the write lock of the SQLite file.
		name: "sqlite_locked",
		start: func(t *testing.T) (string, func(string) func()) {
			return "", func(dataDir string) func() {
				db, err := sql.Open("sqlite", filepath.Join(dataDir, "dialtone.db"))
				if err != nil {
					t.Fatal(err)
				}
				conn, err := db.Conn(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
					t.Fatal(err)
				}
				return func() {
					conn.ExecContext(context.Background(), "ROLLBACK")
					conn.Close()
					db.Close()
				}
			}
		},
	},
	{
		// PostgreSQL's processes stopped (SIGSTOP): connections stay open
		// and nothing answers. A cluster of this test's own, so that no
		// other test hangs with it.
		name: "postgres_stopped",
		start: func(t *testing.T) (string, func(string) func()) {
			p := pgtest.StartPrivate(t)
			return p.URL(), func(string) func() {
				if err := p.Freeze(); err != nil {
					t.Fatal(err)
				}
				return func() {
					if err := p.Thaw(); err != nil {
						t.Error(err)
					}
				}
			}
		},
	},
}

// Every store call made for a stanza runs under XMPPD_STORE_TIMEOUT
// (SPEC.md "Limits on what clients send"): while the store hangs, a
// message to an offline user costs its sender an internal-server-error
// after that long, online users keep chatting (the waiting sender too,
// once answered), and when the store answers again, everything works.
func TestStoreHangs(t *testing.T) {
	for _, hs := range hangingStores {
		t.Run(hs.name, func(t *testing.T) {
			url, freeze := hs.start(t)
			env := noticeEnv(t, url, map[string]string{
				"XMPPD_STORE_TIMEOUT":      storeTimeout.String(),
				"XMPPD_DATABASE_MAX_CONNS": "4",
			})
			s := startDaemon(t, env)
			alice, bob, carol, dave, erin := s.newUser(t), s.newUser(t), s.activeUser(t), s.newUser(t), s.newUser(t)
			ca, cb := s.online(t, alice, "a"), s.online(t, bob, "b")
			cd, ce := s.online(t, dave, "d"), s.online(t, erin, "e")

			thaw := freeze(env["XMPPD_DATA_DIR"])
			// Registered after the daemon's: runs before its shutdown.
			t.Cleanup(thaw)

			start := time.Now()
			ca.Send(`<message type='chat' id='hung1' to='` + carol.bare() + `'><body>while it hangs</body></message>`)
			// Meanwhile, others chat: routing waits for no store.
			chat(t, cd, ce, "meanwhile1")
			chat(t, ce, cd, "meanwhile2")
			if d := time.Since(start); d >= storeTimeout {
				t.Errorf("a chat between online users took %v while another sender waited for the store (timeout %v)", d, storeTimeout)
			}
			e := ca.Expect("the error for hung1", func(e xmpptest.Elem) bool { return e.Attr("id") == "hung1" })
			took := time.Since(start)
			wantError(t, e, "wait", "internal-server-error")
			if took < storeTimeout/2 || took > storeTimeout+3*time.Second {
				t.Errorf("the error came after %v, want about XMPPD_STORE_TIMEOUT (%v)", took, storeTimeout)
			}
			// The sender's session goes on, with the store still hung.
			chat(t, ca, cb, "after the error")
			chat(t, cb, ca, "and back")

			thaw()
			// The first message after the store answers again may still
			// meet a connection it broke; within a bounded time one is
			// stored, and carol gets it (and not the one that failed).
			var storedBody string
			for deadline, i := time.Now().Add(30*time.Second), 0; storedBody == ""; i++ {
				body := "after thaw " + string(rune('a'+i%26))
				id := nextID("thawed")
				ca.Send(`<message type='chat' id='` + id + `' to='` + carol.bare() + `'><body>` + body + `</body></message>`)
				if _, bounced := find(drain(ca), func(e xmpptest.Elem) bool { return e.Attr("id") == id }); !bounced {
					storedBody = body
				} else if time.Now().After(deadline) {
					t.Fatalf("messages to an offline user still fail %v after the store answers again", 30*time.Second)
				}
			}
			cc := s.login(t, carol, "c")
			cc.Send(`<presence/>`)
			m := cc.Expect("the stored message", func(e xmpptest.Elem) bool { return e.XMLName.Local == "message" })
			if got := delayedOf(t, m).Body; got != storedBody {
				t.Errorf("carol got %q first, want %q", got, storedBody)
			}
			chat(t, cd, ce, "after thaw")
		})
	}
}

// chat sends a chat message from one online client to another and waits
// for it to arrive.
func chat(t *testing.T, from, to *xmpptest.Client, body string) {
	t.Helper()
	id := nextID("chat")
	from.Send(`<message type='chat' id='` + id + `' to='` + bareOf(to.JID) + `'><body>` + body + `</body></message>`)
	m := to.Expect("chat "+body, func(e xmpptest.Elem) bool { return e.Attr("id") == id })
	if m.Attr("type") == "error" || !strings.Contains(m.Inner, body) {
		t.Fatalf("%s got %v, want the chat message %q", to.JID, m, body)
	}
}
