package testbin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// SMSReceiver is a local SMS gateway for tests: the webhook receiver (JSON bodies)
// or Twilio's API (form posts to Messages.json and Calls.json). It records
// what it got.
type SMSReceiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []ReceivedSMS
	more chan struct{} // signalled on each new one
}

// ReceivedSMS is one SMS or call as the gateway received it.
type ReceivedSMS struct {
	ID, To, Text, Purpose string
	Call                  bool   // a Twilio call
	Twiml                 string // the call's TwiML
}

func NewSMSReceiver(t testing.TB) *SMSReceiver {
	r := &SMSReceiver{more: make(chan struct{}, 1)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var m ReceivedSMS
		switch {
		case strings.HasSuffix(req.URL.Path, "/Messages.json"), strings.HasSuffix(req.URL.Path, "/Calls.json"):
			form, err := url.ParseQuery(string(body))
			if err != nil {
				http.Error(w, "bad form", http.StatusBadRequest)
				return
			}
			m = ReceivedSMS{To: form.Get("To"), Text: form.Get("Body"), Twiml: form.Get("Twiml"),
				Call: strings.HasSuffix(req.URL.Path, "/Calls.json")}
		default:
			if err := json.Unmarshal(body, &m); err != nil {
				http.Error(w, "bad json", http.StatusBadRequest)
				return
			}
		}
		r.mu.Lock()
		r.got = append(r.got, m)
		r.mu.Unlock()
		select {
		case r.more <- struct{}{}:
		default:
		}
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"sid":"SM1"}`)
	}))
	t.Cleanup(r.Close)
	return r
}

// To returns what was received for the number so far.
func (r *SMSReceiver) To(num string) []ReceivedSMS {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []ReceivedSMS
	for _, m := range r.got {
		if m.To == num {
			out = append(out, m)
		}
	}
	return out
}

// Wait waits up to d for the n-th SMS (from 1) to num and returns it.
func (r *SMSReceiver) Wait(t testing.TB, num string, n int, d time.Duration) ReceivedSMS {
	t.Helper()
	deadline := time.After(d)
	for {
		if got := r.To(num); len(got) >= n {
			return got[n-1]
		}
		select {
		case <-r.more:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("SMS %d to %s did not arrive within %v; got %+v", n, num, d, r.To(num))
		}
	}
}

// None checks that num gets no more than n SMS during d.
func (r *SMSReceiver) None(t testing.TB, num string, n int, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	if got := r.To(num); len(got) > n {
		t.Errorf("%s: want %d SMS, got %+v", num, n, got)
	}
}
