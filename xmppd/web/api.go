package web

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"time"

	"dialtone/auth"
	"dialtone/internal/forwarded"
	"dialtone/sms"
)

// maxAPIBody bounds a request to the password API; {"phone": "..."} with
// the longest number anyone writes is well under a hundred bytes.
const maxAPIBody = 4 << 10

// Texts of the API's answers (SPEC.md "HTTP" fixes the ones it quotes).
const (
	apiSent           = "sent"
	apiTooMany        = "too many requests"
	apiCannotReceive  = "number cannot receive SMS"
	apiInvalidNumber  = "invalid phone number"
	apiMissingPhone   = "phone is required"
	apiNotJSON        = "content type must be application/json"
	apiMalformed      = "malformed JSON request"
	apiTooLarge       = "request body too large"
	apiMethod         = "method not allowed"
	apiUnavailable    = "service unavailable, try again later"
	apiNotConfigured  = "service not configured"
	apiRetryAfterZero = 1 // seconds: a throttle never says "retry now"
)

// passwordAPI serves POST /api/v1/password.
type passwordAPI struct {
	opts Options
}

type passwordRequest struct {
	Phone *string `json:"phone"`
}

func (a *passwordAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, "error", apiMethod)
		return
	}
	if a.opts.Passwords == nil {
		writeJSON(w, http.StatusServiceUnavailable, "error", apiNotConfigured)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeJSON(w, http.StatusBadRequest, "error", apiNotJSON)
		return
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAPIBody))
	dec.DisallowUnknownFields()
	var req passwordRequest
	err := dec.Decode(&req)
	if err == nil {
		// Exactly one JSON value: trailing data is as malformed as a
		// missing brace.
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errors.New("trailing data")
		}
	}
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeJSON(w, http.StatusRequestEntityTooLarge, "error", apiTooLarge)
			return
		}
		writeJSON(w, http.StatusBadRequest, "error", apiMalformed)
		return
	}
	if req.Phone == nil || *req.Phone == "" {
		writeJSON(w, http.StatusBadRequest, "error", apiMissingPhone)
		return
	}
	err = a.opts.Passwords.Request(r.Context(), *req.Phone, forwarded.ClientOf(r).IP)
	if retry, ok := throttled(err); ok {
		w.Header().Set("Retry-After", strconv.Itoa(retry))
		writeJSON(w, http.StatusTooManyRequests, "error", apiTooMany)
		return
	}
	switch {
	case err == nil:
		writeJSON(w, http.StatusAccepted, "status", apiSent)
	case errors.Is(err, auth.ErrCannotReceiveSMS):
		writeJSON(w, http.StatusBadRequest, "error", apiCannotReceive)
	case errors.Is(err, auth.ErrInvalidNumber):
		writeJSON(w, http.StatusBadRequest, "error", apiInvalidNumber)
	default:
		a.opts.Log.Error("password request failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, "error", apiUnavailable)
	}
}

// throttled reports whether err is a rate limit's refusal, and the
// Retry-After it calls for in whole seconds, rounded up and at least one.
func throttled(err error) (seconds int, ok bool) {
	var d time.Duration
	if t, ok := errors.AsType[*sms.ThrottledError](err); ok {
		d = t.RetryAfter
	} else if t, ok := errors.AsType[Throttled](err); ok {
		d = t.RetryAfterDuration()
	} else {
		return 0, false
	}
	if d <= 0 {
		return apiRetryAfterZero, true
	}
	s := math.Ceil(d.Seconds())
	if s > float64(365*24*time.Hour/time.Second) {
		s = float64(365 * 24 * time.Hour / time.Second)
	}
	return max(int(s), apiRetryAfterZero), true
}

// writeJSON answers with the one-member object {key: value}.
func writeJSON(w http.ResponseWriter, code int, key, value string) {
	b, _ := json.Marshal(map[string]string{key: value})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
