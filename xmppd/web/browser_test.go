package web

import (
	"strings"
	"testing"

	"dialtone/internal/webdriver"
)

// The browser test drives headless Chromium through chromedriver's W3C
// WebDriver HTTP API (internal/webdriver): the page must work in a real
// browser, with its real CSP, cookies and form handling, at a phone's size.

func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	f := newFixture(t, false)
	wd := webdriver.StartT(t, webdriver.Options{}, "")
	expect := func(what, got, want string) {
		t.Helper()
		if !strings.Contains(got, want) {
			t.Fatalf("%s: %q does not contain %q; the page:\n%s", what, got, want, wd.Source())
		}
	}

	wd.Open(f.srv.URL + "/")
	expect("home title", wd.Title(), "Dialtone")
	wd.Screenshot("home")

	// A new user gives the number in national form.
	wd.Type("#new-phone", testNational)
	wd.Submit("#get-password")
	expect("sent page", wd.Text("#sent"), "+82 10-1234-5678")
	wd.Screenshot("sent")

	password := f.passwords.texted(t, testNumber)
	wd.Type("#login-password", "not-the-password")
	wd.Submit("#login")
	expect("wrong password", wd.Text("#login-error"), msgWrongLogin)
	wd.Screenshot("wrong-password")

	wd.Type("#login-password", password)
	wd.Submit("#login")
	expect("account url", wd.URL(), "/account")
	expect("JID", wd.Text("#jid"), "+821012345678@"+testDomain)
	expect("waiting", wd.Text("#waiting"), "3")
	expect("fingerprint", wd.Text("#fingerprint"), testFingerprt)
	wd.Screenshot("account")

	wd.Type("#name", "Kim Min-jun")
	wd.Submit("#save-name")
	expect("name saved", wd.Text("#notice"), "display name is saved")
	f.mu.Lock()
	name := f.names[string(testNumber)]
	f.mu.Unlock()
	if name != "Kim Min-jun" {
		t.Errorf("display name %q", name)
	}
	wd.Screenshot("name-saved")

	wd.Type("#new-password", "new password 1")
	wd.Type("#new-password2", "new password 2")
	wd.Submit("#change-password")
	expect("passwords differ", wd.Text("#password-error"), msgPasswordDiffer)
	wd.Screenshot("password-mismatch")

	const newPassword = "tangerine-lantern-42"
	wd.Type("#new-password", newPassword)
	wd.Type("#new-password2", newPassword)
	wd.Submit("#change-password")
	expect("password changed", wd.Text("#notice"), "password is changed")
	wd.Screenshot("password-changed")

	wd.Submit("#logout")
	expect("logged out", wd.Text("[role=status]"), "logged out")
	wd.Screenshot("logged-out")

	wd.Type("#login-phone", "+82 10 1234 5678")
	wd.Type("#login-password", newPassword)
	wd.Submit("#login")
	expect("logged in again", wd.Text("#jid"), "+821012345678@"+testDomain)
	wd.Screenshot("logged-in-again")

	if errs := wd.ConsoleErrors(); len(errs) > 0 {
		t.Errorf("the browser logged errors (a CSP violation?):\n%s", strings.Join(errs, "\n"))
	}
}
