package interop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"dialtone/internal/webdriver"
)

// A user who only knows their number goes from the home page of the real
// xmppd, in headless Chromium at a phone's size, to chatting in slixmpp:
// the number in national form, the password from the (webhook) SMS, the
// account page with the address and how to connect, a display name that
// XMPP clients see as the vCard FN.
func TestBrowserNewUserToSlixmpp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts xmppd, a browser and slixmpp")
	}
	requireSlixmpp(t)
	if err := webdriver.Missing(webdriver.Options{}); err != nil && os.Getenv("CI") != "true" {
		t.Skipf("!!! SKIPPED, NOT PASSED: the browser test needs %v", err)
	}
	start := time.Now()
	dir := t.TempDir()
	bins := build(t, dir, "xmppd")
	sink := newSMSSink(t)
	s := startServer(t, bins["xmppd"], dir, map[string]string{
		"XMPPD_SMS_GATEWAY":           "webhook",
		"XMPPD_SMS_WEBHOOK_URL":       sink.URL,
		"XMPPD_PASSWORD_SMS_INTERVAL": "0s",
	})
	wd := webdriver.StartT(t, webdriver.Options{Timeout: 30 * time.Second}, "interop")
	home := "http://127.0.0.1:" + s.http + "/"
	expect := func(what, got, want string) {
		t.Helper()
		if !strings.Contains(got, want) {
			t.Fatalf("%s: %q does not contain %q; the page:\n%s", what, got, want, wd.Source())
		}
	}
	fingerprint := certFingerprint(t, s.dataDir)

	users := []struct {
		national, canonical, shown, name, password string
	}{
		{national: "010-1234-5678", canonical: "+821012345678", shown: "+82 10-1234-5678", name: "Kim Min-jun"},
		{national: "010 9876 5432", canonical: "+821098765432", shown: "+82 10-9876-5432", name: "이서연 Lee Seo-yeon"},
	}
	for i := range users {
		u := &users[i]
		who := fmt.Sprintf("user %d (%s)", i+1, u.national)
		wd.Open(home)
		expect(who+": home title", wd.Title(), "Dialtone")
		expect(who+": new-user form", wd.Text("#new-title"), "New here?")
		if i == 0 {
			wd.Screenshot("home")
		}
		wd.Type("#new-phone", u.national)
		wd.Submit("#get-password")
		expect(who+": sent page", wd.Text("#sent"), u.shown)
		wd.Screenshot(fmt.Sprintf("user%d-sent", i+1))

		u.password = sink.password(t, u.canonical, 1)
		wd.Type("#login-password", u.password)
		wd.Submit("#login")
		expect(who+": account url", wd.URL(), "/account")
		jid := u.canonical + "@localhost"
		expect(who+": JID", wd.Text("#jid"), jid)
		connect := wd.Text("section[aria-labelledby=connect-title]")
		for _, want := range []string{jid, "localhost", s.c2s + " (STARTTLS)", s.tls + " (direct TLS)"} {
			expect(who+": connection details", connect, want)
		}
		if fingerprint != "" {
			expect(who+": fingerprint", wd.Text("#fingerprint"), fingerprint)
		}
		wd.Screenshot(fmt.Sprintf("user%d-account", i+1))

		wd.Type("#name", u.name)
		wd.Submit("#save-name")
		expect(who+": name saved", wd.Text("#notice"), "display name is saved")
		// the form shows the name it saved, read back from the vCard
		expect(who+": name shown", wd.Source(), `value="`+html.EscapeString(u.name)+`"`)
		wd.Screenshot(fmt.Sprintf("user%d-name-saved", i+1))

		wd.Submit("#logout")
		expect(who+": logged out", wd.Text("[role=status]"), "logged out")
	}
	if errs := wd.ConsoleErrors(); len(errs) > 0 {
		t.Errorf("the browser logged errors (a CSP violation?):\n%s", strings.Join(errs, "\n"))
	}
	t.Logf("browser part done in %v", time.Since(start).Round(time.Millisecond))

	// The two chat in slixmpp with the texted passwords.
	a, b := users[0], users[1]
	var res chatResult
	runPython(t, 40*time.Second, &res, "slixmpp_chat.py",
		"--host", "127.0.0.1", "--port", s.c2s, "--direct-tls-port", s.tls, "--domain", "localhost",
		"--a", a.canonical, "--a-password", a.password, "--b", b.canonical, "--b-password", b.password,
		"--timeout", "35")
	if !res.OK {
		t.Fatalf("slixmpp chat with the passwords from the page's SMS failed: %s", res.Error)
	}

	// The display names are the vCard FNs another client fetches.
	var vc struct {
		OK    bool              `json:"ok"`
		Error string            `json:"error"`
		FN    map[string]string `json:"fn"`
	}
	aJID, bJID := a.canonical+"@localhost", b.canonical+"@localhost"
	runPython(t, 20*time.Second, &vc, "slixmpp_vcard.py", "--host", "127.0.0.1", "--port", s.c2s,
		"--jid", bJID, "--password", b.password, "--fetch", aJID, "--fetch", bJID, "--timeout", "15")
	if !vc.OK {
		t.Fatalf("slixmpp vCard fetch failed: %s", vc.Error)
	}
	if vc.FN[aJID] != a.name || vc.FN[bJID] != b.name {
		t.Errorf("vCard FNs %q, want %s=%q and %s=%q", vc.FN, aJID, a.name, bJID, b.name)
	}
	s.stop(t)
	t.Logf("whole flow in %v", time.Since(start).Round(time.Millisecond))
}

// runPython runs one of this directory's slixmpp scripts with a deadline
// and decodes the JSON it prints into out; it fails the test when the
// script did not print JSON or did not exit 0 (a script that printed a
// result and then failed, or was killed at the deadline, has not passed),
// and logs its output then.
func runPython(t *testing.T, timeout time.Duration, out any, script string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{script}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil || runErr != nil {
		t.Logf("%s stdout:\n%s\nstderr (end):\n%s", script, stdout.Bytes(), stderr.Bytes()[max(0, stderr.Len()-8000):])
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("%s: output is not JSON (%v); exit: %v", script, err, runErr)
	}
	if runErr != nil {
		t.Fatalf("%s: %v; it printed %s", script, runErr, bytes.TrimSpace(stdout.Bytes()))
	}
}

// certFingerprint is the SHA-256 fingerprint, as the account page shows
// it, of the self-signed certificate xmppd keeps in its data dir; "" when
// there is none.
func certFingerprint(t *testing.T, dataDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "cert.pem"))
	if err != nil {
		t.Logf("no certificate in the data dir (%v): the fingerprint is not checked", err)
		return ""
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("cert.pem holds no PEM block")
	}
	sum := sha256.Sum256(block.Bytes)
	hex := make([]string, len(sum))
	for i, c := range sum {
		hex[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(hex, ":")
}
