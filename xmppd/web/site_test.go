package web

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/sms"
)

func TestHomePageNotConfigured(t *testing.T) {
	srv := httptest.NewServer(New(Options{}))
	defer srv.Close()
	code, h, body := get(t, srv, "/")
	if code != 503 || !strings.Contains(body, "not configured") {
		t.Errorf("%d %q", code, body)
	}
	if h.Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers %v", h)
	}
	if code, _, _ := get(t, srv, "/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
}

func TestHomePage(t *testing.T) {
	f := newFixture(t, false)
	a := f.browser(t).get("/")
	if a.code != 200 || a.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatal(a)
	}
	for k, v := range map[string]string{
		"X-Frame-Options":        "DENY",
		"Referrer-Policy":        "no-referrer",
		"X-Content-Type-Options": "nosniff",
		"Cache-Control":          "no-store",
	} {
		if got := a.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	csp := a.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "script-src") {
		t.Errorf("CSP %q allows inline code or scripts", csp)
	}
	// The one inline stylesheet is allowed by its hash, exactly.
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(a.body)
	if m == nil {
		t.Fatal("no stylesheet")
	}
	sum := sha256.Sum256([]byte(m[1]))
	if h := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, h) {
		t.Errorf("CSP %q does not allow the stylesheet (%s)", csp, h)
	}
	if strings.Contains(strings.ToLower(a.body), "<script") {
		t.Error("the page has a script")
	}
	mustContain(t, "home", a.body,
		`<label for="login-phone">`, `<label for="login-password">`, `<label for="new-phone">`,
		`formaction="/send-password"`, `name="viewport"`, testDomain)
	if c := (&http.Response{Header: a.header}).Cookies(); len(c) != 1 || c[0].Name != formCookie || !c[0].HttpOnly || c[0].Secure {
		t.Errorf("cookies %v", c)
	}
}

// The whole way through, as a browser without JavaScript goes it.
func TestWebFlow(t *testing.T) {
	f := newFixture(t, false)
	b := f.browser(t)

	a := b.post("/send-password", url.Values{"csrf": {b.token("/")}, "phone": {testNational}})
	if a.code != 200 {
		t.Fatal(a)
	}
	mustContain(t, "sent page", a.body, "+82 10-1234-5678", "(if the number is valid)", `value="+821012345678"`)
	if got := f.passwords.requests(); len(got) != 1 || got[0] != testNational+"|127.0.0.1" {
		t.Errorf("requests %q", got)
	}
	pw := f.passwords.texted(t, testNumber)

	b.login(testNational, pw)
	if _, ok := f.store.logins[testNumber]; !ok {
		t.Error("the web login was not recorded")
	}
	c := b.cookie(sessionCookie)
	if c == nil || !strings.HasPrefix(c.Value, string(testNumber)+".") {
		t.Fatalf("session cookie %v", c)
	}
	a = b.get("/account")
	if a.code != 200 {
		t.Fatal(a)
	}
	mustContain(t, "account page", a.body, "+821012345678@chat.example", `id="waiting">3<`,
		"xmpp.chat.example", "5222", "(STARTTLS)", "5223", "(direct TLS)", testFingerprt)
	if a := b.get("/"); a.code != http.StatusSeeOther || a.header.Get("Location") != "/account" {
		t.Errorf("home while logged in: %v", a)
	}

	tok := b.token("/account")
	a = b.post("/account/name", url.Values{"csrf": {tok}, "name": {"  Kim Min-jun  "}})
	if a.code != http.StatusSeeOther || a.header.Get("Location") != "/account?done=name" {
		t.Fatal(a)
	}
	if got := f.names[string(testNumber)]; got != "Kim Min-jun" {
		t.Errorf("name %q", got)
	}
	mustContain(t, "after the name", b.get("/account?done=name").body, "display name is saved")

	for _, tc := range []struct{ p1, p2, want string }{
		{"short", "short", "at least 10 characters"},
		{"long enough 1", "long enough 2", "not the same"},
		{"ünïcödé-pässwörd", "ünïcödé-pässwörd", "no accents"},
		{strings.Repeat("x", 129), strings.Repeat("x", 129), "at most 128"},
	} {
		a = b.post("/account/password", url.Values{"csrf": {tok}, "password": {tc.p1}, "password2": {tc.p2}})
		if a.code != 400 {
			t.Errorf("%q/%q: %v", tc.p1, tc.p2, a)
		}
		mustContain(t, "password error", a.body, tc.want, `id="password-error"`)
	}
	if len(f.kicked) != 0 {
		t.Fatalf("a refused password change closed sessions: %v", f.kicked)
	}
	const newPassword = "correct horse battery"
	a = b.post("/account/password", url.Values{"csrf": {tok}, "password": {newPassword}, "password2": {newPassword}})
	if a.code != http.StatusSeeOther || a.header.Get("Location") != "/account?done=password" {
		t.Fatal(a)
	}
	if len(f.kicked) != 1 || f.kicked[0] != testNumber {
		t.Errorf("sessions closed for %v", f.kicked)
	}
	// This browser stays logged in under the new generation.
	if a := b.get("/account?done=password"); a.code != 200 || !strings.Contains(a.body, "password is changed") {
		t.Errorf("after the change: %v", a)
	}

	a = b.post("/logout", url.Values{"csrf": {b.token("/account")}})
	if a.code != http.StatusSeeOther || a.header.Get("Location") != "/?bye=1" {
		t.Fatal(a)
	}
	if b.cookie(sessionCookie) != nil {
		t.Error("the session cookie outlived logout")
	}
	mustContain(t, "logged out", b.get("/?bye=1").body, "You are logged out.")
	if a := b.get("/account"); a.code != http.StatusSeeOther || a.header.Get("Location") != "/" {
		t.Errorf("account after logout: %v", a)
	}

	a = b.post("/login", url.Values{"csrf": {b.token("/")}, "phone": {string(testNumber)}, "password": {pw}})
	if a.code != 401 || !strings.Contains(a.body, msgWrongLogin) {
		t.Errorf("old password: %v", a)
	}
	b.login("+82 10 1234 5678", newPassword)
}

// A password change ends other browsers' sessions, as it ends XMPP ones.
func TestNewPasswordEndsWebSessions(t *testing.T) {
	f := newFixture(t, false)
	f.store.setPassword(t, testNumber, "first-password")
	phone, laptop := f.browser(t), f.browser(t)
	phone.login(testNational, "first-password")
	laptop.login(testNational, "first-password")
	tok := phone.token("/account")
	a := phone.post("/account/password", url.Values{"csrf": {tok}, "password": {"second-password"}, "password2": {"second-password"}})
	if a.code != http.StatusSeeOther {
		t.Fatal(a)
	}
	if a := laptop.get("/account"); a.code != http.StatusSeeOther {
		t.Errorf("the other browser is still logged in: %v", a)
	}
	if a := phone.get("/account"); a.code != 200 {
		t.Errorf("the browser that changed it was logged out: %v", a)
	}
	// So does a password SMS.
	f.passwords.Request(t.Context(), testNational, "127.0.0.1")
	if a := phone.get("/account"); a.code != http.StatusSeeOther {
		t.Errorf("still logged in after a new password was texted: %v", a)
	}
}

func TestLoginErrors(t *testing.T) {
	f := newFixture(t, false)
	f.store.setPassword(t, testNumber, "right-password")
	b := f.browser(t)
	for _, tc := range []struct {
		name, phone, password string
		code                  int
		want                  string
	}{
		{"no number", "", "x", 400, msgNoNumber},
		{"bad number", "12345", "x", 400, "does not look like a phone number"},
		{"no password", testNational, "", 400, msgNoPassword},
		{"wrong password", testNational, "wrong-password", 401, msgWrongLogin},
		{"unknown number", "010-9876-5432", "right-password", 401, msgWrongLogin},
	} {
		a := b.post("/login", url.Values{"csrf": {b.token("/")}, "phone": {tc.phone}, "password": {tc.password}})
		if a.code != tc.code || !strings.Contains(a.body, tc.want) {
			t.Errorf("%s: %v", tc.name, a)
		}
		if b.cookie(sessionCookie) != nil {
			t.Errorf("%s: logged in", tc.name)
		}
	}
}

// Failed web logins count in the lockout that XMPP logins share; while
// locked even the right password is refused.
func TestLockoutThroughWebLogin(t *testing.T) {
	f := newFixture(t, false)
	f.store.setPassword(t, testNumber, "right-password")
	b := f.browser(t)
	try := func(password string) answer {
		return b.post("/login", url.Values{"csrf": {b.token("/")}, "phone": {testNational}, "password": {password}})
	}
	for i := range testLockFailed {
		if a := try("wrong-password"); a.code != 401 {
			t.Fatalf("failure %d: %v", i+1, a)
		}
	}
	if d := f.lockout.Locked(testNumber); d != time.Minute {
		t.Fatalf("the shared lockout has %v", d)
	}
	a := try("right-password")
	if a.code != 429 || !strings.Contains(a.body, "Too many failed logins") || a.header.Get("Retry-After") != "60" {
		t.Fatalf("locked: %v %v", a, a.header)
	}
	if b.cookie(sessionCookie) != nil {
		t.Fatal("logged in while locked")
	}
	f.clock.Add(61 * time.Second)
	b.login(testNational, "right-password")
	if f.lockout.Locked(testNumber) != 0 {
		t.Error("still locked")
	}

	// An XMPP lock (the same Lockout) locks the web too, for unknown
	// numbers as well.
	other := auth.Number("+821098765432")
	for range testLockFailed {
		f.lockout.Fail(other)
	}
	b2 := f.browser(t)
	a = b2.post("/login", url.Values{"csrf": {b2.token("/")}, "phone": {"010-9876-5432"}, "password": {"anything-at-all"}})
	if a.code != 429 {
		t.Errorf("locked unknown number: %v", a)
	}
}

func TestCSRF(t *testing.T) {
	f := newFixture(t, false)
	f.store.setPassword(t, testNumber, "right-password")
	victim := f.browser(t)
	victim.login(testNational, "right-password")
	attacker := f.browser(t)
	attackerToken := attacker.token("/")
	loggedOutToken := f.browser(t).token("/")

	for _, tc := range []struct {
		name, path string
		form       url.Values
	}{
		{"login without token", "/login", url.Values{"phone": {testNational}, "password": {"right-password"}}},
		{"password without token", "/send-password", url.Values{"phone": {testNational}}},
		{"password with another browser's token", "/send-password", url.Values{"csrf": {attackerToken}, "phone": {testNational}}},
		{"name without token", "/account/name", url.Values{"name": {"pwned"}}},
		{"name with a logged-out token", "/account/name", url.Values{"csrf": {loggedOutToken}, "name": {"pwned"}}},
		{"name with another browser's token", "/account/name", url.Values{"csrf": {attackerToken}, "name": {"pwned"}}},
		{"password change without token", "/account/password", url.Values{"password": {"attacker-chosen"}, "password2": {"attacker-chosen"}}},
		{"logout without token", "/logout", nil},
	} {
		a := victim.post(tc.path, tc.form)
		if a.code != http.StatusForbidden || !strings.Contains(a.body, "out of date") {
			t.Errorf("%s: %v", tc.name, a)
		}
	}
	if len(f.passwords.requests()) != 0 || len(f.names) != 0 || len(f.kicked) != 0 {
		t.Errorf("a refused form did something: %v %v %v", f.passwords.requests(), f.names, f.kicked)
	}
	if a := victim.get("/account"); a.code != 200 {
		t.Errorf("the victim was logged out: %v", a)
	}
	// Without the form cookie no token is good.
	noCookie := f.browser(t)
	a := noCookie.post("/login", url.Values{"csrf": {loggedOutToken}, "phone": {testNational}, "password": {"right-password"}})
	if a.code != http.StatusForbidden {
		t.Errorf("no form cookie: %v", a)
	}
	// The refusal hands out a cookie, so that trying again works.
	if noCookie.cookie(formCookie) == nil {
		t.Error("no new form cookie")
	}
}

func TestSessionCookieTampering(t *testing.T) {
	f := newFixture(t, false)
	f.store.setPassword(t, testNumber, "right-password")
	other := auth.Number("+821098765432")
	f.store.setPassword(t, other, "other-password")
	b := f.browser(t)
	b.login(testNational, "right-password")
	good := b.cookie(sessionCookie).Value
	parts := strings.Split(good, ".")
	flip := func(s string) string {
		r := []byte(s)
		if r[len(r)-1] == 'A' {
			r[len(r)-1] = 'B'
		} else {
			r[len(r)-1] = 'A'
		}
		return string(r)
	}
	for _, tc := range []struct{ name, value string }{
		{"other number", string(other) + "." + strings.Join(parts[1:], ".")},
		{"other generation", parts[0] + ".2." + parts[2] + "." + parts[3]},
		{"later expiry", parts[0] + "." + parts[1] + ".99999999999." + parts[3]},
		{"changed MAC", strings.Join(parts[:3], ".") + "." + flip(parts[3])},
		{"no MAC", strings.Join(parts[:3], ".")},
		{"garbage", "%%%"},
		{"empty", ""},
	} {
		b.setCookie(sessionCookie, tc.value)
		if a := b.get("/account"); a.code != http.StatusSeeOther || a.header.Get("Location") != "/" {
			t.Errorf("%s: %v", tc.name, a)
		}
	}
	// A cookie signed with another key is refused too.
	forged := deriveKeys([]byte("another secret key, 32 bytes...")).encode(session{number: other, generation: 1, expires: f.clock.Now().Add(time.Hour)})
	b.setCookie(sessionCookie, forged)
	if a := b.get("/account"); a.code != http.StatusSeeOther {
		t.Errorf("forged: %v", a)
	}
	b.setCookie(sessionCookie, good)
	if a := b.get("/account"); a.code != 200 {
		t.Fatalf("the good cookie: %v", a)
	}
	f.clock.Add(sessionTTL)
	if a := b.get("/account"); a.code != http.StatusSeeOther {
		t.Errorf("expired: %v", a)
	}
}

func TestSecureCookiesOverTLS(t *testing.T) {
	f := newFixture(t, true)
	f.store.setPassword(t, testNumber, "right-password")
	b := f.browser(t)
	a := b.get("/")
	tok := csrfField.FindStringSubmatch(a.body)[1]
	a = b.post("/login", url.Values{"csrf": {tok}, "phone": {testNational}, "password": {"right-password"}})
	if a.code != http.StatusSeeOther {
		t.Fatal(a)
	}
	cookies := (&http.Response{Header: a.header}).Cookies()
	if len(cookies) == 0 {
		t.Fatal("no cookie")
	}
	for _, c := range cookies {
		if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
			t.Errorf("cookie %s: Secure %v HttpOnly %v SameSite %v", c.Name, c.Secure, c.HttpOnly, c.SameSite)
		}
	}
}

func TestPasswordFormErrors(t *testing.T) {
	f := newFixture(t, false)
	b := f.browser(t)
	for _, tc := range []struct {
		name     string
		form     url.Values
		injected error
		code     int
		want     []string
	}{
		{"empty", url.Values{"phone": {" "}}, nil, 400, []string{msgNoNumber, `id="new-error"`}},
		{"invalid", url.Values{"phone": {"0000"}}, nil, 400, []string{"does not look like a phone number", `value="0000"`}},
		{"from the login form", url.Values{"phone": {"0000"}, "from": {"login"}}, nil, 400, []string{`id="login-error"`}},
		{"cannot receive", url.Values{"phone": {testNational}}, auth.ErrCannotReceiveSMS, 400, []string{msgCannotReceive}},
		{"throttled", url.Values{"phone": {testNational}}, &sms.ThrottledError{RetryAfter: 100 * time.Second}, 429, []string{"try again in 2 minutes"}},
		{"failure", url.Values{"phone": {testNational}}, errors.New("boom"), 503, []string{msgUnavailable}},
	} {
		f.passwords.mu.Lock()
		f.passwords.err = tc.injected
		f.passwords.mu.Unlock()
		tc.form.Set("csrf", b.token("/"))
		a := b.post("/send-password", tc.form)
		if a.code != tc.code {
			t.Errorf("%s: %v", tc.name, a)
		}
		mustContain(t, tc.name, a.body, tc.want...)
		if strings.Contains(a.body, "Check your messages") {
			t.Errorf("%s: says sent", tc.name)
		}
	}
}

func TestAccountPageErrors(t *testing.T) {
	f := newFixture(t, false)
	f.store.setPassword(t, testNumber, "right-password")
	b := f.browser(t)
	b.login(testNational, "right-password")
	tok := b.token("/account")
	for _, tc := range []struct {
		name string
		code int
		want string
	}{
		{strings.Repeat("é", maxName+1), 400, "at most 100 characters"},
		{"bell\a", 400, "cannot be shown"},
	} {
		a := b.post("/account/name", url.Values{"csrf": {tok}, "name": {tc.name}})
		if a.code != tc.code || !strings.Contains(a.body, tc.want) {
			t.Errorf("%q: %v", tc.name, a)
		}
	}
	f.nameErr = errors.New("store down")
	if a := b.post("/account/name", url.Values{"csrf": {tok}, "name": {"ok"}}); a.code != 503 || !strings.Contains(a.body, msgUnavailable) {
		t.Errorf("store failure: %v", a)
	}
	if len(f.names) != 0 {
		t.Errorf("names %v", f.names)
	}
	// Oversized form.
	if a := b.post("/account/name", url.Values{"csrf": {tok}, "name": {strings.Repeat("x", maxFormBody)}}); a.code != 400 {
		t.Errorf("oversized: %v", a)
	}
	// Store down: no panic, a friendly page.
	f.store.mu.Lock()
	f.store.fail = errors.New("database is locked")
	f.store.mu.Unlock()
	if a := b.get("/account"); a.code != 503 || !strings.Contains(a.body, msgUnavailable) {
		t.Errorf("store down: %v", a)
	}
}

func TestCheckPassword(t *testing.T) {
	for _, tc := range []struct {
		p  string
		ok bool
	}{
		{"0123456789", true}, {"with spaces ok", true}, {"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", true},
		{"012345678", false}, {"tab\tinside!", false}, {"ümlaut-password", false}, {strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false}, {"nul\x00inside!", false},
	} {
		if got := checkPassword(tc.p) == ""; got != tc.ok {
			t.Errorf("%q: %v", tc.p, checkPassword(tc.p))
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		n  string
		ok bool
	}{
		{"", true}, {"Kim Min-jun", true}, {"김민준", true}, {"Ana 🌻", true}, {strings.Repeat("가", 100), true},
		{strings.Repeat("가", 101), false}, {"a\nb", false}, {"\x7f", false}, {"\uFFFE", false}, {"bad \xff utf8", false},
	} {
		if got := checkName(tc.n) == ""; got != tc.ok {
			t.Errorf("%q: %v", tc.n, checkName(tc.n))
		}
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "1 second", time.Second: "1 second", 1500 * time.Millisecond: "2 seconds", 59 * time.Second: "59 seconds",
		time.Minute: "1 minute", 61 * time.Second: "2 minutes", time.Hour: "1 hour", 90 * time.Minute: "2 hours",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}
