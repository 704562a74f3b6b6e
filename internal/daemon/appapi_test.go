package daemon_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/internal/quicksytest"
	"dialtone/roster"
)

// appPIN asks for a PIN for num as the app does and returns it from the
// nth SMS to num, which must be the PIN SMS of SPEC.md.
func appPIN(t *testing.T, app *quicksytest.App, rcv *smsReceiver, num string, nth int) string {
	t.Helper()
	if ans := app.RequestVerification(t, num); ans.Code != http.StatusOK {
		t.Fatalf("GET /authentication/%s: %+v, want 200", num, ans)
	}
	m := rcv.Wait(t, num, nth, noticeTimeout)
	pin, ok := quicksytest.ExtractPIN(m.Text)
	if !ok || m.Text != "Your "+domain+" code is: "+pin || m.Purpose != "pin" {
		t.Fatalf("PIN SMS %+v", m)
	}
	return pin
}

// TestAppAPI runs the app API (SPEC.md "App API") on each store, with the
// app's own requests (quicksytest) and the webhook gateway at a local
// receiver, and logs in over XMPP with the passwords the app chose.
func TestAppAPI(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			rcv := newSMSReceiver(t)
			s := startDaemon(t, webhookEnv(t, b.url(t), rcv, map[string]string{
				"XMPPD_PASSWORD_SMS_INTERVAL": "0s",
				"XMPPD_ALLOWED_REGIONS":       "KR",
				"XMPPD_NOTICE_WINDOW":         window.String(),
			}))
			t.Run("new_number", func(t *testing.T) { testAppNewNumber(t, s, rcv) })
			t.Run("both_ways", func(t *testing.T) { testAppBothWays(t, s, rcv) })
			t.Run("unclaimed_keeps_chosen_password", func(t *testing.T) { testAppUnclaimed(t, s, rcv) })
			t.Run("tries", func(t *testing.T) { testAppTries(t, s, rcv) })
			t.Run("recycles", func(t *testing.T) { testAppRecycles(t, s, rcv) })
			t.Run("bad_input", func(t *testing.T) { testAppBadInput(t, s) })
		})
	}
}

// A number nobody used: the PIN makes the account with the password the
// app chose (201), which logs in over XMPP; the PIN works once.
func testAppNewNumber(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	app := quicksytest.New(t, s.d.Addr("http"), domain)
	num := s.newNumber()
	pin := appPIN(t, app, rcv, num, 1)
	password := "p+ss&w=rd%2B"
	if ans := app.Verify(t, num, pin, password); ans.Code != http.StatusCreated {
		t.Fatalf("POST /password: %+v, want 201", ans)
	}
	if ans := app.Verify(t, num, pin, password); ans.Code != http.StatusNotFound {
		t.Fatalf("the PIN again: %+v, want 404", ans)
	}
	c, cond := authAt(t, s.c2s(), domain, num, password, "app")
	if cond != "" {
		t.Fatalf("login with the chosen password: %s", cond)
	}
	drain(c)
}

// A password texted by the API and one chosen with a PIN are two ways to
// one account: the PIN's replaces the texted one at once and closes its
// sessions (200 on an active account); a password requested afterwards
// is pending beside the chosen one, as SPEC.md "HTTP" says.
func testAppBothWays(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	app := quicksytest.New(t, s.d.Addr("http"), domain)
	num := s.newNumber()
	texted := requestPassword(t, s, rcv, num, 1)
	old, cond := authAt(t, s.c2s(), domain, num, texted, "old")
	if cond != "" {
		t.Fatalf("login with the texted password: %s", cond)
	}
	pin := appPIN(t, app, rcv, num, 2)
	chosen := quicksytest.Password(t) + "+&"
	if ans := app.Verify(t, num, pin, chosen); ans.Code != http.StatusOK {
		t.Fatalf("POST /password on an active account: %+v, want 200", ans)
	}
	if got := old.ExpectStreamError(); got != "not-authorized" {
		t.Errorf("the session of the texted password: stream error %q, want not-authorized", got)
	}
	if _, cond := authAt(t, s.c2s(), domain, num, texted, "texted"); cond != "not-authorized" {
		t.Fatalf("the texted password after the PIN: %q, want not-authorized", cond)
	}
	first, cond := authAt(t, s.c2s(), domain, num, chosen, "first")
	if cond != "" {
		t.Fatalf("the chosen password: %s", cond)
	}
	requested := requestPassword(t, s, rcv, num, 3)
	if _, cond := authAt(t, s.c2s(), domain, num, chosen, "still"); cond != "" {
		t.Fatalf("the chosen password beside a requested one: %s", cond)
	}
	drain(first)
	if _, cond := authAt(t, s.c2s(), domain, num, requested, "requested"); cond != "" {
		t.Fatalf("the requested password: %s", cond)
	}
	if got := first.ExpectStreamError(); got != "not-authorized" {
		t.Errorf("the session of the chosen password after the requested one logged in: %q", got)
	}
}

// An account that never logged in counts as new (201) whether the PIN
// made it or a message did. The chosen password is as good as handed
// out: a first notice leaves it alone and carries none.
func testAppUnclaimed(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	app := quicksytest.New(t, s.d.Addr("http"), domain)
	t.Run("made_by_the_pin", func(t *testing.T) {
		num := s.newNumber()
		pin := appPIN(t, app, rcv, num, 1)
		chosen := "chosen+&password"
		if ans := app.Verify(t, num, pin, chosen); ans.Code != http.StatusCreated {
			t.Fatalf("POST /password: %+v, want 201", ans)
		}
		testNoticeKeepsPassword(t, s, rcv, user{num: num, pass: chosen}, 2)
	})
	t.Run("made_by_a_message", func(t *testing.T) {
		alice := s.newUser(t)
		a := s.login(t, alice, "x")
		num := s.newNumber()
		send(t, a, num+"@"+domain, "first")
		notice := rcv.Wait(t, num, 1, noticeTimeout)
		texted := regexp.MustCompile(`password ([A-Za-z0-9]+)(?:\.|, or tap \S+)$`).FindStringSubmatch(notice.Text)
		if notice.Purpose != "notice" || texted == nil {
			t.Fatalf("first SMS %+v, want a notice with a password", notice)
		}
		pin := appPIN(t, app, rcv, num, 2)
		chosen := "chosen+&password"
		if ans := app.Verify(t, num, pin, chosen); ans.Code != http.StatusCreated {
			t.Fatalf("POST /password on an unclaimed account: %+v, want 201", ans)
		}
		if _, cond := authAt(t, s.c2s(), domain, num, texted[1], "texted"); cond != "not-authorized" {
			t.Fatalf("the notice's password after the PIN: %q, want not-authorized", cond)
		}
		c, cond := authAt(t, s.c2s(), domain, num, chosen, "app")
		if cond != "" {
			t.Fatalf("the chosen password: %s", cond)
		}
		drain(c)
	})
}

// Three wrong PINs (401), then 429 with Retry-After even for the right
// one; a new PIN works again.
func testAppTries(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	app := quicksytest.New(t, s.d.Addr("http"), domain)
	num := s.newNumber()
	pin := appPIN(t, app, rcv, num, 1)
	wrong := "000000"
	if pin == wrong {
		wrong = "111111"
	}
	for i := range 3 {
		if ans := app.Verify(t, num, wrong, "chosenpass"); ans.Code != http.StatusUnauthorized {
			t.Fatalf("wrong PIN %d: %+v, want 401", i+1, ans)
		}
	}
	ans := app.Verify(t, num, pin, "chosenpass")
	if ans.Code != http.StatusTooManyRequests || ans.RetryIn <= 0 || ans.RetryIn > 5*time.Minute {
		t.Fatalf("the right PIN after three wrong ones: %+v, want 429 with Retry-After", ans)
	}
	pin = appPIN(t, app, rcv, num, 2)
	if ans := app.Verify(t, num, pin, "chosenpass"); ans.Code != http.StatusCreated {
		t.Fatalf("a new PIN: %+v, want 201", ans)
	}
}

// An account whose owner has been away for XMPPD_RECYCLE_AFTER starts
// afresh when a PIN is used (201), its roster gone; asking for the PIN
// changes nothing.
func testAppRecycles(t *testing.T, s *daemonUnderTest, rcv *smsReceiver) {
	ctx := context.Background()
	app := quicksytest.New(t, s.d.Addr("http"), domain)
	owner := s.newUser(t)
	friend := s.newUser(t)
	n := auth.Number(owner.num)
	if err := s.d.DB.RecordLogin(ctx, n, time.Now().Add(-2200*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.d.DB.PutRosterItem(ctx, owner.num, roster.Item{Contact: friend.bare(), Subscription: roster.SubNone, InRoster: true}); err != nil {
		t.Fatal(err)
	}
	pin := appPIN(t, app, rcv, owner.num, 1)
	if items, _, err := s.d.DB.Roster(ctx, owner.num); err != nil || len(items) != 1 {
		t.Fatalf("roster after the PIN request: %v, %v; want it kept", items, err)
	}
	if ans := app.Verify(t, owner.num, pin, "a fresh start"); ans.Code != http.StatusCreated {
		t.Fatalf("POST /password for a recycled number: %+v, want 201", ans)
	}
	if items, _, err := s.d.DB.Roster(ctx, owner.num); err != nil || len(items) != 0 {
		t.Fatalf("roster after recycling: %v, %v; want none", items, err)
	}
	if _, cond := authAt(t, s.c2s(), domain, owner.num, owner.pass, "old"); cond != "not-authorized" {
		t.Fatalf("the old owner's password: %q, want not-authorized", cond)
	}
}

// What is not a number, not allowed, not a UUID or not the app's header
// gets a clear error from the real stack.
func testAppBadInput(t *testing.T, s *daemonUnderTest) {
	base := "http://" + s.d.Addr("http")
	c := clientFrom(t, "127.0.0.1")
	const uuid = "Installation-Id: 0f8fad5b-d9cb-469f-a165-70867728950e"
	for _, tc := range []struct {
		path, header string
		code         int
		body         string
	}{
		{"/authentication/hello", uuid, 400, "invalid phone number"},
		{"/authentication/+1", uuid, 400, "invalid phone number"},
		{"/authentication/" + strings.Repeat("9", 5000), uuid, 400, "invalid phone number"},
		{"/authentication/+447400123456", uuid, 451, "region not allowed"},
		{"/authentication/060-234-5678", uuid, 400, "number cannot receive SMS"},
		{"/authentication/" + s.newNumber(), "User-Agent: Quicksy/2.11.4", 400, "Installation-Id"},
	} {
		if a := do(t, c, "GET", base+tc.path, []string{tc.header}, ""); a.code != tc.code || !strings.Contains(a.body, tc.body) {
			t.Errorf("GET %.60s: %d %s, want %d %q", tc.path, a.code, a.body, tc.code, tc.body)
		}
	}
	num := s.newNumber()
	for _, tc := range []struct {
		auth, body string
		code       int
		want       string
	}{
		{"garbage", "password1", 400, "Authorization"},
		{"Basic " + quicksytest.Authorization(num, "123456"), "password1", 400, "Basic"},
		{quicksytest.Authorization(num, "12345"), "password1", 400, "6 digits"},
		{quicksytest.Authorization("hello", "123456"), "password1", 400, "invalid phone number"},
		{quicksytest.Authorization(num, "123456"), "short", 400, "shorter than 8"},
		{quicksytest.Authorization(num, "123456"), strings.Repeat("x", 1<<20), 400, "longer than 128"},
		{quicksytest.Authorization(num, "123456"), "password1", 404, "no PIN"},
	} {
		header := []string{"Authorization: " + tc.auth, "Content-Type: application/x-www-form-urlencoded"}
		if a := do(t, c, "POST", base+"/password", header, tc.body); a.code != tc.code || !strings.Contains(a.body, tc.want) {
			t.Errorf("POST /password %.40q: %d %s, want %d %q", tc.auth, a.code, a.body, tc.code, tc.want)
		}
	}
}

// With XMPPD_APP_API=false neither path exists.
func TestAppAPIOff(t *testing.T) {
	rcv := newSMSReceiver(t)
	s := startDaemon(t, webhookEnv(t, "", rcv, map[string]string{"XMPPD_APP_API": "false"}))
	app := quicksytest.New(t, s.d.Addr("http"), domain)
	num := s.newNumber()
	if ans := app.RequestVerification(t, num); ans.Code != http.StatusNotFound {
		t.Fatalf("GET /authentication with the app API off: %+v", ans)
	}
	if ans := app.Verify(t, num, "123456", "password1"); ans.Code != http.StatusNotFound {
		t.Fatalf("POST /password with the app API off: %+v", ans)
	}
	if got := rcv.To(num); len(got) != 0 {
		t.Fatalf("SMS sent: %+v", got)
	}
}
