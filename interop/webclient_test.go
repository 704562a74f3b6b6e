package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"dialtone/internal/webdriver"
)

// The web client and one-tap login (SPEC.md "Web client and one-tap
// login") in headless Chromium at a phone's size, against the real xmppd:
// someone writes to a number that has never been used; its owner opens
// the link in the notice SMS and reads the message in Converse.js at
// /chat, and answers; a slixmpp user gets the answer. Then the same from
// the home page's "Open chat", and the pages of links that no longer
// work. Screenshots of each page are kept (DIALTONE_SCREENSHOTS, or the
// test's temporary directory, logged).
func TestBrowserWebClient(t *testing.T) {
	if testing.Short() {
		t.Skip("starts xmppd, a browser and slixmpp")
	}
	requireSlixmpp(t)
	if err := webdriver.Missing(webdriver.Options{}); err != nil && os.Getenv("CI") != "true" {
		t.Skipf("!!! SKIPPED, NOT PASSED: the browser test needs %v", err)
	}
	dir := t.TempDir()
	bins := build(t, dir, "xmppd", "xmppctl")
	sink := newSMSSink(t)
	s := startServer(t, bins["xmppd"], dir, map[string]string{
		"XMPPD_SMS_GATEWAY":           "webhook",
		"XMPPD_SMS_WEBHOOK_URL":       sink.URL,
		"XMPPD_PASSWORD_SMS_INTERVAL": "0s",
	})
	// The links point at XMPPD_PUBLIC_URL, by default http://DOMAIN:PORT.
	base := "http://localhost:" + s.http

	const (
		alice       = "+821012345678"
		viaLink     = "+821055550001" // never used: reads the notice's link
		viaHome     = "+821055550002" // never used: logs in on the home page
		hello       = "Hello from Alice! Are you there?"
		helloHome   = "Second hello, for the home page"
		answerLink  = "Yes, I read it in the browser"
		answerHome  = "Hi from the home page chat"
		peerTimeout = 150
	)
	alicePassword := strings.TrimSpace(s.xmppctl(t, bins["xmppctl"], "account", "reset", alice, "--print"))

	// Alice writes to both numbers and waits for their answers.
	ctx, cancel := context.WithTimeout(context.Background(), (peerTimeout+20)*time.Second)
	defer cancel()
	peer := exec.CommandContext(ctx, python, "slixmpp_peer.py",
		"--host", "127.0.0.1", "--port", s.c2s, "--domain", "localhost",
		"--jid", alice+"@localhost", "--password", alicePassword,
		"--send", viaLink, hello, "--send", viaHome, helloHome,
		"--expect", viaLink, answerLink, "--expect", viaHome, answerHome,
		"--timeout", fmt.Sprint(peerTimeout))
	var peerOut, peerErr bytes.Buffer
	peer.Stdout, peer.Stderr = &peerOut, &peerErr
	if err := peer.Start(); err != nil {
		t.Fatal(err)
	}
	peerDone := make(chan error, 1)
	go func() { peerDone <- peer.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-peerDone
	})

	wd := webdriver.StartT(t, webdriver.Options{Timeout: 60 * time.Second}, "webclient")
	expect := func(what, got, want string) {
		t.Helper()
		if !strings.Contains(got, want) {
			t.Fatalf("%s: %q does not contain %q; the page:\n%.3000s", what, got, want, wd.Source())
		}
	}

	// 1. The notice to the never-used number carries the link; opening it
	// logs in and shows the conversation with the waiting message.
	notice := sink.noticeLink(t, viaLink)
	if !strings.HasPrefix(notice.link, base+"/l/") {
		t.Fatalf("link %q is not under XMPPD_PUBLIC_URL %s", notice.link, base)
	}
	wd.Open(notice.link)
	readAndAnswer(t, wd, "link", hello, answerLink)

	// 2. The other number: its password on the home page, then "Open chat".
	wd.Open(base + "/account")
	wd.Submit("#logout")
	wd.Open(base + "/")
	wd.Type("#login-phone", "010-5555-0002")
	wd.Type("#login-password", sink.noticeLink(t, viaHome).password)
	wd.Submit("#login")
	expect("account page", wd.URL(), "/account")
	expect("Open chat", wd.Text("#open-chat"), "Open chat")
	wd.Screenshot("home-account")
	wd.Submit("#open-chat")
	readAndAnswer(t, wd, "home", helloHome, answerHome)

	// Alice got both answers.
	select {
	case err := <-peerDone:
		var res struct {
			OK       bool       `json:"ok"`
			Error    string     `json:"error"`
			Received [][]string `json:"received"`
		}
		if jerr := json.Unmarshal(peerOut.Bytes(), &res); jerr != nil || err != nil || !res.OK {
			t.Fatalf("slixmpp peer: %v %v %s\nstderr: %s", err, jerr, peerOut.String(), peerErr.String())
		}
		t.Logf("slixmpp received %q", res.Received)
		peerDone <- nil // for the cleanup
	case <-time.After(60 * time.Second):
		t.Fatalf("slixmpp did not get the answers; so far: %s", peerOut.String())
	}
	if errs := cspErrors(wd.ConsoleErrors()); len(errs) > 0 {
		t.Errorf("the browser reported CSP violations:\n%s", strings.Join(errs, "\n"))
	}

	// Logging out of the chat ends the web session too.
	wd.Click("converse-controlbox-navback converse-icon")
	waitFor(t, wd, 10*time.Second, "the controlbox", `return !!document.querySelector("converse-user-profile a.show-profile")`)
	wd.Click("converse-user-profile a.show-profile")
	waitFor(t, wd, 10*time.Second, "the profile", `return !!document.querySelector("converse-profile-modal button.btn-danger")`)
	wd.Click("converse-profile-modal button.btn-danger")
	waitFor(t, wd, 10*time.Second, "the confirmation", `return !!document.querySelector("converse-confirm-modal.show button[type=submit]")`)
	wd.Click("converse-confirm-modal.show button[type=submit]")
	waitFor(t, wd, 30*time.Second, "the home page after logging out of the chat", `return location.pathname === "/" && document.body.innerText.includes("You are logged out.")`)
	wd.Screenshot("chat-logged-out")
	wd.Open(base + "/chat")
	waitFor(t, wd, 30*time.Second, "the login form after logging out", `return !!document.querySelector("#converse-login-jid")`)

	// 3. Links that no longer work: used, after a newer password,
	// malformed; each page offers a new password.
	wd.Open(notice.link)
	expect("used link", wd.Text("#link-title"), "used already")
	wd.Screenshot("link-used")
	for range 2 {
		if code, _, body := requestPassword(t, s, viaHome); code != http.StatusAccepted {
			t.Fatalf("password request: %d %s", code, body)
		}
	}
	older, newer := sink.passwordSMS(t, viaHome, 1), sink.passwordSMS(t, viaHome, 2)
	wd.Open(older[2])
	expect("superseded link", wd.Text("#link-title"), "out of date")
	wd.Screenshot("link-superseded")
	wd.Open(base + "/l/not-a-token")
	expect("malformed link", wd.Text("#link-title"), "does not work")
	wd.Screenshot("link-malformed")
	// The newer link works, after the older failed.
	wd.Open(newer[2])
	waitFor(t, wd, 60*time.Second, "the chat after the newer link", `return location.pathname === "/chat" && !!document.querySelector("converse-roster, converse-chats")`)
	wd.Open(older[2])
	wd.Type("#new-phone", "010-5555-0002")
	wd.Submit("#get-password")
	expect("new password from a dead link's page", wd.Text("#sent"), "+82 10-5555-0002")
	wd.Screenshot("link-new-password")
	third := sink.passwordSMS(t, viaHome, 3)[1]

	// 4. Without a web session, /chat's own form takes the number as
	// people write it.
	wd.Open(base + "/account")
	wd.Submit("#logout")
	wd.Open(base + "/chat")
	// The label's textContent, not WebDriver's rendered text: the form
	// may exist before it is shown, and a hidden element's text is "";
	// then the field must be shown before it is typed into.
	waitFor(t, wd, 30*time.Second, "the login form asking for a number", `const l = document.querySelector("label[for=converse-login-jid]"); return !!document.querySelector("#converse-login-jid[data-dialtone]") && !!l && l.textContent.includes("Phone number") && document.querySelector("#converse-login-jid").getClientRects().length > 0`)
	wd.Screenshot("chat-login")
	wd.Type("#converse-login-jid", "12345")
	wd.Type("#converse-login-password", third)
	wd.Click("converse-login-form button[type=submit]")
	waitFor(t, wd, 30*time.Second, "the error for a bad number", `return document.querySelector("converse-login-form .conn-feedback").innerText.includes("does not look like a phone number")`)
	wd.Screenshot("chat-login-bad-number")
	wd.Type("#converse-login-jid", "010 5555 0002")
	wd.Type("#converse-login-password", third)
	wd.Click("converse-login-form button[type=submit]")
	waitFor(t, wd, 30*time.Second, "the chat after the form login", `return !!document.querySelector("converse-roster") && document.body.innerText.includes("+821055550002@localhost")`)
	wd.Screenshot("chat-logged-in")
	for _, e := range wd.ConsoleErrors() {
		t.Logf("browser console: %s", e)
	}

	// 5. Expired: another server whose links work for a second.
	sink2 := newSMSSink(t)
	s2 := startServer(t, bins["xmppd"], t.TempDir(), map[string]string{
		"XMPPD_SMS_GATEWAY":     "webhook",
		"XMPPD_SMS_WEBHOOK_URL": sink2.URL,
		"XMPPD_LOGIN_LINK_TTL":  "1s",
	})
	if code, _, body := requestPassword(t, s2, viaLink); code != http.StatusAccepted {
		t.Fatalf("password request: %d %s", code, body)
	}
	expired := sink2.passwordSMS(t, viaLink, 1)[2]
	// GET spends nothing, so it can watch the link expire.
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(expired)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusGone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the link of a 1s TTL still answers %d", resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wd.Open(expired)
	expect("expired link", wd.Text("#link-title"), "expired")
	wd.Screenshot("link-expired")
	s2.stop(t)
	s.stop(t)
}

// readAndAnswer waits, on /chat, for the conversation with the message
// want to be open, answers it, and waits for the answer to show.
func readAndAnswer(t *testing.T, wd *webdriver.T, name, want, answer string) {
	t.Helper()
	waitFor(t, wd, 60*time.Second, "the conversation with the waiting message",
		`return location.pathname === "/chat" && !!document.querySelector("textarea.chat-textarea") && `+
			`[...document.querySelectorAll("converse-chat-message .chat-msg__text")].some(e => e.innerText.includes(`+jsString(want)+`))`)
	wd.Screenshot(name + "-chat")
	wd.Type("textarea.chat-textarea", answer+"\uE007")
	waitFor(t, wd, 30*time.Second, "the answer in the conversation",
		`return [...document.querySelectorAll("converse-chat-message .chat-msg__text")].some(e => e.innerText.includes(`+jsString(answer)+`))`)
	wd.Screenshot(name + "-answered")
}

// cspErrors are the console messages about the Content-Security-Policy.
func cspErrors(all []string) []string {
	var out []string
	for _, e := range all {
		if strings.Contains(e, "Content Security Policy") || strings.Contains(e, "Content-Security-Policy") {
			out = append(out, e)
		}
	}
	return out
}

// noticeSMS is a notice with its password and one-tap link.
type noticeSMS struct{ text, password, link string }

var noticeLinkText = regexp.MustCompile(`and password ([A-Za-z0-9]+), or tap (http://\S+/l/[A-Za-z0-9_-]{22})$`)

// noticeLink waits for the first notice to number and returns it.
func (k *smsSink) noticeLink(t *testing.T, number string) noticeSMS {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range k.To(number) {
			if m.Purpose != "notice" {
				continue
			}
			sub := noticeLinkText.FindStringSubmatch(m.Text)
			if sub == nil {
				t.Fatalf("notice %q has no password and link", m.Text)
			}
			return noticeSMS{m.Text, sub[1], sub[2]}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no notice to %s", number)
	return noticeSMS{}
}

// waitFor polls the script cond (a function body that returns a boolean)
// in the page until it is true, or fails the test at the deadline.
func waitFor(t *testing.T, wd *webdriver.T, d time.Duration, what, cond string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var ok bool
		err := wd.D.Execute(cond, &ok)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			wd.Screenshot("timeout")
			t.Fatalf("no %s within %v (last error %v); the page:\n%.5000s", what, d, err, wd.Source())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
