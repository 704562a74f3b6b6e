package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"

	"dialtone/auth"
	"dialtone/internal/forwarded"
)

var (
	//go:embed page.html
	pageHTML string
	//go:embed style.css
	styleCSS string

	pages = template.Must(template.New("page").Funcs(template.FuncMap{
		"breakJID":         breakAfter("@"),
		"breakFingerprint": breakAfter(":"),
	}).Parse(pageHTML))

	// contentSecurityPolicy allows the one inline stylesheet by its hash
	// and nothing else: no script, no frames, forms only to this site.
	contentSecurityPolicy = "default-src 'none'; style-src '" + styleHash() + "'; img-src 'self' data:; " +
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

func styleHash() string {
	sum := sha256.Sum256([]byte(styleCSS))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

const (
	// maxFormBody bounds a form post: a number, two passwords and a token.
	maxFormBody = 8 << 10
	// maxPassword bounds a new password; SASL messages carry it whole.
	maxPassword = 128
	// maxName bounds a display name, in characters.
	maxName = 100
	// storeTimeout bounds the store calls of one page.
	storeTimeout = 10 * time.Second
)

// Texts people see. Unknown numbers and wrong passwords get the same one.
const (
	msgWrongLogin     = "Wrong phone number or password."
	msgNoNumber       = "Enter your phone number."
	msgNoPassword     = "Enter your password."
	msgBadNumber      = "That does not look like a phone number we can text. Check it, and add the country code (like +82) if it is from another country."
	msgCannotReceive  = "That number cannot receive SMS, so it cannot have an account."
	msgUnavailable    = "Something went wrong on our side. Please try again in a minute."
	msgExpiredForm    = "This form was out of date, so nothing was done. Please try again."
	msgNotConfigured  = "This server's web service is not configured yet. Ask its operator."
	msgPasswordShort  = "The new password needs at least %d characters."
	msgPasswordLong   = "The new password can have at most %d characters."
	msgPasswordChars  = "Use letters, digits, spaces and punctuation only (no accents or emoji), so that every XMPP app can log in with it."
	msgPasswordDiffer = "The two passwords are not the same."
	msgNameLong       = "The name can have at most %d characters."
	msgNameChars      = "The name has characters that cannot be shown."
)

// site serves the home page and the account pages.
type site struct {
	opts  Options
	keys  keys
	ready bool
	// publicHTTPS: XMPPD_PUBLIC_URL is https, so every cookie is Secure,
	// even on a request that reached this listener in the clear from
	// the proxy in front of it.
	publicHTTPS bool
	// public is XMPPD_PUBLIC_URL; nil when unset or malformed.
	public *url.URL
	// decoy is checked against when a number has no account, so that an
	// unknown number costs the same PBKDF2 work as a wrong password.
	decoy auth.Credentials
}

func newSite(opts Options, public *url.URL) *site {
	s := &site{
		opts:        opts,
		ready:       opts.Parser != nil && opts.Accounts != nil && opts.Passwords != nil && len(opts.SecretKey) >= minSecretKey,
		publicHTTPS: public != nil && public.Scheme == "https",
		public:      public,
	}
	if s.ready {
		s.keys = deriveKeys(opts.SecretKey)
		b := make([]byte, 18)
		rand.Read(b)
		decoy, err := auth.NewCredentials(b64.EncodeToString(b))
		if err != nil {
			s.ready = false
		}
		s.decoy = decoy
	}
	return s
}

// secure reports whether r's cookies must be Secure: the site is public
// over https, or this client came over https.
func (s *site) secure(r *http.Request) bool {
	return s.publicHTTPS || forwarded.ClientOf(r).HTTPS
}

func (s *site) register(mux *http.ServeMux) {
	handle := func(pattern string, h func(http.ResponseWriter, *http.Request)) {
		mux.Handle(pattern, secure(s.configured(h)))
	}
	handle("GET /{$}", s.home)
	handle("POST /login", s.login)
	// Not /password: that path is the app API's (SPEC.md "App API").
	handle("POST "+requestPasswordPath, s.requestPassword)
	handle("GET /account", s.account)
	handle("POST /account/name", s.setName)
	handle("POST /account/password", s.changePassword)
	handle("POST /account/discovery", s.setDiscovery)
	handle("POST /logout", s.logout)
	s.registerChat(mux)
	s.registerLinks(mux)
}

// configured answers every page with "not configured" when the handler
// was built for health and metrics alone.
func (s *site) configured(h func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.ready {
			s.render(w, http.StatusServiceUnavailable, "message", &page{Title: "Not available", Message: msgNotConfigured, Failed: true})
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
			if err := r.ParseForm(); err != nil {
				s.render(w, http.StatusBadRequest, "message", &page{Title: "Please try again", Message: "The form could not be read.", Failed: true})
				return
			}
		}
		h(w, r)
	}
}

// page is what the templates show.
type page struct {
	Title  string
	Domain string
	Style  template.CSS
	CSRF   string
	Notice string

	// Home and sent pages.
	Phone, NewPhone          string
	LoginError, RequestError string
	FocusPassword            bool
	SentTo                   string

	// Account page.
	Account *accountView

	// Message page.
	Message string
	Failed  bool

	// Login link page: the token it posts, and the script that posts it.
	LinkToken string
	Script    template.JS
}

type accountView struct {
	Number      string
	Pretty      string
	JID         string
	Host        string
	Ports       []ClientPort
	Fingerprint string

	CountShown, CountKnown bool
	Waiting                int

	CanName, CanPassword bool
	// CanChat shows "Open chat" (the web client at /chat).
	CanChat        bool
	MinPassword    int
	Name           string
	NameError      string
	NameNotice     string
	PasswordError  string
	PasswordNotice string

	// CanHide shows the contact discovery switch; Hidden is its state
	// when HiddenKnown (it could be read).
	CanHide, Hidden, HiddenKnown bool
	DiscoveryError               string
	DiscoveryNotice              string
}

func (s *site) render(w http.ResponseWriter, code int, name string, p *page) {
	p.Domain = s.opts.Domain
	p.Style = template.CSS(styleCSS)
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, p); err != nil {
		s.opts.Log.Error("rendering a page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// homePage returns the home page's data with a fresh form token.
func (s *site) homePage(w http.ResponseWriter, r *http.Request) *page {
	return &page{Title: "Home", CSRF: s.keys.formToken(formCookieValue(w, r, s.opts.Now(), s.secure(r)), "")}
}

func (s *site) home(w http.ResponseWriter, r *http.Request) {
	if _, ok, _ := s.session(r); ok {
		http.Redirect(w, r, "/account", http.StatusSeeOther)
		return
	}
	p := s.homePage(w, r)
	if r.URL.Query().Get("bye") != "" {
		p.Notice = "You are logged out."
	}
	s.render(w, http.StatusOK, "home", p)
}

// expired answers a post whose form token does not match.
func (s *site) expired(w http.ResponseWriter, r *http.Request) {
	formCookieValue(w, r, s.opts.Now(), s.secure(r))
	s.render(w, http.StatusForbidden, "message", &page{Title: "Please try again", Message: msgExpiredForm, Failed: true})
}

func (s *site) login(w http.ResponseWriter, r *http.Request) {
	if !s.keys.checkForm(r, "") {
		s.expired(w, r)
		return
	}
	phone := strings.TrimSpace(r.PostFormValue("phone"))
	password := r.PostFormValue("password")
	p := s.homePage(w, r)
	p.Title, p.Phone = "Log in", phone
	fail := func(code int, msg string) {
		p.LoginError = msg
		p.FocusPassword = phone != ""
		s.render(w, code, "home", p)
	}
	if phone == "" {
		fail(http.StatusBadRequest, msgNoNumber)
		return
	}
	n, err := s.opts.Parser.Parse(phone)
	if err != nil {
		fail(http.StatusBadRequest, numberMessage(err))
		return
	}
	if password == "" {
		fail(http.StatusBadRequest, msgNoPassword)
		return
	}
	ipKey := ipLockoutKey(forwarded.ClientOf(r).IP)
	locked := func(d time.Duration, whose string) bool {
		if d <= 0 {
			return false
		}
		w.Header().Set("Retry-After", fmt.Sprint(int((d+time.Second-1)/time.Second)))
		fail(http.StatusTooManyRequests, "Too many failed logins "+whose+". Try again in "+humanDuration(d)+".")
		return true
	}
	if locked(s.opts.IPLockout.Locked(ipKey), "from your address") || locked(s.opts.Lockout.Locked(n), "for this number") {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	acct, err := s.opts.Accounts.Account(ctx, n)
	known := err == nil
	if err != nil && !errors.Is(err, auth.ErrNotFound) {
		s.opts.Log.Error("web login: reading the account", "number", n, "err", err)
		fail(http.StatusServiceUnavailable, msgUnavailable)
		return
	}
	checked := acct
	if !known {
		checked = auth.Account{Credentials: s.decoy}
	}
	if s.opts.PromotePending == nil {
		checked.Pending = auth.Credentials{}
	}
	match := checked.MatchPassword(password)
	gen := acct.Generation
	if match == auth.PendingPassword {
		// A requested password's first login makes it the only one.
		gen, err = s.opts.PromotePending(ctx, n, acct.Pending)
		if err != nil && !errors.Is(err, auth.ErrNotFound) {
			s.opts.Log.Error("web login: making the requested password current", "number", n, "err", err)
			fail(http.StatusServiceUnavailable, msgUnavailable)
			return
		}
		if err != nil {
			match = auth.NoMatch // replaced meanwhile by a newer one
		}
	}
	if match == auth.NoMatch || !known {
		s.opts.Lockout.Fail(n)
		s.opts.IPLockout.Fail(ipKey)
		fail(http.StatusUnauthorized, msgWrongLogin)
		return
	}
	// The address's count is not reset: one account's right password
	// must not buy more guesses at others (as on XMPP).
	s.opts.Lockout.Succeed(n)
	if err := s.opts.Accounts.RecordLogin(ctx, n, s.opts.Now()); err != nil {
		s.opts.Log.Warn("web login: recording the login", "number", n, "err", err)
	}
	s.startSession(w, r, n, gen)
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}

func (s *site) startSession(w http.ResponseWriter, r *http.Request, n auth.Number, gen int64) {
	exp := s.opts.Now().Add(sessionTTL).Truncate(time.Second)
	setSessionCookie(w, s.keys.encode(session{number: n, generation: gen, expires: exp}), exp, s.secure(r))
}

func (s *site) requestPassword(w http.ResponseWriter, r *http.Request) {
	if !s.keys.checkForm(r, "") {
		s.expired(w, r)
		return
	}
	phone := strings.TrimSpace(r.PostFormValue("phone"))
	p := s.homePage(w, r)
	p.Title = "New password"
	fromLogin := r.PostFormValue("from") == "login"
	fail := func(code int, msg string) {
		if fromLogin {
			p.Phone, p.LoginError = phone, msg
		} else {
			p.NewPhone, p.RequestError = phone, msg
		}
		s.render(w, code, "home", p)
	}
	if phone == "" {
		fail(http.StatusBadRequest, msgNoNumber)
		return
	}
	n, err := s.opts.Parser.Parse(phone)
	if err == nil {
		ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
		defer cancel()
		err = s.opts.Passwords.Request(ctx, phone, forwarded.ClientOf(r).IP)
	}
	if secs, ok := throttled(err); ok {
		w.Header().Set("Retry-After", fmt.Sprint(secs))
		fail(http.StatusTooManyRequests, "You asked for passwords a moment ago. Please try again in "+
			humanDuration(time.Duration(secs)*time.Second)+".")
		return
	}
	switch {
	case errors.Is(err, auth.ErrInvalidNumber):
		fail(http.StatusBadRequest, numberMessage(err))
		return
	case err != nil:
		s.opts.Log.Error("web password request failed", "err", err)
		fail(http.StatusServiceUnavailable, msgUnavailable)
		return
	}
	p.Title, p.SentTo, p.Phone, p.FocusPassword = "Password sent", prettyNumber(n), string(n), true
	s.render(w, http.StatusOK, "sent", p)
}

// session returns the visitor's valid session: signed, not expired, and
// of the account's current password. A store failure is an error.
func (s *site) session(r *http.Request) (session, bool, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false, nil
	}
	sess, ok := s.keys.decode(c.Value, s.opts.Now())
	if !ok {
		return session{}, false, nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	acct, err := s.opts.Accounts.Account(ctx, sess.number)
	if errors.Is(err, auth.ErrNotFound) {
		return session{}, false, nil
	}
	if err != nil {
		return session{}, false, err
	}
	return sess, acct.Generation == sess.generation, nil
}

// loggedIn returns the session of an account page request; without one
// it has answered already (to the home page, or with an error).
func (s *site) loggedIn(w http.ResponseWriter, r *http.Request) (session, bool) {
	sess, ok, err := s.session(r)
	if err != nil {
		s.opts.Log.Error("web session: reading the account", "err", err)
		s.render(w, http.StatusServiceUnavailable, "message", &page{Title: "Please try again", Message: msgUnavailable, Failed: true})
		return session{}, false
	}
	if !ok {
		clearSessionCookie(w, s.secure(r))
		if r.Method == http.MethodPost {
			s.expired(w, r)
		} else {
			http.Redirect(w, r, "/", http.StatusSeeOther)
		}
		return session{}, false
	}
	return sess, true
}

// accountPage returns the account page's data for n.
func (s *site) accountPage(ctx context.Context, w http.ResponseWriter, r *http.Request, n auth.Number) *page {
	host := s.opts.Client.Host
	if host == "" {
		host = s.opts.Domain
	}
	v := &accountView{
		Number:      string(n),
		Pretty:      prettyNumber(n),
		JID:         string(n) + "@" + s.opts.Domain,
		Host:        host,
		Ports:       s.opts.Client.Ports,
		Fingerprint: s.opts.Client.Fingerprint,
		CanName:     s.opts.SetFullName != nil,
		CanPassword: s.opts.ChangePassword != nil,
		CanChat:     s.chatEnabled(),
		MinPassword: auth.MinPasswordLength,
	}
	if j, err := auth.CanonicalJID(n, s.opts.Domain); err == nil {
		v.JID = j.String()
	}
	if s.opts.FullName != nil && v.CanName {
		ctx, cancel := context.WithTimeout(ctx, storeTimeout)
		name, err := s.opts.FullName(ctx, string(n))
		cancel()
		if err != nil {
			s.opts.Log.Error("account page: reading the display name", "number", n, "err", err)
		} else {
			v.Name = name
		}
	}
	if s.opts.Discovery != nil {
		v.CanHide = true
		ctx, cancel := context.WithTimeout(ctx, storeTimeout)
		hidden, err := s.opts.Discovery.Hidden(ctx, n)
		cancel()
		if err != nil {
			s.opts.Log.Error("account page: reading the contact discovery setting", "number", n, "err", err)
		} else {
			v.Hidden, v.HiddenKnown = hidden, true
		}
	}
	if s.opts.Offline != nil {
		v.CountShown = true
		ctx, cancel := context.WithTimeout(ctx, storeTimeout)
		defer cancel()
		c, err := s.opts.Offline.CountOffline(ctx, string(n))
		if err != nil {
			s.opts.Log.Error("account page: counting messages", "number", n, "err", err)
		} else {
			v.CountKnown, v.Waiting = true, c
		}
	}
	return &page{
		Title:   "Your account",
		CSRF:    s.keys.formToken(formCookieValue(w, r, s.opts.Now(), s.secure(r)), n),
		Account: v,
	}
}

func (s *site) account(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.loggedIn(w, r)
	if !ok {
		return
	}
	p := s.accountPage(r.Context(), w, r, sess.number)
	switch r.URL.Query().Get("done") {
	case "name":
		p.Account.NameNotice = "Your display name is saved."
	case "password":
		p.Account.PasswordNotice = "Your password is changed. Log your XMPP apps in again with the new one."
	case "discovery":
		p.Account.DiscoveryNotice = "Saved."
	}
	s.render(w, http.StatusOK, "account", p)
}

// accountPost checks a post of an account page form: a session, the
// form token of its account, and the feature switched on. Without them it
// has answered already.
func (s *site) accountPost(w http.ResponseWriter, r *http.Request, enabled bool) (session, bool) {
	sess, ok := s.loggedIn(w, r)
	if !ok {
		return session{}, false
	}
	if !s.keys.checkForm(r, sess.number) {
		s.expired(w, r)
		return session{}, false
	}
	if !enabled {
		http.NotFound(w, r)
		return session{}, false
	}
	return sess, true
}

func (s *site) setName(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.accountPost(w, r, s.opts.SetFullName != nil)
	if !ok {
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	fail := func(code int, msg string) {
		p := s.accountPage(r.Context(), w, r, sess.number)
		p.Account.Name, p.Account.NameError = name, msg
		s.render(w, code, "account", p)
	}
	if msg := checkName(name); msg != "" {
		fail(http.StatusBadRequest, msg)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	if err := s.opts.SetFullName(ctx, string(sess.number), name); err != nil {
		s.opts.Log.Error("account page: setting the display name", "number", sess.number, "err", err)
		fail(http.StatusServiceUnavailable, msgUnavailable)
		return
	}
	http.Redirect(w, r, "/account?done=name", http.StatusSeeOther)
}

// setDiscovery is the contact discovery switch: findable=no opts the
// account out, findable=yes back in.
func (s *site) setDiscovery(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.accountPost(w, r, s.opts.Discovery != nil)
	if !ok {
		return
	}
	fail := func(code int, msg string) {
		p := s.accountPage(r.Context(), w, r, sess.number)
		p.Account.DiscoveryError = msg
		s.render(w, code, "account", p)
	}
	var hidden bool
	switch r.PostFormValue("findable") {
	case "yes":
	case "no":
		hidden = true
	default:
		fail(http.StatusBadRequest, "Choose whether your contacts may find you.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	if err := s.opts.Discovery.SetHidden(ctx, sess.number, hidden); err != nil {
		s.opts.Log.Error("account page: setting contact discovery", "number", sess.number, "err", err)
		fail(http.StatusServiceUnavailable, msgUnavailable)
		return
	}
	http.Redirect(w, r, "/account?done=discovery", http.StatusSeeOther)
}

func (s *site) changePassword(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.accountPost(w, r, s.opts.ChangePassword != nil)
	if !ok {
		return
	}
	fail := func(code int, msg string) {
		p := s.accountPage(r.Context(), w, r, sess.number)
		p.Account.PasswordError = msg
		s.render(w, code, "account", p)
	}
	password := r.PostFormValue("password")
	if msg := checkPassword(password); msg != "" {
		fail(http.StatusBadRequest, msg)
		return
	}
	if r.PostFormValue("password2") != password {
		fail(http.StatusBadRequest, msgPasswordDiffer)
		return
	}
	creds, err := auth.NewCredentials(password)
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	if err == nil {
		err = s.opts.ChangePassword(ctx, sess.number, creds)
	}
	if err != nil {
		s.opts.Log.Error("account page: changing the password", "number", sess.number, "err", err)
		fail(http.StatusServiceUnavailable, msgUnavailable)
		return
	}
	// The new password ended every session of the account, this one
	// too; the visitor who set it stays logged in under the new one.
	acct, err := s.opts.Accounts.Account(ctx, sess.number)
	if err != nil {
		s.opts.Log.Error("account page: reading the account after a password change", "number", sess.number, "err", err)
		clearSessionCookie(w, s.secure(r))
		s.render(w, http.StatusOK, "message", &page{Title: "Password changed", Message: "Your password is changed. Please log in again."})
		return
	}
	s.startSession(w, r, sess.number, acct.Generation)
	http.Redirect(w, r, "/account?done=password", http.StatusSeeOther)
}

func (s *site) logout(w http.ResponseWriter, r *http.Request) {
	sess, ok, _ := s.session(r)
	if ok && !s.keys.checkForm(r, sess.number) {
		s.expired(w, r)
		return
	}
	clearSessionCookie(w, s.secure(r))
	http.Redirect(w, r, "/?bye=1", http.StatusSeeOther)
}

// ipLockoutKey is the key of a client IP in Options.IPLockout, the one
// xmppd counts its SASL failures under.
func ipLockoutKey(ip string) auth.Number { return auth.Number("ip:" + ip) }

// numberMessage is the friendly text for a number Parse refused.
func numberMessage(err error) string {
	if errors.Is(err, auth.ErrCannotReceiveSMS) {
		return msgCannotReceive
	}
	return msgBadNumber
}

// checkPassword returns why password cannot be used, or "". Printable
// ASCII only: the credentials are derived without SASLprep, and a client
// that applies it must arrive at the same bytes.
func checkPassword(password string) string {
	if len(password) < auth.MinPasswordLength {
		return fmt.Sprintf(msgPasswordShort, auth.MinPasswordLength)
	}
	if len(password) > maxPassword {
		return fmt.Sprintf(msgPasswordLong, maxPassword)
	}
	for i := 0; i < len(password); i++ {
		if c := password[i]; c < ' ' || c > '~' {
			return msgPasswordChars
		}
	}
	return ""
}

// checkName returns why a display name cannot be used, or "".
func checkName(name string) string {
	if !utf8.ValidString(name) {
		return msgNameChars
	}
	if utf8.RuneCountInString(name) > maxName {
		return fmt.Sprintf(msgNameLong, maxName)
	}
	for _, c := range name {
		// Controls and non-characters are not allowed in XML.
		if unicode.IsControl(c) || c == 0xFFFE || c == 0xFFFF || c == utf8.RuneError {
			return msgNameChars
		}
	}
	return ""
}

// breakAfter returns a template function that escapes s and lets a
// narrow screen wrap it only after sep: a JID after its "@", a
// fingerprint between bytes.
func breakAfter(sep string) func(string) template.HTML {
	return func(s string) template.HTML {
		parts := strings.Split(s, sep)
		for i, p := range parts {
			parts[i] = template.HTMLEscapeString(p)
		}
		return template.HTML(strings.Join(parts, template.HTMLEscapeString(sep)+"<wbr>"))
	}
}

// prettyNumber writes n the international way people read it,
// "+82 10-1234-5678".
func prettyNumber(n auth.Number) string {
	pn, err := phonenumbers.Parse(string(n), "")
	if err != nil {
		return string(n)
	}
	return phonenumbers.Format(pn, phonenumbers.INTERNATIONAL)
}

// humanDuration says d the way a person would, rounded up: "45 seconds",
// "2 minutes", "1 hour".
func humanDuration(d time.Duration) string {
	unit := func(n int64, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %ss", n, one)
	}
	switch {
	case d < time.Minute:
		return unit(max(1, int64((d+time.Second-1)/time.Second)), "second")
	case d < time.Hour:
		return unit(int64((d+time.Minute-1)/time.Minute), "minute")
	default:
		return unit(int64((d+time.Hour-1)/time.Hour), "hour")
	}
}
