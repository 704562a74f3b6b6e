package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"dialtone/auth"
)

const (
	// sessionCookie holds "number.generation.expiry.mac"; see session.
	sessionCookie = "dialtone_session"
	// formCookie holds a random value that form tokens are derived from
	// (signed double-submit); it carries no authority on its own.
	formCookie = "dialtone_form"
	// sessionTTL is how long a web login lasts.
	sessionTTL = 7 * 24 * time.Hour
	// formCookieTTL outlives any session, so that a form left open for a
	// while still posts.
	formCookieTTL = 30 * 24 * time.Hour
	// minSecretKey is the shortest SecretKey accepted.
	minSecretKey = 16
)

var b64 = base64.RawURLEncoding

// keys are the HMAC keys derived from Options.SecretKey, one per use, so
// that a value signed for one purpose is never valid for another, nor for
// what else XMPPD_SECRET_KEY protects.
type keys struct {
	session, form []byte
}

func deriveKeys(secret []byte) keys {
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte("dialtone web " + label))
		return m.Sum(nil)
	}
	return keys{session: derive("session"), form: derive("form")}
}

// session is a logged-in visitor. The cookie names the account and the
// generation of its password, so that a new password (from this page,
// xmppctl or a password SMS) ends web sessions as it ends XMPP ones.
type session struct {
	number     auth.Number
	generation int64
	expires    time.Time
}

func (k keys) sessionMAC(number string, gen, expires int64) []byte {
	m := hmac.New(sha256.New, k.session)
	m.Write([]byte(number + "\x00" + strconv.FormatInt(gen, 10) + "\x00" + strconv.FormatInt(expires, 10)))
	return m.Sum(nil)
}

// encode returns the cookie value of s.
func (k keys) encode(s session) string {
	exp := s.expires.Unix()
	mac := k.sessionMAC(string(s.number), s.generation, exp)
	return string(s.number) + "." + strconv.FormatInt(s.generation, 10) + "." +
		strconv.FormatInt(exp, 10) + "." + b64.EncodeToString(mac)
}

// decode checks a cookie value's signature and expiry; the caller still
// compares the generation with the stored account's.
func (k keys) decode(v string, now time.Time) (session, bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 4 || len(v) > 256 {
		return session{}, false
	}
	gen, err1 := strconv.ParseInt(parts[1], 10, 64)
	exp, err2 := strconv.ParseInt(parts[2], 10, 64)
	mac, err3 := b64.DecodeString(parts[3])
	if err1 != nil || err2 != nil || err3 != nil {
		return session{}, false
	}
	if !hmac.Equal(mac, k.sessionMAC(parts[0], gen, exp)) {
		return session{}, false
	}
	expires := time.Unix(exp, 0)
	if !now.Before(expires) {
		return session{}, false
	}
	return session{number: auth.Number(parts[0]), generation: gen, expires: expires}, true
}

// formToken is the hidden field every POST form carries: an HMAC of the
// visitor's form cookie and of the account logged in (if any), so that a
// token is good only for this browser and this session's account.
func (k keys) formToken(cookie string, who auth.Number) string {
	m := hmac.New(sha256.New, k.form)
	m.Write([]byte(cookie + "\x00" + string(who)))
	return b64.EncodeToString(m.Sum(nil))
}

// checkForm reports whether r carries a token that matches its form cookie
// and who.
func (k keys) checkForm(r *http.Request, who auth.Number) bool {
	c, err := r.Cookie(formCookie)
	if err != nil || c.Value == "" {
		return false
	}
	got := r.PostFormValue("csrf")
	want := k.formToken(c.Value, who)
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// formCookieValue returns the visitor's form cookie, setting a new one
// when there is none. secure marks a cookie the browser must keep to
// https (site.secure).
func formCookieValue(w http.ResponseWriter, r *http.Request, now time.Time, secure bool) string {
	if c, err := r.Cookie(formCookie); err == nil && len(c.Value) >= 16 && len(c.Value) <= 64 {
		return c.Value
	}
	b := make([]byte, 18)
	rand.Read(b)
	v := b64.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{
		Name: formCookie, Value: v, Path: "/", Expires: now.Add(formCookieTTL),
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode,
	})
	return v
}

func setSessionCookie(w http.ResponseWriter, value string, expires time.Time, secure bool) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: value, Path: "/", Expires: expires,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode,
	})
}

func clearSessionCookie(w http.ResponseWriter, secure bool) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode,
	})
}
