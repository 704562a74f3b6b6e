package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"mellium.im/sasl"

	"dialtone/internal/testbin"
	"dialtone/internal/xmpptest"
)

// smsSink is the webhook SMS receiver (SPEC.md "SMS gateway webhook").
type smsSink struct{ *testbin.SMSReceiver }

func newSMSSink(t *testing.T) *smsSink { return &smsSink{testbin.NewSMSReceiver(t)} }

// passwordText is the password SMS with its one-tap link (SPEC.md "Web
// client and one-tap login"), on by default.
var passwordText = regexp.MustCompile(`^Your localhost password is ([A-Za-z0-9]+)\. Log in with your phone number, or tap (http://localhost:\d+/l/[A-Za-z0-9_-]{22})$`)

// password waits for the n-th (from 1) password SMS to number and returns the password.
func (k *smsSink) password(t *testing.T, number string, n int) string {
	t.Helper()
	return k.passwordSMS(t, number, n)[1]
}

// passwordSMS waits for the n-th (from 1) password SMS to number and
// returns its text, password and link (passwordText's groups).
func (k *smsSink) passwordSMS(t *testing.T, number string, n int) []string {
	t.Helper()
	m := k.nth(t, number, "password", n)
	sub := passwordText.FindStringSubmatch(m.Text)
	if sub == nil {
		t.Fatalf("password SMS text %q does not match SPEC.md", m.Text)
	}
	return sub
}

// nth waits for the n-th (from 1) SMS of purpose to number.
func (k *smsSink) nth(t *testing.T, number, purpose string, n int) testbin.ReceivedSMS {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		seen := 0
		for _, m := range k.To(number) {
			if m.Purpose != purpose {
				continue
			}
			if seen++; seen == n {
				return m
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no %s SMS #%d to %s; got %+v", purpose, n, number, k.To(number))
	return testbin.ReceivedSMS{}
}

// startWithWebhook builds and starts xmppd with its SMS going to a local
// webhook receiver, and no interval between password SMS.
func startWithWebhook(t *testing.T) (*server, *smsSink) {
	t.Helper()
	dir := t.TempDir()
	bins := build(t, dir, "xmppd")
	sink := newSMSSink(t)
	s := startServer(t, bins["xmppd"], dir, map[string]string{
		"XMPPD_SMS_GATEWAY":           "webhook",
		"XMPPD_SMS_WEBHOOK_URL":       sink.URL,
		"XMPPD_PASSWORD_SMS_INTERVAL": "0s",
	})
	return s, sink
}

// chat runs slixmpp_chat.py for a and b with their passwords; what names
// the passwords in a failure.
func chat(t *testing.T, s *server, a, passA, b, passB, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	script := exec.CommandContext(ctx, python, "slixmpp_chat.py",
		"--host", "127.0.0.1", "--port", s.c2s, "--direct-tls-port", s.tls, "--domain", "localhost",
		"--a", a, "--a-password", passA, "--b", b, "--b-password", passB, "--timeout", "60")
	var stdout, stderr bytes.Buffer
	script.Stdout, script.Stderr = &stdout, &stderr
	runErr := script.Run()
	var res chatResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || runErr != nil || !res.OK {
		t.Fatalf("slixmpp chat with %s failed: %v %v %s\n%s", what, err, runErr, res.Error, stderr.String())
	}
}

// scramAuth runs SASL mech for number with password on a new connection
// and returns "" on success, else the condition.
func scramAuth(t *testing.T, s *server, mech sasl.Mechanism, number, password string) string {
	t.Helper()
	c := xmpptest.Dial(t, "127.0.0.1:"+s.c2s)
	c.Open("localhost")
	c.StartTLS()
	c.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" })
	return c.Auth(mech, number, password)
}

func requestPassword(t *testing.T, s *server, phone string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Post("http://127.0.0.1:"+s.http+"/api/v1/password", "application/json",
		strings.NewReader(`{"phone":"`+phone+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// A user who knows only their number gets a password by SMS through the
// HTTP API and chats from slixmpp; a new password voids the old one once
// it has logged in, not before (SPEC.md "HTTP").
func TestNewUserFromHomePage(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	requireSlixmpp(t)
	s, sink := startWithWebhook(t)
	const (
		a = "+821012345678"
		b = "+821098765432"
	)
	for _, phone := range []string{"010-1234-5678", "+82 10-9876-5432", "010-1234-5678"} {
		code, _, body := requestPassword(t, s, phone)
		if code != http.StatusAccepted || !strings.Contains(body, `"status":"sent"`) {
			t.Fatalf("request for %s: %d %s", phone, code, body)
		}
	}
	oldA := sink.password(t, a, 1)
	newA := sink.password(t, a, 2)
	passB := sink.password(t, b, 1)
	if oldA == newA {
		t.Fatal("a new password request gave the same password")
	}
	// The first password still works: the second has not logged in yet.
	auth := func(password string) string { return scramAuth(t, s, sasl.ScramSha256, a, password) }
	if cond := auth(oldA); cond != "" {
		t.Fatalf("login with the first password before the second was used: %q", cond)
	}
	// Invalid numbers and bad requests get 400.
	if code, _, body := requestPassword(t, s, "12345"); code != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
		t.Fatalf("invalid number: %d %s", code, body)
	}

	chat(t, s, a, newA, b, passB, "SMS passwords")
	// The second password logged in: the first stopped working.
	if cond := auth(oldA); cond != "not-authorized" {
		t.Fatalf("login with the voided password: %q", cond)
	}
	s.stop(t)
}

// The password API throttles per number with Retry-After (SPEC.md).
func TestPasswordThrottle(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	dir := t.TempDir()
	bins := build(t, dir, "xmppd")
	sink := newSMSSink(t)
	s := startServer(t, bins["xmppd"], dir, map[string]string{
		"XMPPD_SMS_GATEWAY":     "webhook",
		"XMPPD_SMS_WEBHOOK_URL": sink.URL,
	})
	if code, _, _ := requestPassword(t, s, "010-5555-1234"); code != http.StatusAccepted {
		t.Fatalf("first request: %d", code)
	}
	code, h, body := requestPassword(t, s, "+821055551234")
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" || !strings.Contains(body, "too many requests") {
		t.Fatalf("second request within XMPPD_PASSWORD_SMS_INTERVAL: %d %v %s", code, h, body)
	}
	sink.password(t, "+821055551234", 1)
	s.stop(t)
}
