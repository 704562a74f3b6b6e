package web

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"time"

	"dialtone/auth"
	"dialtone/internal/forwarded"
	"dialtone/internal/webclient"
)

// The web chat client (SPEC.md "Web client and one-tap login"): GET /chat
// is Converse.js, embedded in the binary and set up for this server; its
// files are under /chat/assets/. A browser with a web session (a login on
// the home page, or a one-tap link) logs in without a password: the page
// asks POST /chat/credentials for a ticket (auth.Ticket), a random secret
// that the client gives as its SASL password, once, within
// auth.TicketTTL, and only while the session's password is the account's.
// The password itself never reaches the page, a URL or the browser's
// storage. Without a session, Converse's login form asks for the number
// (any accepted form: GET /chat/number makes it the JID) and password.

const (
	chatPath        = "/chat"
	chatAssetsPath  = "/chat/assets"
	chatNumberPath  = "/chat/number"
	chatTicketPath  = "/chat/credentials"
	chatCSRFHeader  = "X-CSRF-Token"
	maxTypedNumber  = 64
	chatLogoutPath  = "/logout"
	chatMsgNoNumber = "Enter your phone number."
)

// TicketStore keeps the web client's tickets. Implemented by package
// storage; auth.SASL reads and spends them.
type TicketStore interface {
	// AddTicket stores t, made at now.
	AddTicket(ctx context.Context, t auth.Ticket, now time.Time) error
}

var (
	//go:embed chat.html
	chatHTML string

	chatPage = template.Must(template.New("chat").Parse(chatHTML))
)

// chatConfig is what dialtone.js reads from the page (JSON).
type chatConfig struct {
	Domain         string `json:"domain"`
	WebSocketURL   string `json:"websocketURL"`
	Assets         string `json:"assets"`
	NumberURL      string `json:"numberURL"`
	CredentialsURL string `json:"credentialsURL"`
	LogoutURL      string `json:"logoutURL"`
	// Session: the browser has a web session, whose JID and form token
	// follow, so the client logs in with tickets.
	Session bool   `json:"session"`
	JID     string `json:"jid,omitempty"`
	CSRF    string `json:"csrf,omitempty"`
}

// chatEnabled reports whether /chat is served: XMPPD_WEB_CLIENT, and a
// WebSocket for it to connect to.
func (s *site) chatEnabled() bool {
	return s.opts.WebClient && s.opts.WebSocket != nil && s.public != nil && s.public.Host != ""
}

func (s *site) registerChat(mux *http.ServeMux) {
	if !s.chatEnabled() {
		return
	}
	handle := func(pattern string, h func(http.ResponseWriter, *http.Request)) {
		mux.Handle(pattern, secure(s.configured(h)))
	}
	handle("GET "+chatPath, s.chat)
	handle("GET "+chatNumberPath, s.chatNumber)
	handle("POST "+chatTicketPath, s.chatTicket)
	// Immutable files: cached, not behind the pages' no-store.
	mux.Handle("GET "+chatAssetsPath+"/", webclient.Handler(chatAssetsPath))
}

// chatCSP allows only this server: its scripts and styles, its fonts and
// images (data: and blob: for avatars and previews that the client makes),
// and the WebSocket it connects to. Converse sets style attributes, which
// 'unsafe-inline' in style-src allows; no inline script runs.
func chatCSP(webSocket string) string {
	return "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; " +
		"font-src 'self'; media-src 'self' data: blob:; connect-src 'self' " + webSocket + "; manifest-src 'self'; " +
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}

func (s *site) chat(w http.ResponseWriter, r *http.Request) {
	ws := webSocketURL(s.public, forwarded.ClientOf(r).HTTPS)
	cfg := chatConfig{
		Domain:         s.opts.Domain,
		WebSocketURL:   ws,
		Assets:         strings.TrimSuffix(webclient.Path(chatAssetsPath, ""), "/"),
		NumberURL:      chatNumberPath,
		CredentialsURL: chatTicketPath,
		LogoutURL:      chatLogoutPath,
	}
	sess, ok, err := s.session(r)
	if err != nil {
		s.opts.Log.Error("chat: reading the account", "err", err)
		s.render(w, http.StatusServiceUnavailable, "message", &page{Title: "Please try again", Message: msgUnavailable, Failed: true})
		return
	}
	if ok && s.opts.Tickets != nil {
		cfg.Session = true
		cfg.JID = string(sess.number) + "@" + s.opts.Domain
		cfg.CSRF = s.keys.formToken(formCookieValue(w, r, s.opts.Now(), s.secure(r)), sess.number)
	}
	w.Header().Set("Content-Security-Policy", chatCSP(ws))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	data := struct {
		Domain string
		Assets string
		Config chatConfig
	}{s.opts.Domain, cfg.Assets, cfg}
	if err := chatPage.Execute(w, data); err != nil {
		s.opts.Log.Error("rendering the chat page", "err", err)
	}
}

// chatNumber answers GET /chat/number?phone=TYPED with the JID of the
// number as typed, {"jid":"+E164@DOMAIN"}, or 400 {"error":"…"} with the
// text the home page would show. It says nothing about accounts.
func (s *site) chatNumber(w http.ResponseWriter, r *http.Request) {
	phone := strings.TrimSpace(r.URL.Query().Get("phone"))
	if phone == "" || len(phone) > maxTypedNumber {
		writeJSON(w, http.StatusBadRequest, "error", chatMsgNoNumber)
		return
	}
	n, err := s.opts.Parser.Parse(phone)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, "error", numberMessage(err))
		return
	}
	writeJSON(w, http.StatusOK, "jid", string(n)+"@"+s.opts.Domain)
}

// chatTicket answers POST /chat/credentials for a browser with a web
// session and the session's form token in X-CSRF-Token: a fresh ticket,
// {"jid": …, "password": SECRET}. 401 without a session (the page shows
// the login form), 403 without the token.
func (s *site) chatTicket(w http.ResponseWriter, r *http.Request) {
	if s.opts.Tickets == nil {
		http.NotFound(w, r)
		return
	}
	sess, ok, err := s.session(r)
	if err != nil {
		s.opts.Log.Error("chat ticket: reading the account", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, "error", apiUnavailable)
		return
	}
	if !ok {
		writeJSON(w, http.StatusUnauthorized, "error", "not logged in")
		return
	}
	c, err := r.Cookie(formCookie)
	want := ""
	if err == nil && c.Value != "" {
		want = s.keys.formToken(c.Value, sess.number)
	}
	if got := r.Header.Get(chatCSRFHeader); want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		writeJSON(w, http.StatusForbidden, "error", "form token missing or wrong")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	acct, err := s.opts.Accounts.Account(ctx, sess.number)
	if err == nil && acct.Generation != sess.generation {
		err = auth.ErrNotFound // changed since the session checked it
	}
	var secret string
	var t auth.Ticket
	if err == nil {
		now := s.opts.Now()
		if secret, t, err = auth.NewTicket(acct, now.Add(auth.TicketTTL)); err == nil {
			err = s.opts.Tickets.AddTicket(ctx, t, now)
		}
	}
	switch {
	case errors.Is(err, auth.ErrNotFound):
		writeJSON(w, http.StatusUnauthorized, "error", "not logged in")
		return
	case err != nil:
		s.opts.Log.Error("chat ticket", "number", sess.number, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, "error", apiUnavailable)
		return
	}
	writeJSONObject(w, http.StatusOK, map[string]string{"jid": string(sess.number) + "@" + s.opts.Domain, "password": secret})
}
