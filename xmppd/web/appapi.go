package web

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"dialtone/auth"
	"dialtone/internal/forwarded"
	"dialtone/sms"
)

// AppAPI is the service behind the app API (SPEC.md "App API",
// compatible with Quicksy): PINs by SMS, and passwords set with them.
// Implemented by sms.PINs.
type AppAPI interface {
	// Request texts a PIN to phone for the app installation installation
	// (its Installation-Id), asked for from the client address ip. Errors
	// match auth.ErrInvalidNumber (auth.ErrRegionNotAllowed,
	// auth.ErrCannotReceiveSMS), or are throttles (*sms.ThrottledError or
	// Throttled).
	Request(ctx context.Context, phone, ip, installation string) error
	// SetPassword makes password the password of phone's account if pin
	// is its PIN, and returns the canonical number, and whether the
	// account had never logged in (SPEC.md's 201). Errors: those of the
	// number, auth.ErrChosenPassword, sms.ErrNoPIN, sms.ErrWrongPIN and
	// throttles.
	SetPassword(ctx context.Context, phone, pin, password, ip string) (n auth.Number, fresh bool, err error)
}

// The paths of the app API: the Quicksy app's, fixed in its code
// (QuickConversationsService: BASE_URL + "/authentication/" + e164, and
// BASE_URL + "/password").
const (
	appPINPath      = "/authentication/"
	appPasswordPath = "/password"
	// requestPasswordPath is where the home page's "send me a password"
	// forms post, away from the app's /password.
	requestPasswordPath = "/send-password"
)

// Bounds on what an app request may carry, so that garbage costs little.
const (
	// maxAppAuthorization is far above base64("\0" + 16 digits + "\0" +
	// 6 digits) and far below the server's header limit; longer is
	// refused before anything is decoded.
	maxAppAuthorization = 256
	// maxAppPasswordBody is 128 characters of four UTF-8 bytes each;
	// a longer body is refused having read only this much.
	maxAppPasswordBody = auth.MaxChosenPassword * 4
)

// Texts of the app API's answers. The app shows its own text for each
// status code; these are for people reading the wire.
const (
	appSent             = "sent"
	appCreated          = "created"
	appChanged          = "changed"
	appRegionNotAllowed = "region not allowed"
	appInstallationID   = "Installation-Id must be a UUID"
	appHead             = "use GET: this request texts a PIN"
	appNoAuthorization  = "Authorization is required: base64 of NUMBER, NUL, PIN"
	appBasicScheme      = "Authorization is base64 of NUMBER, NUL, PIN, without a scheme such as Basic"
	appBadAuthorization = "Authorization must be base64 of NUMBER, NUL, PIN"
	appBadPIN           = "the PIN is 6 digits"
	appPasswordTooLong  = "password not acceptable: longer than 128 characters"
	appNoPIN            = "no PIN for this number, or it expired; ask for a new one"
	appWrongPIN         = "wrong PIN"
	appTooManyTries     = "too many tries"
)

// registerAppAPI adds the app API's routes to mux, unless there is no
// service (XMPPD_APP_API=false): then both paths are 404, as if the API
// did not exist.
func registerAppAPI(mux *http.ServeMux, opts Options) {
	if opts.App == nil {
		return
	}
	a := &appAPI{opts: opts}
	mux.Handle("GET "+appPINPath+"{number...}", secure(http.HandlerFunc(a.requestPIN)))
	mux.Handle("POST "+appPasswordPath, secure(http.HandlerFunc(a.setPassword)))
}

// appAPI serves GET /authentication/NUMBER and POST /password.
type appAPI struct {
	opts Options
}

// requestPIN texts a PIN (GET /authentication/NUMBER).
func (a *appAPI) requestPIN(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		// A HEAD would text a PIN and throw the answer away.
		w.Header().Set("Allow", http.MethodGet)
		writeJSON(w, http.StatusMethodNotAllowed, "error", appHead)
		return
	}
	installation, ok := uuid(r.Header.Get("Installation-Id"))
	if !ok {
		writeJSON(w, http.StatusBadRequest, "error", appInstallationID)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	err := a.opts.App.Request(ctx, r.PathValue("number"), forwarded.ClientOf(r).IP, installation)
	if err == nil {
		writeJSON(w, http.StatusOK, "status", appSent)
		return
	}
	a.fail(w, err, "PIN request failed")
}

// setPassword sets the password the app chose (POST /password). The body
// is the password, raw: the app sends it as
// application/x-www-form-urlencoded without encoding it, so form-decoding
// it would turn a '+' into a space and cut it at '&'.
func (a *appAPI) setPassword(w http.ResponseWriter, r *http.Request) {
	number, pin, msg := appAuthorization(r.Header.Get("Authorization"))
	if msg != "" {
		writeJSON(w, http.StatusBadRequest, "error", msg)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAppPasswordBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeJSON(w, http.StatusBadRequest, "error", appPasswordTooLong)
			return
		}
		writeJSON(w, http.StatusBadRequest, "error", apiMalformed)
		return
	}
	ipKey := ipLockoutKey(forwarded.ClientOf(r).IP)
	if d := a.opts.IPLockout.Locked(ipKey); d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((d+time.Second-1)/time.Second)))
		writeJSON(w, http.StatusTooManyRequests, "error", appTooManyTries)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	n, fresh, err := a.opts.App.SetPassword(ctx, number, pin, string(body), forwarded.ClientOf(r).IP)
	switch {
	case err == nil:
		// The holder of the number proved it: failed logins before do
		// not lock out the password just set.
		a.opts.Lockout.Succeed(n)
		if fresh {
			writeJSON(w, http.StatusCreated, "status", appCreated)
		} else {
			writeJSON(w, http.StatusOK, "status", appChanged)
		}
	case errors.Is(err, sms.ErrWrongPIN):
		// A wrong PIN counts against the address like a wrong password:
		// one address guessing the PINs of many numbers is locked.
		a.opts.IPLockout.Fail(ipKey)
		writeJSON(w, http.StatusUnauthorized, "error", appWrongPIN)
	case errors.Is(err, sms.ErrNoPIN):
		writeJSON(w, http.StatusNotFound, "error", appNoPIN)
	case errors.Is(err, auth.ErrChosenPassword):
		writeJSON(w, http.StatusBadRequest, "error", err.Error())
	default:
		a.fail(w, err, "password with a PIN failed")
	}
}

// fail answers the errors both routes share: throttles, numbers that are
// not addresses, and failures of the service.
func (a *appAPI) fail(w http.ResponseWriter, err error, what string) {
	if retry, ok := throttled(err); ok {
		w.Header().Set("Retry-After", strconv.Itoa(retry))
		msg := apiTooMany
		if t, ok := errors.AsType[*sms.ThrottledError](err); ok && t.Reason == sms.ReasonPINTries {
			msg = appTooManyTries
		}
		writeJSON(w, http.StatusTooManyRequests, "error", msg)
		return
	}
	switch {
	case errors.Is(err, auth.ErrRegionNotAllowed):
		writeJSON(w, http.StatusUnavailableForLegalReasons, "error", appRegionNotAllowed)
	case errors.Is(err, auth.ErrCannotReceiveSMS):
		writeJSON(w, http.StatusBadRequest, "error", apiCannotReceive)
	case errors.Is(err, auth.ErrInvalidNumber):
		writeJSON(w, http.StatusBadRequest, "error", apiInvalidNumber)
	default:
		a.opts.Log.Error(what, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, "error", apiUnavailable)
	}
}

// appAuthorization reads the app's Authorization header: base64 (standard
// alphabet, padded or not) of NUMBER NUL PIN, optionally after one NUL
// (the Android app builds it as SASL PLAIN with an empty authzid: "\0" +
// number + "\0" + pin), without a scheme. msg says what is wrong, or "".
func appAuthorization(header string) (number, pin, msg string) {
	h := strings.TrimSpace(header)
	switch {
	case h == "":
		return "", "", appNoAuthorization
	case len(h) > maxAppAuthorization:
		return "", "", appBadAuthorization
	case strings.ContainsRune(h, ' '):
		return "", "", appBasicScheme
	}
	raw, err := base64.StdEncoding.DecodeString(h)
	if err != nil {
		if raw, err = base64.RawStdEncoding.DecodeString(h); err != nil {
			return "", "", appBadAuthorization
		}
	}
	raw = bytes.TrimPrefix(raw, []byte{0})
	number, pin, ok := strings.Cut(string(raw), "\x00")
	if !ok || number == "" || strings.ContainsRune(pin, 0) {
		return "", "", appBadAuthorization
	}
	if !auth.ValidPIN(pin) {
		return "", "", appBadPIN
	}
	return number, pin, ""
}

// uuid returns s in lower case if it is a UUID in its usual text form
// (8-4-4-4-12 hex digits, as java.util.UUID.toString writes it).
func uuid(s string) (string, bool) {
	if len(s) != 36 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return "", false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return "", false
		}
	}
	return strings.ToLower(s), true
}
