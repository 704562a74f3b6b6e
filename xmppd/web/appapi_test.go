package web

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/sms"
)

// fakeApp stands in for sms.PINs: it parses numbers like the real one,
// checks passwords by the real rule, and knows the PINs it is given.
type fakeApp struct {
	parser *auth.NumberParser

	mu       sync.Mutex
	pins     map[auth.Number]string // the PIN of each number
	active   map[auth.Number]bool   // accounts that logged in before
	err      error                  // returned by every call when set
	requests []string               // "phone|ip|installation" of every Request
	sets     []string               // "phone|pin|password" of every SetPassword
	set      map[auth.Number]string // passwords set
}

func newFakeApp(parser *auth.NumberParser) *fakeApp {
	return &fakeApp{parser: parser, pins: map[auth.Number]string{}, active: map[auth.Number]bool{}, set: map[auth.Number]string{}}
}

func (a *fakeApp) Request(ctx context.Context, phone, ip, installation string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests = append(a.requests, phone+"|"+ip+"|"+installation)
	if a.err != nil {
		return a.err
	}
	_, err := a.parser.Parse(phone)
	return err
}

func (a *fakeApp) SetPassword(ctx context.Context, phone, pin, password, ip string) (auth.Number, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sets = append(a.sets, phone+"|"+pin+"|"+password)
	if a.err != nil {
		return "", false, a.err
	}
	n, err := a.parser.Parse(phone)
	if err != nil {
		return "", false, err
	}
	if err := auth.CheckChosenPassword(password); err != nil {
		return n, false, err
	}
	want, ok := a.pins[n]
	switch {
	case !ok:
		return n, false, sms.ErrNoPIN
	case pin != want:
		return n, false, sms.ErrWrongPIN
	}
	delete(a.pins, n)
	a.set[n] = password
	return n, !a.active[n], nil
}

func (a *fakeApp) calls() (requests, sets []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.requests...), append([]string(nil), a.sets...)
}

func (a *fakeApp) inject(err error) {
	a.mu.Lock()
	a.err = err
	a.mu.Unlock()
}

// appFixture is the web handler with the app API on a fakeApp.
func appFixture(t *testing.T) (*fixture, *fakeApp) {
	t.Helper()
	var app *fakeApp
	f := newFixtureWith(t, false, func(o *Options) {
		app = newFakeApp(o.Parser)
		o.App = app
	})
	return f, app
}

const (
	appInstallation = "0F8FAD5B-D9CB-469F-A165-70867728950E"
	appUserAgent    = "Quicksy/2.11.4"
)

// appAuth is the Authorization header the Android app sends: base64 of
// NUL, number, NUL, PIN (QuickConversationsService.verify, with
// Plain.getMessage).
func appAuth(number, pin string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + number + "\x00" + pin))
}

// appAnswer is one answer of the app API.
type appAnswer struct {
	code       int
	body       string
	retryAfter string
}

// appDo sends method path with header and body and reads the answer.
func appDo(t *testing.T, f *fixture, method, path string, header map[string]string, body string) appAnswer {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return appAnswer{resp.StatusCode, string(b), resp.Header.Get("Retry-After")}
}

func (a appAnswer) want(t *testing.T, what string, code int, body, retryAfter string) {
	t.Helper()
	if a.code != code || a.body != body || a.retryAfter != retryAfter {
		t.Errorf("%s: %d %q Retry-After %q; want %d %q Retry-After %q", what, a.code, a.body, a.retryAfter, code, body, retryAfter)
	}
}

func jsonBody(key, value string) string { return fmt.Sprintf("{%q:%q}\n", key, value) }

// GET /authentication/NUMBER: every answer SPEC.md gives it, and clear
// errors for what is not a number or not an installation.
func TestAppRequestPIN(t *testing.T) {
	f, app := appFixture(t)
	headers := map[string]string{"Installation-Id": appInstallation, "User-Agent": appUserAgent, "Accept-Language": "en"}
	const installation = "0f8fad5b-d9cb-469f-a165-70867728950e"
	sent := jsonBody("status", "sent")
	for _, tc := range []struct {
		name     string
		path     string
		headers  map[string]string
		injected error
		code     int
		body     string
		retry    string
		request  string // what the service got; "" nothing
	}{
		{name: "E.164", path: "/authentication/+821012345678", code: 200, body: sent,
			request: "+821012345678|127.0.0.1|" + installation},
		{name: "plus escaped", path: "/authentication/%2B821012345678", code: 200, body: sent,
			request: "+821012345678|127.0.0.1|" + installation},
		{name: "national form", path: "/authentication/010-1234-5678", code: 200, body: sent,
			request: "010-1234-5678|127.0.0.1|" + installation},
		{name: "invalid number", path: "/authentication/12", code: 400, body: jsonBody("error", apiInvalidNumber),
			request: "12|127.0.0.1|" + installation},
		{name: "letters", path: "/authentication/hello", code: 400, body: jsonBody("error", apiInvalidNumber),
			request: "hello|127.0.0.1|" + installation},
		{name: "slashes", path: "/authentication/+82/10/1234/5678", code: 400, body: jsonBody("error", apiInvalidNumber),
			request: "+82/10/1234/5678|127.0.0.1|" + installation},
		{name: "NUL", path: "/authentication/+8210%00", code: 400, body: jsonBody("error", apiInvalidNumber),
			request: "+8210\x00|127.0.0.1|" + installation},
		{name: "empty", path: "/authentication/", code: 400, body: jsonBody("error", apiInvalidNumber),
			request: "|127.0.0.1|" + installation},
		{name: "huge", path: "/authentication/+" + strings.Repeat("8", 100000), code: 400, body: jsonBody("error", apiInvalidNumber),
			request: "+" + strings.Repeat("8", 100000) + "|127.0.0.1|" + installation},
		{name: "cannot receive SMS", path: "/authentication/060-234-5678", injected: fmt.Errorf("%w: premium rate", auth.ErrCannotReceiveSMS),
			code: 400, body: jsonBody("error", apiCannotReceive), request: "060-234-5678|127.0.0.1|" + installation},
		{name: "region not allowed", path: "/authentication/+447400123456", injected: fmt.Errorf("%w: GB", auth.ErrRegionNotAllowed),
			code: 451, body: jsonBody("error", appRegionNotAllowed), request: "+447400123456|127.0.0.1|" + installation},
		{name: "throttled", path: "/authentication/+821012345678", injected: &sms.ThrottledError{RetryAfter: 119*time.Second + time.Millisecond, Reason: sms.ReasonInterval},
			code: 429, body: jsonBody("error", apiTooMany), retry: "120", request: "+821012345678|127.0.0.1|" + installation},
		{name: "installation's cap", path: "/authentication/+821012345678", injected: &sms.ThrottledError{RetryAfter: 20 * time.Hour, Reason: sms.ReasonPerInstallation},
			code: 429, body: jsonBody("error", apiTooMany), retry: "72000", request: "+821012345678|127.0.0.1|" + installation},
		{name: "service down", path: "/authentication/+821012345678", injected: errors.New("database is locked"),
			code: 503, body: jsonBody("error", apiUnavailable), request: "+821012345678|127.0.0.1|" + installation},
		{name: "no Installation-Id", path: "/authentication/+821012345678", headers: map[string]string{"User-Agent": appUserAgent},
			code: 400, body: jsonBody("error", appInstallationID)},
		{name: "Installation-Id not a UUID", path: "/authentication/+821012345678", headers: map[string]string{"Installation-Id": "device-1"},
			code: 400, body: jsonBody("error", appInstallationID)},
		{name: "Installation-Id without dashes", path: "/authentication/+821012345678", headers: map[string]string{"Installation-Id": "0f8fad5bd9cb469fa16570867728950e0000"},
			code: 400, body: jsonBody("error", appInstallationID)},
		{name: "Installation-Id not hex", path: "/authentication/+821012345678", headers: map[string]string{"Installation-Id": "0f8fad5b-d9cb-469f-a165-70867728950g"},
			code: 400, body: jsonBody("error", appInstallationID)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app.inject(tc.injected)
			before, _ := app.calls()
			h := headers
			if tc.headers != nil {
				h = tc.headers
			}
			appDo(t, f, "GET", tc.path, h, "").want(t, tc.name, tc.code, tc.body, tc.retry)
			after, _ := app.calls()
			var got string
			if len(after) > len(before) {
				got = after[len(after)-1]
			}
			if got != tc.request {
				t.Errorf("service got %q, want %q", got, tc.request)
			}
		})
	}
	app.inject(nil)
	before, _ := app.calls()
	appDo(t, f, "HEAD", "/authentication/+821012345678", headers, "").want(t, "HEAD", 405, "", "")
	appDo(t, f, "POST", "/authentication/+821012345678", headers, "").want(t, "POST", 405, "Method Not Allowed\n", "")
	if after, _ := app.calls(); len(after) != len(before) {
		t.Errorf("HEAD or POST texted a PIN: %v", after[len(before):])
	}
}

// POST /password: every answer SPEC.md gives it; the body is the
// password as sent, never form-decoded.
func TestAppSetPassword(t *testing.T) {
	f, app := appFixture(t)
	const (
		n      = testNumber
		pin    = "042137"
		chosen = "a+b&c=d%2B e" // what form decoding would mangle
	)
	form := "application/x-www-form-urlencoded" // what the Android app sends
	post := func(authorization, body string) appAnswer {
		t.Helper()
		h := map[string]string{"Content-Type": form, "User-Agent": appUserAgent, "Installation-Id": appInstallation, "Accept-Language": "en"}
		if authorization != "" {
			h["Authorization"] = authorization
		}
		return appDo(t, f, "POST", "/password", h, body)
	}
	lastSet := func() string {
		_, sets := app.calls()
		if len(sets) == 0 {
			return ""
		}
		return sets[len(sets)-1]
	}
	setPIN := func(p string, active bool) {
		app.mu.Lock()
		app.pins[n], app.active[n] = p, active
		app.mu.Unlock()
	}

	setPIN(pin, false)
	post(appAuth(string(n), pin), chosen).want(t, "new account", 201, jsonBody("status", appCreated), "")
	if got := lastSet(); got != string(n)+"|"+pin+"|"+chosen {
		t.Fatalf("service got %q", got)
	}
	if app.set[n] != chosen {
		t.Fatalf("password set %q, want %q", app.set[n], chosen)
	}
	post(appAuth(string(n), pin), chosen).want(t, "the PIN again", 404, jsonBody("error", appNoPIN), "")

	// An active account: 200. Without the leading NUL, unpadded, and
	// with the number in another form, it is the same request.
	setPIN(pin, true)
	unpadded := strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(testNational+"\x00"+pin)), "=")
	post(unpadded, "another+one").want(t, "active account", 200, jsonBody("status", appChanged), "")
	if got := lastSet(); got != testNational+"|"+pin+"|another+one" {
		t.Fatalf("service got %q", got)
	}

	// Wrong PINs: 401, counted against the address, which is locked
	// after testIPLockFailed of them (429, the service not asked).
	setPIN(pin, false)
	for i := range testIPLockFailed {
		post(appAuth(string(n), "999999"), chosen).want(t, fmt.Sprintf("wrong PIN %d", i+1), 401, jsonBody("error", appWrongPIN), "")
	}
	_, before := app.calls()
	post(appAuth(string(n), pin), chosen).want(t, "address locked", 429, jsonBody("error", appTooManyTries), "60")
	if _, after := app.calls(); len(after) != len(before) {
		t.Fatal("the service was asked while the address was locked")
	}
	f.clock.Add(time.Minute)

	// The number's login lockout ends when the PIN proves the holder.
	for range testLockFailed {
		f.lockout.Fail(n)
	}
	if f.lockout.Locked(n) == 0 {
		t.Fatal("number not locked")
	}
	post(appAuth(string(n), pin), chosen).want(t, "after the lock", 201, jsonBody("status", appCreated), "")
	if d := f.lockout.Locked(n); d != 0 {
		t.Fatalf("number still locked for %v after its password was set with a PIN", d)
	}

	for _, tc := range []struct {
		name     string
		auth     string
		body     string
		injected error
		code     int
		msg      string
		retry    string
		asked    bool // whether the service is asked
	}{
		{name: "PIN had its tries", auth: appAuth(string(n), pin), body: chosen, injected: &sms.ThrottledError{RetryAfter: 3*time.Minute + 2*time.Second, Reason: sms.ReasonPINTries},
			code: 429, msg: appTooManyTries, retry: "182", asked: true},
		{name: "no PIN", auth: appAuth("+821099998888", pin), body: chosen, code: 404, msg: appNoPIN, asked: true},
		{name: "invalid number", auth: appAuth("12", pin), body: chosen, code: 400, msg: apiInvalidNumber, asked: true},
		{name: "letters for a number", auth: appAuth("hello", pin), body: chosen, code: 400, msg: apiInvalidNumber, asked: true},
		{name: "region not allowed", auth: appAuth("+447400123456", pin), body: chosen, injected: fmt.Errorf("%w: GB", auth.ErrRegionNotAllowed),
			code: 451, msg: appRegionNotAllowed, asked: true},
		{name: "service down", auth: appAuth(string(n), pin), body: chosen, injected: errors.New("database is locked"),
			code: 503, msg: apiUnavailable, asked: true},
		{name: "password short", auth: appAuth(string(n), pin), body: "1234567", code: 400, msg: "password not acceptable: shorter than 8 characters", asked: true},
		{name: "password empty", auth: appAuth(string(n), pin), body: "", code: 400, msg: "password not acceptable: shorter than 8 characters", asked: true},
		{name: "password long", auth: appAuth(string(n), pin), body: strings.Repeat("x", 129), code: 400, msg: "password not acceptable: longer than 128 characters", asked: true},
		{name: "password control", auth: appAuth(string(n), pin), body: "password\n", code: 400, msg: "password not acceptable: control characters are not allowed", asked: true},
		{name: "body over the byte bound", auth: appAuth(string(n), pin), body: strings.Repeat("x", maxAppPasswordBody+1), code: 400, msg: appPasswordTooLong},
		{name: "no Authorization", body: chosen, code: 400, msg: appNoAuthorization},
		{name: "Basic scheme", auth: "Basic " + appAuth(string(n), pin), body: chosen, code: 400, msg: appBasicScheme},
		{name: "not base64", auth: "!!!not-base64!!!", body: chosen, code: 400, msg: appBadAuthorization},
		{name: "no NUL", auth: base64.StdEncoding.EncodeToString([]byte(string(n) + pin)), body: chosen, code: 400, msg: appBadAuthorization},
		{name: "no number", auth: base64.StdEncoding.EncodeToString([]byte("\x00\x00" + pin)), body: chosen, code: 400, msg: appBadAuthorization},
		{name: "a NUL too many", auth: base64.StdEncoding.EncodeToString([]byte("\x00" + string(n) + "\x00" + pin + "\x00")), body: chosen, code: 400, msg: appBadAuthorization},
		{name: "PIN short", auth: appAuth(string(n), "12345"), body: chosen, code: 400, msg: appBadPIN},
		{name: "PIN letters", auth: appAuth(string(n), "12345a"), body: chosen, code: 400, msg: appBadPIN},
		{name: "PIN empty", auth: appAuth(string(n), ""), body: chosen, code: 400, msg: appBadPIN},
		{name: "Authorization huge", auth: strings.Repeat("QUFB", 50000), body: chosen, code: 400, msg: appBadAuthorization},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setPIN(pin, false)
			app.inject(tc.injected)
			defer app.inject(nil)
			_, before := app.calls()
			post(tc.auth, tc.body).want(t, tc.name, tc.code, jsonBody("error", tc.msg), tc.retry)
			if _, after := app.calls(); (len(after) > len(before)) != tc.asked {
				t.Errorf("service asked: %v, want %v", len(after) > len(before), tc.asked)
			}
		})
	}
	appDo(t, f, "GET", "/password", nil, "").want(t, "GET /password", 405, "Method Not Allowed\n", "")
}

// infiniteBody is a request body that never ends, counting what is read.
type infiniteBody struct{ read int }

func (b *infiniteBody) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	b.read += len(p)
	return len(p), nil
}

func (b *infiniteBody) Close() error { return nil }

// A body without end is refused having read a few hundred bytes.
func TestAppHugeBody(t *testing.T) {
	parser, err := auth.NewNumberParser("KR", nil)
	if err != nil {
		t.Fatal(err)
	}
	app := newFakeApp(parser)
	h := New(Options{App: app, Lockout: auth.NewLockout(3), IPLockout: auth.NewLockout(5)})
	body := &infiniteBody{}
	req := httptest.NewRequest("POST", "/password", nil)
	req.Body = body
	req.ContentLength = -1
	req.Header.Set("Authorization", appAuth(string(testNumber), "123456"))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 400 || rec.Body.String() != jsonBody("error", appPasswordTooLong) {
		t.Fatalf("endless body: %d %q", rec.Code, rec.Body.String())
	}
	if body.read > 64<<10 {
		t.Fatalf("read %d bytes of the body", body.read)
	}
	if _, sets := app.calls(); len(sets) != 0 {
		t.Fatalf("service asked: %v", sets)
	}
}

// With XMPPD_APP_API=false both paths are not there at all; the home
// page's own password form is elsewhere and still works.
func TestAppAPIOff(t *testing.T) {
	f := newFixture(t, false)
	appDo(t, f, "GET", "/authentication/+821012345678", map[string]string{"Installation-Id": appInstallation}, "").
		want(t, "GET /authentication", 404, "404 page not found\n", "")
	appDo(t, f, "POST", "/password", map[string]string{"Authorization": appAuth(string(testNumber), "123456")}, "password1").
		want(t, "POST /password", 404, "404 page not found\n", "")
	b := f.browser(t)
	if a := b.post(requestPasswordPath, map[string][]string{"csrf": {b.token("/")}, "phone": {testNational}}); a.code != 200 {
		t.Fatalf("home page password request: %d", a.code)
	}
	if len(f.passwords.requests()) != 1 {
		t.Fatalf("password requests %v", f.passwords.requests())
	}
}
