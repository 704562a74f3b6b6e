package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/sms"
)

// retryLater is a throttle error of another package, recognised by its
// method alone.
type retryLater time.Duration

func (r retryLater) Error() string                     { return "slow down" }
func (r retryLater) RetryAfterDuration() time.Duration { return time.Duration(r) }

func TestPasswordAPI(t *testing.T) {
	f := newFixture(t, false)
	const ok = `{"status":"sent"}` + "\n"
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		injected    error // what the password service answers
		code        int
		want        string // the exact body
		retryAfter  string
		requested   string // the "phone|ip" the service got; "" none
	}{
		{name: "national form", body: `{"phone": "` + testNational + `"}`, code: 202, want: ok, requested: testNational + "|127.0.0.1"},
		{name: "E.164", body: `{"phone":"+82 10-9999-0000"}`, code: 202, want: ok, requested: "+82 10-9999-0000|127.0.0.1"},
		{name: "registered number answers the same", body: `{"phone":"` + string(testNumber) + `"}`, code: 202, want: ok, requested: string(testNumber) + "|127.0.0.1"},
		{name: "charset parameter", contentType: "application/json; charset=utf-8", body: `{"phone":"01055556666"}`, code: 202, want: ok, requested: "01055556666|127.0.0.1"},
		{name: "invalid number", body: `{"phone":"12"}`, code: 400, want: `{"error":"invalid phone number"}` + "\n", requested: "12|127.0.0.1"},
		{name: "letters", body: `{"phone":"call me"}`, code: 400, want: `{"error":"invalid phone number"}` + "\n", requested: "call me|127.0.0.1"},
		{name: "cannot receive SMS", body: `{"phone":"060-700-1234"}`, injected: fmt.Errorf("%w: premium rate", auth.ErrCannotReceiveSMS),
			code: 400, want: `{"error":"number cannot receive SMS"}` + "\n", requested: "060-700-1234|127.0.0.1"},
		{name: "throttled", body: `{"phone":"` + testNational + `"}`, injected: &sms.ThrottledError{RetryAfter: 90*time.Second + time.Millisecond, Reason: sms.ReasonInterval},
			code: 429, want: `{"error":"too many requests"}` + "\n", retryAfter: "91", requested: testNational + "|127.0.0.1"},
		{name: "throttled, wrapped", body: `{"phone":"` + testNational + `"}`, injected: fmt.Errorf("refused: %w", &sms.ThrottledError{RetryAfter: 2 * time.Hour, Reason: sms.ReasonPerIP}),
			code: 429, want: `{"error":"too many requests"}` + "\n", retryAfter: "7200", requested: testNational + "|127.0.0.1"},
		{name: "throttled, no wait given", body: `{"phone":"` + testNational + `"}`, injected: &sms.ThrottledError{Reason: sms.ReasonPerDay},
			code: 429, want: `{"error":"too many requests"}` + "\n", retryAfter: "1", requested: testNational + "|127.0.0.1"},
		{name: "throttled, by interface", body: `{"phone":"` + testNational + `"}`, injected: retryLater(1500 * time.Millisecond),
			code: 429, want: `{"error":"too many requests"}` + "\n", retryAfter: "2", requested: testNational + "|127.0.0.1"},
		{name: "service failure", body: `{"phone":"` + testNational + `"}`, injected: errors.New("database is locked"),
			code: 503, want: `{"error":"service unavailable, try again later"}` + "\n", requested: testNational + "|127.0.0.1"},
		{name: "missing phone", body: `{}`, code: 400, want: `{"error":"phone is required"}` + "\n"},
		{name: "empty phone", body: `{"phone":""}`, code: 400, want: `{"error":"phone is required"}` + "\n"},
		{name: "null phone", body: `{"phone":null}`, code: 400, want: `{"error":"phone is required"}` + "\n"},
		{name: "phone not a string", body: `{"phone":821012345678}`, code: 400, want: `{"error":"malformed JSON request"}` + "\n"},
		{name: "unknown field", body: `{"phone":"` + testNational + `","admin":true}`, code: 400, want: `{"error":"malformed JSON request"}` + "\n"},
		{name: "malformed JSON", body: `{"phone":`, code: 400, want: `{"error":"malformed JSON request"}` + "\n"},
		{name: "empty body", body: ``, code: 400, want: `{"error":"malformed JSON request"}` + "\n"},
		{name: "two objects", body: `{"phone":"1"}{"phone":"2"}`, code: 400, want: `{"error":"malformed JSON request"}` + "\n"},
		{name: "array", body: `["` + testNational + `"]`, code: 400, want: `{"error":"malformed JSON request"}` + "\n"},
		{name: "form encoded", contentType: "application/x-www-form-urlencoded", body: `phone=01012345678`, code: 400, want: `{"error":"content type must be application/json"}` + "\n"},
		{name: "no content type", contentType: "-", body: `{"phone":"` + testNational + `"}`, code: 400, want: `{"error":"content type must be application/json"}` + "\n"},
		{name: "oversized body", body: `{"phone":"` + testNational + `","pad":"` + strings.Repeat("x", maxAPIBody) + `"}`, code: 413, want: `{"error":"request body too large"}` + "\n"},
		{name: "GET", method: "GET", code: 405, want: `{"error":"method not allowed"}` + "\n"},
		{name: "PUT", method: "PUT", body: `{"phone":"` + testNational + `"}`, code: 405, want: `{"error":"method not allowed"}` + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.passwords.mu.Lock()
			f.passwords.err, f.passwords.calls = tc.injected, nil
			f.passwords.mu.Unlock()
			method := tc.method
			if method == "" {
				method = "POST"
			}
			req, err := http.NewRequest(method, f.srv.URL+"/api/v1/password", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			switch tc.contentType {
			case "":
				req.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				req.Header.Set("Content-Type", tc.contentType)
			}
			a := f.browser(t).do(req)
			if a.code != tc.code || a.body != tc.want {
				t.Errorf("got %d %q, want %d %q", a.code, a.body, tc.code, tc.want)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if got := a.header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if tc.code == 405 && a.header.Get("Allow") != "POST" {
				t.Errorf("Allow %q", a.header.Get("Allow"))
			}
			var want []string
			if tc.requested != "" {
				want = []string{tc.requested}
			}
			if got := f.passwords.requests(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("service got %q, want %q", got, want)
			}
		})
	}
}

// The password of a 202 really is texted and works, and a second request
// replaces it.
func TestPasswordAPITextsAPassword(t *testing.T) {
	f := newFixture(t, false)
	post := func() {
		resp, err := f.srv.Client().Post(f.srv.URL+"/api/v1/password", "application/json", strings.NewReader(`{"phone":"`+testNational+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("%d", resp.StatusCode)
		}
	}
	post()
	first := f.passwords.texted(t, testNumber)
	post()
	second := f.passwords.texted(t, testNumber)
	acct, err := f.store.Account(context.Background(), testNumber)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Credentials.VerifyPassword(first) || !acct.Credentials.VerifyPassword(second) {
		t.Error("the second password did not replace the first")
	}
}

func TestPasswordAPINotConfigured(t *testing.T) {
	srv := httptest.NewServer(New(Options{}))
	defer srv.Close()
	resp, err := srv.Client().Post(srv.URL+"/api/v1/password", "application/json", strings.NewReader(`{"phone":"+821012345678"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("%d", resp.StatusCode)
	}
}

func TestThrottledRoundsUp(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{-time.Second, 1}, {0, 1}, {time.Nanosecond, 1}, {time.Second, 1}, {time.Second + 1, 2},
		{119*time.Second + 999*time.Millisecond, 120}, {24 * time.Hour, 86400}, {1 << 62, 365 * 86400},
	} {
		got, ok := throttled(&sms.ThrottledError{RetryAfter: tc.d})
		if !ok || got != tc.want {
			t.Errorf("%v: %d %v, want %d", tc.d, got, ok, tc.want)
		}
	}
	if _, ok := throttled(errors.New("other")); ok {
		t.Error("a plain error is a throttle")
	}
	if _, ok := throttled(nil); ok {
		t.Error("nil is a throttle")
	}
}
