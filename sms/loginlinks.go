package sms

import (
	"context"
	"errors"
	"fmt"
	"time"

	"dialtone/auth"
)

// LoginLinkPath is where a one-tap link points under the public URL:
// XMPPD_PUBLIC_URL + LoginLinkPath + TOKEN.
const LoginLinkPath = "/l/"

// LoginLinkStore keeps one-tap links. Implemented by package storage.
type LoginLinkStore interface {
	// CreateLoginLink stores l.
	CreateLoginLink(ctx context.Context, l auth.LoginLink) error
}

// LoginLinks makes the one-tap login links that every SMS with a password
// carries (SPEC.md "Web client and one-tap login"): opening one logs the
// browser into the web client, once, for TTL, and only while the password
// texted with it is the account's. A nil *LoginLinks, or a zero TTL
// (XMPPD_LOGIN_LINK_TTL=0), makes none, and the texts stay as they were.
type LoginLinks struct {
	// BaseURL is XMPPD_PUBLIC_URL, without a trailing slash.
	BaseURL string
	// TTL is how long a link works.
	TTL   time.Duration
	Store LoginLinkStore
}

// NewLoginLinks returns the links of XMPPD_PUBLIC_URL baseURL and
// XMPPD_LOGIN_LINK_TTL ttl, kept in store; nil when ttl is 0 (no links).
func NewLoginLinks(baseURL string, ttl time.Duration, store LoginLinkStore) *LoginLinks {
	if ttl <= 0 {
		return nil
	}
	return &LoginLinks{BaseURL: baseURL, TTL: ttl, Store: store}
}

// New stores a link that logs n in while the password whose credentials
// are c is n's, texted at now, and returns its URL; "" when links are off.
func (l *LoginLinks) New(ctx context.Context, n auth.Number, c auth.Credentials, now time.Time) (string, error) {
	if l == nil || l.TTL <= 0 {
		return "", nil
	}
	tag := auth.PasswordTag(c)
	if tag == nil || l.Store == nil || l.BaseURL == "" {
		return "", errors.New("sms: login link: no password, store or base URL")
	}
	token, hash := auth.NewLinkToken()
	err := l.Store.CreateLoginLink(ctx, auth.LoginLink{Hash: hash, Number: n, PasswordTag: tag, Created: now, Expires: now.Add(l.TTL)})
	if err != nil {
		return "", fmt.Errorf("sms: login link for %s: %w", n, err)
	}
	return l.BaseURL + LoginLinkPath + token, nil
}
