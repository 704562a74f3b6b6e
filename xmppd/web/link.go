package web

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"time"

	"dialtone/auth"
	"dialtone/sms"
)

// One-tap login links (SPEC.md "Web client and one-tap login"): every
// password SMS carries XMPPD_PUBLIC_URL/l/TOKEN (package sms makes them).
// GET shows a page that posts itself at once (a link preview or a
// scanner that fetches the URL spends nothing); POST spends the link and
// logs the browser in, into the web client. A link works once, until it
// expires, and only while the password texted with it is the account's;
// a pending one is made current by it, as by a login with it. Any other
// link gets a page that says why and offers a new password.

// LinkStore is where one-tap links are kept. Implemented by package
// storage.
type LinkStore interface {
	// LoginLink returns the link stored under hash, used or not, or
	// auth.ErrNotFound.
	LoginLink(ctx context.Context, hash string) (auth.LoginLink, error)
	// UseLoginLink marks the link under hash used at now if it was
	// neither used nor expired, and returns it; auth.ErrNotFound otherwise.
	UseLoginLink(ctx context.Context, hash string, now time.Time) (auth.LoginLink, error)
}

// Why a link does not log in.
type linkFailure int

const (
	linkUnknown    linkFailure = iota + 1 // malformed, or never made here (or forgotten)
	linkUsed                              // it logged a browser in already
	linkExpired                           // XMPPD_LOGIN_LINK_TTL passed
	linkSuperseded                        // a newer password replaced its one
)

// linkTexts are the failure pages' titles and messages.
var linkTexts = map[linkFailure][2]string{
	linkUnknown:    {"This link does not work", "This login link is not valid. Check that you opened the whole link from the SMS, or get a new password."},
	linkUsed:       {"This link was used already", "Each login link works once, and this one has logged in already. Log in with your number and password, or get a new password."},
	linkExpired:    {"This link has expired", "Login links work for a limited time, and this one is too old. Log in with your number and password, or get a new password."},
	linkSuperseded: {"This link is out of date", "A newer password was sent to this number since, so this link no longer works. Use the newest SMS, or get a new password."},
}

var (
	//go:embed link.html
	linkHTML string

	_ = template.Must(pages.Parse(linkHTML))
)

// linkScript posts the link page's form as soon as it is shown; allowed
// by its hash, the page's only script.
const linkScript = `document.getElementById("link-form").submit();`

var linkCSP = "default-src 'none'; style-src '" + styleHash() + "'; script-src '" + scriptHash(linkScript) + "'; " +
	"img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func scriptHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

func (s *site) registerLinks(mux *http.ServeMux) {
	if s.opts.Links == nil {
		return
	}
	handle := func(pattern string, h func(http.ResponseWriter, *http.Request)) {
		mux.Handle(pattern, secure(s.configured(h)))
	}
	handle("GET "+sms.LoginLinkPath+"{token}", s.openLink)
	handle("POST "+sms.LoginLinkPath+"{token}", s.useLink)
}

// linkTarget is where a link logs in to: the web client, or the account
// page when there is none.
func (s *site) linkTarget() string {
	if s.chatEnabled() {
		return chatPath
	}
	return "/account"
}

// linkState tells why l cannot log in at now (0 when it can), with the
// account it is for.
func (s *site) linkState(ctx context.Context, l auth.LoginLink, now time.Time) (linkFailure, auth.Account, error) {
	switch {
	case !l.Used.IsZero():
		return linkUsed, auth.Account{}, nil
	case !now.Before(l.Expires):
		return linkExpired, auth.Account{}, nil
	}
	acct, err := s.opts.Accounts.Account(ctx, l.Number)
	if errors.Is(err, auth.ErrNotFound) {
		return linkSuperseded, acct, nil // released or deleted since
	}
	if err != nil {
		return 0, acct, err
	}
	if acct.LinkPassword(l.PasswordTag) == auth.NoMatch {
		return linkSuperseded, acct, nil
	}
	return 0, acct, nil
}

// openLink serves GET /l/TOKEN: the page that logs in with the link, or
// why it cannot.
func (s *site) openLink(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	hash, ok := auth.LinkTokenHash(token)
	if !ok {
		s.linkFailed(w, r, linkUnknown, "")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	l, err := s.opts.Links.LoginLink(ctx, hash)
	if errors.Is(err, auth.ErrNotFound) {
		s.linkFailed(w, r, linkUnknown, "")
		return
	}
	var why linkFailure
	if err == nil {
		why, _, err = s.linkState(ctx, l, s.opts.Now())
	}
	if err != nil {
		s.linkUnavailable(w, err)
		return
	}
	if why != 0 {
		s.linkFailed(w, r, why, l.Number)
		return
	}
	p := s.homePage(w, r)
	p.Title, p.SentTo, p.LinkToken, p.Script = "Opening your chat", prettyNumber(l.Number), token, template.JS(linkScript)
	w.Header().Set("Content-Security-Policy", linkCSP)
	s.render(w, http.StatusOK, "link", p)
}

// useLink serves POST /l/TOKEN: it spends the link and logs the browser
// in (a web session for the password texted with it), then on to the web
// client.
func (s *site) useLink(w http.ResponseWriter, r *http.Request) {
	if !s.keys.checkForm(r, "") {
		s.expired(w, r)
		return
	}
	hash, ok := auth.LinkTokenHash(r.PathValue("token"))
	if !ok {
		s.linkFailed(w, r, linkUnknown, "")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	now := s.opts.Now()
	l, err := s.opts.Links.UseLoginLink(ctx, hash, now)
	if errors.Is(err, auth.ErrNotFound) {
		// Used, expired or unknown: say which.
		why := linkUnknown
		if l, err = s.opts.Links.LoginLink(ctx, hash); err == nil {
			if why, _, err = s.linkState(ctx, l, now); why == 0 {
				why = linkUsed // by a post that came first
			}
		}
		if err != nil && !errors.Is(err, auth.ErrNotFound) {
			s.linkUnavailable(w, err)
			return
		}
		s.linkFailed(w, r, why, l.Number)
		return
	}
	if err != nil {
		s.linkUnavailable(w, err)
		return
	}
	// Spent now, whatever follows: a link that fails here fails for good.
	why, acct, err := s.linkState(ctx, auth.LoginLink{Number: l.Number, PasswordTag: l.PasswordTag, Expires: l.Expires}, now)
	if err != nil {
		s.linkUnavailable(w, err)
		return
	}
	gen := acct.Generation
	if why == 0 && acct.LinkPassword(l.PasswordTag) == auth.PendingPassword {
		// Like a login with the requested password: it becomes the only one.
		if s.opts.PromotePending == nil {
			why = linkSuperseded
		} else if gen, err = s.opts.PromotePending(ctx, l.Number, acct.Pending); errors.Is(err, auth.ErrNotFound) {
			why = linkSuperseded // replaced meanwhile by a newer one
		} else if err != nil {
			s.linkUnavailable(w, err)
			return
		}
	}
	if why != 0 {
		s.linkFailed(w, r, why, l.Number)
		return
	}
	s.opts.Lockout.Succeed(l.Number)
	if err := s.opts.Accounts.RecordLogin(ctx, l.Number, now); err != nil {
		s.opts.Log.Warn("login link: recording the login", "number", l.Number, "err", err)
	}
	s.opts.Log.Info("logged in with a login link", "number", string(l.Number))
	s.startSession(w, r, l.Number, gen)
	http.Redirect(w, r, s.linkTarget(), http.StatusSeeOther)
}

// linkFailed answers a link that does not log in: why, and a form that
// texts a new password to its number (when known).
func (s *site) linkFailed(w http.ResponseWriter, r *http.Request, why linkFailure, n auth.Number) {
	code := http.StatusGone
	if why == linkUnknown {
		code = http.StatusNotFound
	}
	p := s.homePage(w, r)
	p.Title, p.Message, p.Failed = linkTexts[why][0], linkTexts[why][1], true
	if n != "" {
		p.NewPhone = prettyNumber(n)
	}
	s.render(w, code, "linkfailed", p)
}

func (s *site) linkUnavailable(w http.ResponseWriter, err error) {
	s.opts.Log.Error("login link", "err", err)
	s.render(w, http.StatusServiceUnavailable, "message", &page{Title: "Please try again", Message: msgUnavailable, Failed: true})
}

// writeJSONObject answers with v as JSON.
func writeJSONObject(w http.ResponseWriter, code int, v map[string]string) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
