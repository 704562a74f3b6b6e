package sms

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// request is what a test server saw of one request.
type request struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
}

// recorder is an httptest server that records each request and answers
// with the status and body answer returns for it.
func recorder(t *testing.T, answer func(n int) (int, string)) (*httptest.Server, func() []request) {
	t.Helper()
	reqs := make(chan request, 100)
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		reqs <- request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body}
		n++
		status, text := answer(n)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, text)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []request {
		var out []request
		for {
			select {
			case r := <-reqs:
				out = append(out, r)
			default:
				return out
			}
		}
	}
}

// sendOne sends testSMS with send and returns the one request it made.
func sendOne(t *testing.T, send func(context.Context, SMS) error, seen func() []request) request {
	t.Helper()
	if err := send(t.Context(), testSMS); err != nil {
		t.Fatal(err)
	}
	reqs := seen()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	return reqs[0]
}

var testSMS = SMS{ID: "f00d-1", To: "+821012345678", Text: `Your example.com password is abcDEF23456. "Quotes" & <tags> €`, Purpose: PurposePassword}

func TestWebhook(t *testing.T) {
	srv, seen := recorder(t, func(int) (int, string) { return http.StatusOK, `{"ok":true}` })
	g, err := NewGateway(GatewayConfig{Kind: "webhook", WebhookURL: srv.URL + "/hook?x=1", WebhookToken: "s3cret-token"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := g.(VoiceGateway); ok {
		t.Error("the webhook gateway claims to make calls")
	}
	r := sendOne(t, g.Send, seen)
	if r.Method != "POST" || r.Path != "/hook" || r.RawQuery != "x=1" {
		t.Errorf("request %s %s?%s, want POST /hook?x=1", r.Method, r.Path, r.RawQuery)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if auth := r.Header.Get("Authorization"); auth != "Bearer s3cret-token" {
		t.Errorf("Authorization %q", auth)
	}
	var got map[string]any
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatalf("body %q: %v", r.Body, err)
	}
	want := map[string]any{"id": testSMS.ID, "to": testSMS.To, "text": testSMS.Text, "purpose": "password"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("JSON %v, want %v", got, want)
	}

	// No token: no Authorization header.
	g, err = NewGateway(GatewayConfig{Kind: "webhook", WebhookURL: srv.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Send(t.Context(), testSMS); err != nil {
		t.Fatal(err)
	}
	if r := seen(); len(r) != 1 || r[0].Header.Get("Authorization") != "" {
		t.Errorf("without a token: %d requests, Authorization %q", len(r), r[0].Header.Get("Authorization"))
	}
}

// 2xx is accepted; anything else is an error that says what was answered
// and never shows the token, even when the receiver echoes it.
func TestWebhookAnswers(t *testing.T) {
	const token = "s3cret-token"
	for _, tc := range []struct {
		status int
		body   string
		ok     bool
		want   string
	}{
		{200, "", true, ""},
		{201, "{}", true, ""},
		{202, "queued", true, ""},
		{204, "", true, ""},
		{400, `{"error":"bad number"}`, false, `400 Bad Request: {"error":"bad number"}`},
		{401, "token s3cret-token is unknown", false, "401 Unauthorized: token [REDACTED] is unknown"},
		{302, "", false, "302 Found"},
		{500, strings.Repeat("x\n", 1000), false, "500 Internal Server Error: x x x"},
		{503, "", false, "503 Service Unavailable: (empty answer)"},
	} {
		srv, _ := recorder(t, func(int) (int, string) { return tc.status, tc.body })
		g := &WebhookGateway{URL: srv.URL, Token: token}
		err := g.Send(t.Context(), testSMS)
		if tc.ok {
			if err != nil {
				t.Errorf("answer %d: %v", tc.status, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("answer %d: accepted", tc.status)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), token) || len(err.Error()) > 300 {
			t.Errorf("answer %d: error %q, want it to contain %q and not the token", tc.status, err, tc.want)
		}
	}
}

// No answer is an error when the context ends (SendTimeout at most); a
// server that is gone is an error at once.
func TestWebhookNoAnswer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer srv.Close()
	defer close(release)
	g := &WebhookGateway{URL: srv.URL, Token: "s3cret-token"}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := g.Send(ctx, testSMS)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("hanging receiver: err %v after %v", err, time.Since(start))
	}
	if c := newHTTPClient(); c.Timeout != SendTimeout || SendTimeout != 10*time.Second {
		t.Errorf("default client timeout %v, SendTimeout %v; want 10s", c.Timeout, SendTimeout)
	}

	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	g = &WebhookGateway{URL: "http://user:pw-in-url@" + strings.TrimPrefix(gone.URL, "http://") + "/hook?token=q-secret"}
	err = g.Send(t.Context(), testSMS)
	if err == nil {
		t.Fatal("closed port: no error")
	}
	if strings.Contains(err.Error(), "pw-in-url") || strings.Contains(err.Error(), "q-secret") {
		t.Errorf("error shows secrets of the URL: %v", err)
	}
}

func TestTwilioSend(t *testing.T) {
	const sid, token = "AC0123456789abcdef0123456789abcdef", "tw-s3cret"
	srv, seen := recorder(t, func(int) (int, string) {
		return http.StatusCreated, `{"sid":"SM0123","status":"queued"}`
	})
	g, err := NewGateway(GatewayConfig{Kind: "twilio", TwilioAccountSID: sid, TwilioAuthToken: token,
		TwilioFrom: "+15005550006", TwilioBaseURL: srv.URL + "/"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := sendOne(t, g.Send, seen)
	checkTwilioRequest(t, r, "/2010-04-01/Accounts/"+sid+"/Messages.json", sid, token)
	form, err := url.ParseQuery(string(r.Body))
	if err != nil {
		t.Fatal(err)
	}
	want := url.Values{"To": {testSMS.To}, "From": {"+15005550006"}, "Body": {testSMS.Text}}
	if !reflect.DeepEqual(form, want) {
		t.Errorf("form %v, want %v", form, want)
	}

	// A messaging service sends as MessagingServiceSid, and makes no calls.
	ms := &TwilioGateway{AccountSID: sid, AuthToken: token, From: "MG0123456789abcdef0123456789abcdef", BaseURL: srv.URL}
	if err := ms.Send(t.Context(), testSMS); err != nil {
		t.Fatal(err)
	}
	form, _ = url.ParseQuery(string(seen()[0].Body))
	if form.Get("MessagingServiceSid") != ms.From || form.Has("From") {
		t.Errorf("messaging service form %v", form)
	}
	if err := ms.Call(t.Context(), testSMS); err == nil {
		t.Error("a messaging service made a call")
	}
	if len(seen()) != 0 {
		t.Error("a call through a messaging service reached Twilio")
	}
}

func checkTwilioRequest(t *testing.T, r request, path, sid, token string) {
	t.Helper()
	if r.Method != "POST" || r.Path != path || r.RawQuery != "" {
		t.Errorf("request %s %s?%s, want POST %s", r.Method, r.Path, r.RawQuery, path)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type %q", ct)
	}
	hr := http.Request{Header: r.Header}
	user, pass, ok := hr.BasicAuth()
	if !ok || user != sid || pass != token {
		t.Errorf("basic auth %q %q %v", user, pass, ok)
	}
}

func TestTwilioCall(t *testing.T) {
	const sid, token = "AC0123456789abcdef0123456789abcdef", "tw-s3cret"
	srv, seen := recorder(t, func(int) (int, string) { return http.StatusCreated, `{"sid":"CA0123"}` })
	g, err := NewGateway(GatewayConfig{Kind: "twilio", TwilioAccountSID: sid, TwilioAuthToken: token,
		TwilioFrom: "+15005550006", TwilioBaseURL: srv.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	vg, ok := g.(VoiceGateway)
	if !ok {
		t.Fatal("the twilio gateway makes no calls")
	}
	r := sendOne(t, vg.Call, seen)
	checkTwilioRequest(t, r, "/2010-04-01/Accounts/"+sid+"/Calls.json", sid, token)
	form, _ := url.ParseQuery(string(r.Body))
	if form.Get("To") != testSMS.To || form.Get("From") != "+15005550006" || len(form) != 3 {
		t.Errorf("form %v", form)
	}
	// The password is spelled, in both readings; the rest is read as it is.
	c := parseCall(t, form.Get("Twiml"))
	want := append(append(strings.Fields("Your example.com password is"), spelled("abcDEF23456")...),
		strings.Fields(`. "Quotes" & <tags> €`)...)
	if len(c.says) != 2 || !slices.Equal(c.says[0], want) || !slices.Equal(c.says[1], want) {
		t.Errorf("the call reads %q,\nwant twice %q", c.says, want)
	}
}

// Twilio's error answers are JSON with a code and a message; the error
// reports them, and never the auth token.
func TestTwilioErrors(t *testing.T) {
	const token = "tw-s3cret"
	for _, tc := range []struct {
		status int
		body   string
		want   string
	}{
		{400, `{"code": 21211, "message": "The 'To' number +1555 is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}`,
			"Messages answered 400 Bad Request: error 21211: The 'To' number +1555 is not a valid phone number."},
		{401, `{"code": 20003, "message": "Authenticate tw-s3cret", "status": 401}`,
			"401 Unauthorized: error 20003: Authenticate [REDACTED]"},
		{429, `{"code": 20429, "message": "Too Many Requests", "status": 429}`, "error 20429: Too Many Requests"},
		{502, `<html>Bad gateway</html>`, "502 Bad Gateway: <html>Bad gateway</html>"},
	} {
		srv, _ := recorder(t, func(int) (int, string) { return tc.status, tc.body })
		g := &TwilioGateway{AccountSID: "AC1", AuthToken: token, From: "+15005550006", BaseURL: srv.URL}
		err := g.Send(t.Context(), testSMS)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), token) {
			t.Errorf("answer %d: error %v, want it to contain %q and not the token", tc.status, err, tc.want)
		}
	}
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	g := &TwilioGateway{AccountSID: "AC1", AuthToken: token, From: "+15005550006", BaseURL: gone.URL}
	if err := g.Send(t.Context(), testSMS); err == nil || strings.Contains(err.Error(), token) {
		t.Errorf("closed port: %v", err)
	}
}

func TestNewGateway(t *testing.T) {
	for _, kind := range []string{"", "log", " LOG "} {
		g, err := NewGateway(GatewayConfig{Kind: kind}, slog.Default())
		if _, ok := g.(LogGateway); !ok || err != nil {
			t.Errorf("NewGateway(%q) = %T, %v; want LogGateway", kind, g, err)
		}
	}
	g, err := NewGateway(GatewayConfig{Kind: "twilio", TwilioAccountSID: "AC1", TwilioAuthToken: "t", TwilioFrom: "+15005550006"}, nil)
	if tg, ok := g.(*TwilioGateway); !ok || err != nil || tg.BaseURL != "https://api.twilio.com" {
		t.Errorf("twilio without a base URL: %#v, %v", g, err)
	}
	for _, cfg := range []GatewayConfig{
		{Kind: "carrier-pigeon"},
		{Kind: "webhook"},
		{Kind: "webhook", WebhookURL: "ftp://example.com/"},
		{Kind: "webhook", WebhookURL: "http://"},
		{Kind: "twilio", TwilioAuthToken: "t", TwilioFrom: "+1"},
		{Kind: "twilio", TwilioAccountSID: "AC1", TwilioFrom: "+1"},
		{Kind: "twilio", TwilioAccountSID: "AC1", TwilioAuthToken: "t"},
		{Kind: "twilio", TwilioAccountSID: "AC1", TwilioAuthToken: "t", TwilioFrom: "+1", TwilioBaseURL: "api.twilio.com"},
	} {
		if g, err := NewGateway(cfg, nil); err == nil {
			t.Errorf("NewGateway(%+v) = %T, want an error", cfg, g)
		}
	}
}
