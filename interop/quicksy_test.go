package interop

import (
	"testing"
	"time"

	"mellium.im/sasl"

	"dialtone/internal/quicksytest"
	"dialtone/internal/xmpptest"
)

// pin waits for the n-th (from 1) PIN SMS to number, checks its text and
// returns the PIN as the app reads it out of the SMS.
func (k *smsSink) pin(t *testing.T, number string, n int) string {
	t.Helper()
	m := k.nth(t, number, "pin", n)
	pin, ok := quicksytest.ExtractPIN(m.Text)
	if !ok || m.Text != "Your localhost code is: "+pin {
		t.Fatalf("PIN SMS text %q does not match SPEC.md", m.Text)
	}
	return pin
}

// TestQuicksyApp registers two numbers the way the Quicksy app does
// (quicksytest speaks its HTTP exactly), with the PINs the SMS webhook
// got and passwords the app chose, '+' and '&' in them; slixmpp then
// chats with those passwords. The app registering again on an active
// account changes its password (200); the old one stops working; logged
// in with the new one, the app syncs its phone book and finds the other.
func TestQuicksyApp(t *testing.T) {
	if testing.Short() {
		t.Skip("interop: not with -short (make check); make test runs it")
	}
	requireSlixmpp(t)
	s, sink := startWithWebhook(t)
	const (
		a = "+821012345678"
		b = "+821098765432"
	)
	addr := "127.0.0.1:" + s.http
	appA, appB := quicksytest.New(t, addr, "localhost"), quicksytest.New(t, addr, "localhost")
	passA := "Xk+4&mQ9/#$!"                      // the app's alphabet, and '&'
	passB := quicksytest.Password(t)[:10] + "+&" // a password the app made, and more

	register := func(app *quicksytest.App, number, password string, nth, want int) string {
		t.Helper()
		if ans := app.RequestVerification(t, number); ans.Code != 200 {
			t.Fatalf("GET /authentication/%s: %+v", number, ans)
		}
		pin := sink.pin(t, number, nth)
		if ans := app.Verify(t, number, pin, password); ans.Code != want {
			t.Fatalf("POST /password for %s: %+v, want %d", number, ans, want)
		}
		return pin
	}
	pinA := register(appA, a, passA, 1, 201)
	register(appB, b, passB, 1, 201)
	if ans := appA.Verify(t, a, pinA, passA); ans.Code != 404 {
		t.Fatalf("the PIN used a second time: %+v, want 404", ans)
	}

	chat(t, s, a, passA, b, passB, "the app's passwords")

	// A has logged in: the app registering again changes the password.
	newA := "new+pass&word"
	register(appA, a, newA, 2, 200)
	login := func(password string) string { return scramAuth(t, s, sasl.ScramSha1, a, password) }
	if cond := login(passA); cond != "not-authorized" {
		t.Fatalf("login with the password before: %q, want not-authorized", cond)
	}
	if cond := login(newA); cond != "" {
		t.Fatalf("login with the new password: %q", cond)
	}

	// The app, logged in with the password it chose, syncs its phone
	// book (quicksytest speaks the app's phone-book query and computes
	// its statusQuo): B is found, a number nobody registered is not, and
	// the same phone book again is answered "unchanged".
	c := xmpptest.Login(t, "127.0.0.1:"+s.c2s, a, newA, "quicksy")
	book := []string{b, "+821055550000"}
	got := appA.SyncPhoneBook(t, c, book)
	if got.Type != "result" || got.Unchanged || len(got.Entries) != 1 || got.Entries[0].Number != b ||
		len(got.Entries[0].JIDs) != 1 || got.Entries[0].JIDs[0] != b+"@localhost" {
		t.Fatalf("phone-book sync: %+v, want %s found as %s@localhost", got, b, b)
	}
	if got := appA.SyncPhoneBook(t, c, book); got.Type != "result" || !got.Unchanged {
		t.Fatalf("the same phone book again: %+v, want unchanged", got)
	}

	// Three PINs a day for one installation: the fourth is refused with
	// a Retry-After the app can read.
	if ans := appA.RequestVerification(t, a); ans.Code != 200 {
		t.Fatalf("third PIN: %+v", ans)
	}
	ans := appA.RequestVerification(t, a)
	if ans.Code != 429 || ans.RetryIn < 23*time.Hour || ans.RetryIn > 24*time.Hour {
		t.Fatalf("fourth PIN in a day: %+v, want 429 with Retry-After about a day", ans)
	}
	s.stop(t)
}
