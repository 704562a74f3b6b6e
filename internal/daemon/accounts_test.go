package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"dialtone/auth"
	"dialtone/internal/testbin"
	"dialtone/internal/xmpptest"
)

// webhookEnv is noticeEnv with the SMS going to rcv.
func webhookEnv(t *testing.T, dbURL string, rcv *smsReceiver, extra map[string]string) map[string]string {
	env := noticeEnv(t, dbURL, extra)
	env["XMPPD_SMS_GATEWAY"], env["XMPPD_SMS_WEBHOOK_URL"] = "webhook", rcv.URL
	return env
}

// loginHintNotice is the first notice to an unclaimed account whose
// password was handed out already: it says how to log in, and carries no
// new password.
func loginHintNotice(sender, body string) string {
	return `New message from ` + sender + ` on ` + domain + `: "` + body + `". Log in with your phone number and password.`
}

var passwordSMS = regexp.MustCompile(`^Your ` + domain + ` password is ([A-Za-z0-9]+)\. Log in with your phone number, or tap ` + loginLinkRE + `$`)

// loginLinkRE matches the one-tap link of a password SMS (SPEC.md "Web
// client and one-tap login"), on by default.
const loginLinkRE = `(?:http://[^/ ]+/l/[A-Za-z0-9_-]{22})`

// postPassword asks the HTTP API for a new password for num (which
// recycles an account unused for XMPPD_RECYCLE_AFTER before answering).
func postPassword(t *testing.T, s *daemonUnderTest, num string) {
	t.Helper()
	resp, err := http.Post("http://"+s.d.Addr("http")+"/api/v1/password", "application/json",
		strings.NewReader(`{"phone":"`+num+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /api/v1/password: %d, want 202", resp.StatusCode)
	}
}

// requestPassword asks the HTTP API for a new password for num and returns
// the password from its SMS, the n-th SMS to num.
func requestPassword(t *testing.T, s *daemonUnderTest, rcv *smsReceiver, num string, n int) string {
	t.Helper()
	postPassword(t, s, num)
	m := rcv.Wait(t, num, n, noticeTimeout)
	got := passwordSMS.FindStringSubmatch(m.Text)
	if got == nil || m.Purpose != "password" {
		t.Fatalf("password SMS %+v", m)
	}
	return got[1]
}

// authAt runs SASL SCRAM-SHA-256 on a new connection to addr (a server of
// serverDomain) and returns the outcome: "" for success, else the
// condition. On success the client is bound to res.
func authAt(t *testing.T, addr, serverDomain, num, pass, res string) (*xmpptest.Client, string) {
	t.Helper()
	c := xmpptest.Dial(t, addr)
	c.Domain = serverDomain
	c.Open(serverDomain)
	c.StartTLS()
	c.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" })
	if cond := c.Auth(sasl.ScramSha256, num, pass); cond != "" {
		return c, cond
	}
	c.Bind(res)
	return c, ""
}

// xmppctl runs the xmppctl binary on the daemon's configuration (its data
// dir, database and admin socket) and returns its stdout.
func xmppctl(t *testing.T, bin string, s *daemonUnderTest, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "XMPPD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range s.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("xmppctl %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// TestPasswordsHandedOut: a password once given to someone (texted on
// request, printed by xmppctl) is never replaced by a notice, and a
// password request does not lock the owner out (SPEC.md "HTTP", "SMS
// texts").
func TestPasswordsHandedOut(t *testing.T) {
	bin := testbin.Build(t, t.TempDir(), "xmppctl")["xmppctl"]
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			rcv := newSMSReceiver(t)
			s := startDaemon(t, webhookEnv(t, b.url(t), rcv, map[string]string{"XMPPD_NOTICE_WINDOW": window.String()}))
			t.Run("import_print", func(t *testing.T) {
				num := s.newNumber()
				file := filepath.Join(t.TempDir(), "numbers")
				if err := os.WriteFile(file, []byte(num+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				out := strings.Fields(xmppctl(t, bin, s, "account", "import", file, "--print"))
				if len(out) != 2 || out[0] != num {
					t.Fatalf("import --print wrote %q", out)
				}
				testNoticeKeepsPassword(t, s, rcv, user{num: num, pass: out[1]}, 1)
			})
			t.Run("reset_print", func(t *testing.T) {
				num := s.newNumber()
				password := strings.TrimSpace(xmppctl(t, bin, s, "account", "reset", num, "--print"))
				testNoticeKeepsPassword(t, s, rcv, user{num: num, pass: password}, 1)
			})
			t.Run("api_request", func(t *testing.T) {
				num := s.newNumber()
				password := requestPassword(t, s, rcv, num, 1)
				testNoticeKeepsPassword(t, s, rcv, user{num: num, pass: password}, 2)
			})
			t.Run("request_does_not_lock_out", func(t *testing.T) { testRequestDoesNotLockOut(t, s, rcv) })
			t.Run("requested_password_on_the_web_page", func(t *testing.T) { testRequestedPasswordOnWeb(t, s, rcv) })
		})
	}
}

// testNoticeKeepsPassword sends a message to u, whose password was handed
// out and who never logged in: the notice (the n-th SMS to u) says how to
// log in but carries no password, and u's password still logs in.
func testNoticeKeepsPassword(t *testing.T, s *daemonUnderTest, rcv *smsReceiver, u user, n int) {
	alice := s.newUser(t)
	a := s.login(t, alice, "x")
	send(t, a, u.bare(), "hello")
	m := rcv.Wait(t, u.num, n, noticeTimeout)
	if want := loginHintNotice(alice.num, "hello"); m.Text != want || m.Purpose != "notice" {
		t.Errorf("notice %+v, want %q", m, want)
	}
	if _, cond := authAt(t, s.c2s(), domain, u.num, u.pass, "r"); cond != "" {
		t.Fatalf("the password handed out no longer logs in after a message: %s", cond)
	}
}

// The owner is logged in when someone asks for a new password: the
// owner's session stays and the old password keeps working until the new
// one logs in; from then on only the new one works, and the older
// sessions are closed.
func testRequestDoesNotLockOut(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	owner := s.newUser(t)
	first := s.online(t, owner, "first")
	newPassword := requestPassword(t, s, rcv, owner.num, 1)
	drain(first) // the session is still served
	second, cond := authAt(t, s.c2s(), domain, owner.num, owner.pass, "second")
	if cond != "" {
		t.Fatalf("the old password after a request: %s, want success", cond)
	}
	third, cond := authAt(t, s.c2s(), domain, owner.num, newPassword, "third")
	if cond != "" {
		t.Fatalf("the requested password: %s, want success", cond)
	}
	for _, c := range []*xmpptest.Client{first, second} {
		if got := c.ExpectStreamError(); got != "not-authorized" {
			t.Errorf("%s, logged in with the old password: stream error %q, want not-authorized", c.JID, got)
		}
	}
	drain(third)
	if _, cond := authAt(t, s.c2s(), domain, owner.num, owner.pass, "fourth"); cond != "not-authorized" {
		t.Errorf("the old password after the new one logged in: %q, want not-authorized", cond)
	}
	if _, cond := authAt(t, s.c2s(), domain, owner.num, newPassword, "fifth"); cond != "" {
		t.Errorf("the new password a second time: %s", cond)
	}
	drain(third) // a second login with it closes nothing
}

// The home page takes a requested password too, and its login makes it
// the only one, as an XMPP login does.
func testRequestedPasswordOnWeb(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	owner := s.newUser(t)
	c := s.online(t, owner, "phone")
	newPassword := requestPassword(t, s, rcv, owner.num, 1)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := "http://" + s.d.Addr("http")
	resp, err := client.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	token := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if token == nil {
		t.Fatalf("no form token on the home page: %s", page)
	}
	resp, err = client.PostForm(base+"/login", url.Values{"csrf": {string(token[1])}, "phone": {owner.num}, "password": {newPassword}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/account" {
		t.Fatalf("web login with the requested password: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := c.ExpectStreamError(); got != "not-authorized" {
		t.Errorf("the XMPP session of the old password: stream error %q, want not-authorized", got)
	}
	if _, cond := authAt(t, s.c2s(), domain, owner.num, owner.pass, "again"); cond != "not-authorized" {
		t.Errorf("the old password after a web login with the new one: %q, want not-authorized", cond)
	}
}

// TestSenderCaps: a sender leaves messages for at most
// XMPPD_NEW_NUMBERS_PER_SENDER_DAY never-logged-in numbers a day (beyond
// the notice cap: stored without SMS; beyond this one: not stored), the
// count survives a restart, and an account holds at most
// XMPPD_OFFLINE_BYTES of messages.
func TestSenderCaps(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			rcv := newSMSReceiver(t)
			s := startDaemon(t, webhookEnv(t, b.url(t), rcv, map[string]string{
				"XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY": "2",
				"XMPPD_NEW_NUMBERS_PER_SENDER_DAY":        "3",
				"XMPPD_OFFLINE_BYTES":                     "4096",
			}))
			dave := s.newUser(t)
			d := s.login(t, dave, "x")
			n1, n2, n4 := s.newNumber(), s.newNumber(), s.newNumber()
			imported := s.newUser(t) // an account that never logged in counts too
			send(t, d, n1+"@"+domain, "one")
			send(t, d, n2+"@"+domain, "two")
			e := sendRefused(t, d, imported.bare(), "three")
			wantError(t, e, "cancel", "policy-violation")
			if !strings.Contains(e.Inner, "no SMS was sent") {
				t.Errorf("over the notice cap: %v, want a text saying that no SMS was sent", e)
			}
			if n := stored(t, s, imported.num); n != 1 {
				t.Errorf("%d stored over the notice cap, want 1", n)
			}
			refusedNewNumber(t, s, d, n4)
			send(t, d, n1+"@"+domain, "one again") // not a new number
			if n := stored(t, s, n1); n != 2 {
				t.Errorf("%d stored for a number written to before, want 2", n)
			}
			bob := s.activeUser(t) // has logged in: no cap
			send(t, d, bob.bare(), "to an old friend")

			// The count is in the store: a restart does not reset it.
			if err := s.Stop(); err != nil {
				t.Fatal(err)
			}
			s.restart(t)
			d = s.login(t, dave, "y")
			refusedNewNumber(t, s, d, s.newNumber())
			send(t, d, n2+"@"+domain, "two again")

			// XMPPD_OFFLINE_BYTES: 4 KiB of stored messages for bob.
			body := strings.Repeat("x", 1000)
			sent := 1 // "to an old friend"
			for ; sent < 10; sent++ {
				id := nextID("big")
				d.Send(`<message type='chat' id='` + id + `' to='` + bob.bare() + `'><body>` + body + `</body></message>`)
				if e, refused := find(drain(d), func(e xmpptest.Elem) bool { return e.Attr("id") == id }); refused {
					wantError(t, e, "wait", "resource-constraint")
					break
				}
			}
			if sent < 3 || sent == 10 {
				t.Fatalf("refused after %d messages of 1000 bytes, want between 3 and 9", sent)
			}
			msgs, err := s.d.DB.OfflineMessages(context.Background(), bob.num, 0)
			if err != nil {
				t.Fatal(err)
			}
			total := 0
			for _, m := range msgs {
				total += len(m.Stanza)
			}
			if len(msgs) != sent || total > 4096 || total+len(msgs[len(msgs)-1].Stanza) <= 4096 {
				t.Errorf("%d messages of %d bytes stored, want %d within 4096 bytes that one more would pass", len(msgs), total, sent)
			}
		})
	}
}

// refusedNewNumber checks that a message from c to the latent number num
// is refused with policy-violation, and that nothing was stored for it.
func refusedNewNumber(t *testing.T, s *daemonUnderTest, c *xmpptest.Client, num string) {
	t.Helper()
	e := sendRefused(t, c, num+"@"+domain, "one too many")
	wantError(t, e, "cancel", "policy-violation")
	if !strings.Contains(e.Inner, "not stored") {
		t.Errorf("over the new-numbers cap: %v, want a text saying that it was not stored", e)
	}
	if n := stored(t, s, num); n != 0 {
		t.Errorf("%d stored over the new-numbers cap, want none", n)
	}
	if _, err := s.d.DB.Account(context.Background(), auth.Number(num)); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("account of a number over the cap: %v, want none", err)
	}
}

// TestRemoteSenderCaps: senders on two subdomains of one registrable
// domain (a.example.test, b.example.test) share the notice cap and the
// new-numbers cap of their domain, example.test.
func TestRemoteSenderCaps(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			rcv := newSMSReceiver(t)
			const peerA, peerB = "a.example.test", "b.example.test"
			ports := map[string]string{domain: testbin.FreePort(t), peerA: testbin.FreePort(t), peerB: testbin.FreePort(t)}
			var routes []string
			for d, p := range ports {
				routes = append(routes, d+"=127.0.0.1:"+p)
			}
			federated := func(d string, env map[string]string) map[string]string {
				env["XMPPD_DOMAIN"] = d
				env["XMPPD_S2S_ADDR"] = "127.0.0.1:" + ports[d]
				env["XMPPD_S2S_ROUTES"] = strings.Join(routes, ",")
				var others []string
				for o := range ports {
					if o != d {
						others = append(others, o)
					}
				}
				env["XMPPD_S2S_INSECURE_DOMAINS"] = strings.Join(others, ",")
				return env
			}
			s := startDaemon(t, federated(domain, webhookEnv(t, b.url(t), rcv, map[string]string{
				"XMPPD_NOTICE_NEW_NUMBERS_PER_SENDER_DAY": "1",
				"XMPPD_NEW_NUMBERS_PER_SENDER_DAY":        "2",
			})))
			a := startDaemon(t, federated(peerA, noticeEnv(t, "", nil)))
			bd := startDaemon(t, federated(peerB, noticeEnv(t, "", nil)))
			ua, ub := a.newUser(t), bd.newUser(t)
			ca, _ := authAt(t, a.c2s(), peerA, ua.num, ua.pass, "x")
			cb, _ := authAt(t, bd.c2s(), peerB, ub.num, ub.pass, "x")
			if ca.JID == "" || cb.JID == "" {
				t.Fatal("the senders on the peers could not log in")
			}
			n1, n2, n3 := s.newNumber(), s.newNumber(), s.newNumber()

			// a.example.test's first new number: stored and notified.
			ca.Send(`<message type='chat' id='r1' to='` + n1 + `@` + domain + `'><body>from a</body></message>`)
			waitFor(t, "the message from "+peerA+" to be stored", func() bool { return stored(t, s, n1) == 1 })
			m := rcv.Wait(t, n1, 1, noticeTimeout)
			if !strings.Contains(m.Text, ua.num+"@"+peerA) {
				t.Errorf("notice %q does not name the sender %s@%s", m.Text, ua.num, peerA)
			}
			// b.example.test is the same registrable domain: over the
			// notice cap, stored without SMS.
			e := sendRefused(t, cb, n2+"@"+domain, "from b")
			wantError(t, e, "cancel", "policy-violation")
			if !strings.Contains(e.Inner, "no SMS was sent") || !strings.Contains(e.Inner, "example.test") {
				t.Errorf("over the shared notice cap: %v", e)
			}
			if n := stored(t, s, n2); n != 1 {
				t.Errorf("%d stored for %s, want 1", n, n2)
			}
			// and the third new number of example.test is not stored.
			e = sendRefused(t, ca, n3+"@"+domain, "from a again")
			wantError(t, e, "cancel", "policy-violation")
			if !strings.Contains(e.Inner, "not stored") {
				t.Errorf("over the shared new-numbers cap: %v", e)
			}
			if n := stored(t, s, n3); n != 0 {
				t.Errorf("%d stored over the shared new-numbers cap, want none", n)
			}
			rcv.None(t, n2, 0, 0)
		})
	}
}
