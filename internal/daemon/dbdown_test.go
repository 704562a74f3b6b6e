package daemon_test

import (
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"dialtone/internal/pgtest"
	"dialtone/internal/xmpptest"
)

// When PostgreSQL goes away under a running server, nothing crashes and
// nothing is lost silently: /healthz says so, sessions that are up keep
// chatting (routing needs no store), a message that would have to be
// stored is answered with an error, so its sender knows, and the password
// API answers an error instead of 202.
func TestDatabaseGoesAway(t *testing.T) {
	if testing.Short() {
		t.Skip("PostgreSQL: not with -short (make check); make test runs it")
	}
	url, stop, err := pgtest.Start()
	if errors.Is(err, pgtest.ErrNoPostgres) {
		t.Skip("!!! SKIPPED, NOT PASSED: no PostgreSQL binaries")
	}
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	env := map[string]string{
		"XMPPD_DOMAIN":              domain,
		"XMPPD_DATA_DIR":            t.TempDir(),
		"XMPPD_DATABASE_URL":        url,
		"XMPPD_C2S_ADDR":            "127.0.0.1:0",
		"XMPPD_C2S_DIRECT_TLS_ADDR": "127.0.0.1:0",
		"XMPPD_HTTP_ADDR":           "127.0.0.1:0",
		"XMPPD_S2S_ADDR":            "",
		"XMPPD_DEFAULT_REGION":      "KR",
	}
	env["XMPPD_ADMIN_SOCKET"] = filepath.Join(env["XMPPD_DATA_DIR"], "admin.sock")
	s := startDaemon(t, env)
	a, b, c := s.newUser(t), s.newUser(t), s.newUser(t)
	ca := s.login(t, a, "a")
	cb := s.login(t, b, "b")
	ca.Available()
	cb.Available()

	stop() // the database is gone
	stopped = true

	health := "http://" + s.d.Addr("http") + "/healthz"
	resp, err := http.Get(health)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The reason (host, user, SQL state) is for the log only.
	if resp.StatusCode != http.StatusServiceUnavailable || err != nil || string(body) != "unavailable" {
		t.Errorf("/healthz with the database gone: %d %q %v, want 503 \"unavailable\"", resp.StatusCode, body, err)
	}

	// Online users still chat.
	ca.Send(`<message type='chat' id='up1' to='` + b.bare() + `'><body>still here</body></message>`)
	m := cb.Expect("up1", func(e xmpptest.Elem) bool { return e.Attr("id") == "up1" })
	if !strings.Contains(m.Inner, "still here") {
		t.Fatalf("got %v", m)
	}

	// A message for an offline account cannot be stored: the sender is told.
	ca.Send(`<message type='chat' id='off1' to='` + c.bare() + `'><body>for later</body></message>`)
	e := ca.Expect("off1 error", func(e xmpptest.Elem) bool { return e.Attr("id") == "off1" })
	if e.Attr("type") != "error" || !strings.Contains(e.Inner, "internal-server-error") {
		t.Fatalf("message that could not be stored: %v", e)
	}

	// Pipelined, each one gets its error, with its id, before the answer
	// to the ping that follows them (issue 15: nothing is dropped, and the
	// answer acknowledges only what was settled).
	ca.Send(`<message type='chat' id='off2' to='` + c.bare() + `'><body>2</body></message>` +
		`<message type='chat' id='off3' to='` + c.bare() + `'><body>3</body></message>` +
		`<iq type='get' id='after-off' to='` + domain + `'><ping xmlns='urn:xmpp:ping'/></iq>`)
	var order []string
	for len(order) < 3 {
		e := ca.Next()
		switch id := e.Attr("id"); id {
		case "off2", "off3":
			if e.Attr("type") != "error" || !strings.Contains(e.Inner, "internal-server-error") {
				t.Fatalf("pipelined message that could not be stored: %v", e)
			}
			order = append(order, id)
		case "after-off":
			order = append(order, id)
		}
	}
	if order[2] != "after-off" {
		t.Fatalf("got %v: the ping was answered before every message's error", order)
	}

	// The password API does not claim it sent anything.
	req, _ := http.NewRequest("POST", "http://"+s.d.Addr("http")+"/api/v1/password", strings.NewReader(`{"phone":"010-5555-0199"}`))
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusAccepted || resp.StatusCode < 500 {
		t.Errorf("password request with the database gone: %d, want a 5xx", resp.StatusCode)
	}
	ca.Sync() // the session is still served
}
