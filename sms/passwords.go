package sms

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"dialtone/auth"
)

// DefaultPasswordLength is the length of the passwords Passwords makes
// when Length is zero.
const DefaultPasswordLength = 12

// PasswordStore is what Passwords needs from the store. Implemented by
// package storage.
type PasswordStore interface {
	// Account returns the stored account for n, or auth.ErrNotFound.
	Account(ctx context.Context, n auth.Number) (auth.Account, error)
	// IssuePassword does in one transaction: set the credentials of n
	// (creating the account unclaimed when absent; generation+1; any
	// pending password dropped), mark its password delivered, set its
	// touched time to now when it is unclaimed, and enqueue p with its log
	// row. It reports whether the account was created.
	IssuePassword(ctx context.Context, n auth.Number, c auth.Credentials, p Pending) (created bool, err error)
	// IssuePendingPassword does in one transaction, if n is still at
	// generation (else ErrStale): make pending its pending password (the
	// current one stays), mark its password delivered, set its touched
	// time to now when it is unclaimed, and enqueue p with its log row.
	IssuePendingPassword(ctx context.Context, n auth.Number, generation int64, pending auth.Credentials, p Pending) error
	// QueuedTimes returns when SMS of purpose were queued for to since
	// the given time, oldest first.
	QueuedTimes(ctx context.Context, to, purpose string, since time.Time) ([]time.Time, error)
}

// Passwords texts passwords (SPEC.md "Accounts", "HTTP"): Request for the
// API and the home page, with the limits, as a pending password that does
// not lock the owner out; Issue for xmppctl, without them, replacing the
// password at once. Set the fields before first use; a zero limit is no
// limit. It is safe for concurrent use.
type Passwords struct {
	Domain string             // the XMPP domain, named in the SMS
	Parser *auth.NumberParser // reads the number of a Request
	Store  PasswordStore
	Key    []byte // seals the SMS in the outbox (KeySize bytes)
	Length int    // of the passwords; 0: DefaultPasswordLength

	Interval      time.Duration // XMPPD_PASSWORD_SMS_INTERVAL, per number
	PerDay        int           // XMPPD_PASSWORD_SMS_PER_DAY, per number
	PerIPHour     int           // XMPPD_PASSWORD_REQUESTS_PER_IP_HOUR
	PerPrefixHour int           // XMPPD_PASSWORD_REQUESTS_PER_PREFIX_HOUR

	// RecycleAfter: a Request for an account whose last login (or, never
	// logged in, its creation) is older than this calls Recycle first
	// (XMPPD_RECYCLE_AFTER; 0: never).
	RecycleAfter time.Duration
	// Recycle starts an account afresh for a new owner of the number: the
	// contacts' subscriptions cancelled, everything stored removed.
	Recycle func(ctx context.Context, n auth.Number) error
	// OnIssued is called after a new password replaced the account's
	// password at once (the daemon closes the account's sessions); not
	// for a pending one. Nil: nothing.
	OnIssued func(ctx context.Context, n auth.Number)
	// Wake nudges the sending worker after an SMS was queued; nil: nothing.
	Wake func()
	// Links adds a one-tap login link to each SMS; nil: none.
	Links *LoginLinks
	// Throttled counts refusals by reason (NewThrottledCounter); nil: not counted.
	Throttled *prometheus.CounterVec
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Log gets one line per refusal and recycling; nil: slog.Default().
	Log *slog.Logger
	// Shared, when set, keeps the per-IP, per-prefix and per-installation
	// counts in the store, so that the nodes of a cluster count them
	// together; nil: in memory. (The per-number limits are always read
	// from the SMS log in the store.)
	Shared auth.SharedLimits

	once     sync.Once
	ips      *window
	prefixes *window
	seed     maphash.Seed
	// numbers serialises the check and the issue of one number's password
	// (striped: a collision only makes two numbers wait for each other).
	numbers [64]sync.Mutex
}

func (p *Passwords) init() {
	p.once.Do(func() {
		p.ips = &window{span: hour, limit: p.PerIPHour, shared: p.Shared, kind: "password per ip"}
		p.prefixes = &window{span: hour, limit: p.PerPrefixHour, shared: p.Shared, kind: "password per prefix"}
		p.seed = maphash.MakeSeed()
	})
}

func (p *Passwords) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Passwords) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.Default()
}

// Request texts a fresh password to the number phone (any accepted form),
// asked for from the client address ip. The password of an existing
// account stays valid until the fresh one first logs in (SPEC.md "HTTP"):
// the fresh one is pending, and replaces any pending before it. A new
// account, or one recycled, gets the fresh password at once. An invalid
// number is an error that matches auth.ErrInvalidNumber (and
// auth.ErrCannotReceiveSMS for numbers that take no SMS); a request over a
// limit is a *ThrottledError. Every request for a valid number counts
// towards the per-IP limit, whatever becomes of it (except that a request
// refused by that limit itself is not counted, so its RetryAfter holds).
// An account that has not been logged in to for RecycleAfter is recycled
// first.
func (p *Passwords) Request(ctx context.Context, phone, ip string) error {
	p.init()
	n, now, unlock, err := p.admit(ctx, phone, ip, p.refuse)
	if err != nil {
		return err
	}
	defer unlock()
	prefix := prefixKey(string(n))
	if ok, wait, err := p.prefixes.take(ctx, prefix, now); err != nil {
		return err
	} else if !ok {
		return p.refuse(ctx, n, ip, ReasonPerPrefix, wait)
	}
	if err := p.request(ctx, n, now); err != nil {
		p.prefixes.undo(ctx, prefix, now)
		return err
	}
	return nil
}

// request gives n its fresh password, past the limits: pending beside the
// current one of an account, unless the account was just recycled.
func (p *Passwords) request(ctx context.Context, n auth.Number, now time.Time) error {
	for attempt := 0; ; attempt++ {
		a, err := p.Store.Account(ctx, n)
		found := err == nil
		if err != nil && !errors.Is(err, auth.ErrNotFound) {
			return fmt.Errorf("sms: account %s: %w", n, err)
		}
		if found && p.recyclable(a, now) {
			if err := p.Recycle(ctx, n); err != nil {
				return fmt.Errorf("sms: recycling %s: %w", n, err)
			}
			p.log().LogAttrs(ctx, slog.LevelInfo, "account recycled for a password request",
				slog.String("number", string(n)), slog.Time("last_login", a.LastLogin), slog.Time("created", a.Created))
			found = false // starts afresh: the new password replaces the old at once
		}
		if !found || !a.Credentials.Usable() {
			_, err := p.issue(ctx, n, now)
			return err
		}
		err = p.issuePending(ctx, a, now)
		if errors.Is(err, ErrStale) && attempt < 3 {
			continue // the password changed meanwhile: derive alike the new one
		}
		return err
	}
}

// Issue gives n a fresh password and queues the SMS that texts it, without
// the limits and without recycling (xmppctl: SPEC.md says the limits do
// not apply to it). It returns the password, for the caller to forget.
func (p *Passwords) Issue(ctx context.Context, n auth.Number) (password string, err error) {
	return p.issue(ctx, n, p.now())
}

func (p *Passwords) issue(ctx context.Context, n auth.Number, now time.Time) (string, error) {
	password, err := p.generate()
	if err != nil {
		return "", err
	}
	creds, err := auth.NewCredentials(password)
	if err != nil {
		return "", err
	}
	m, err := p.passwordSMS(ctx, n, password, creds, now)
	if err != nil {
		return "", err
	}
	if _, err := p.Store.IssuePassword(ctx, n, creds, m); err != nil {
		return "", fmt.Errorf("sms: new password for %s: %w", n, err)
	}
	if p.OnIssued != nil {
		p.OnIssued(ctx, n)
	}
	if p.Wake != nil {
		p.Wake()
	}
	return password, nil
}

// issuePending texts a.Number a fresh password, pending beside the current
// one; ErrStale when a's credentials changed meanwhile.
func (p *Passwords) issuePending(ctx context.Context, a auth.Account, now time.Time) error {
	password, err := p.generate()
	if err != nil {
		return err
	}
	pending, err := auth.NewCredentialsLike(password, a.Credentials)
	if err != nil {
		return err
	}
	m, err := p.passwordSMS(ctx, a.Number, password, pending, now)
	if err != nil {
		return err
	}
	if err := p.Store.IssuePendingPassword(ctx, a.Number, a.Generation, pending, m); err != nil {
		return fmt.Errorf("sms: new password for %s: %w", a.Number, err)
	}
	if p.Wake != nil {
		p.Wake()
	}
	return nil
}

// generate makes a password.
func (p *Passwords) generate() (string, error) {
	length := p.Length
	if length == 0 {
		length = DefaultPasswordLength
	}
	return auth.GeneratePassword(length)
}

// passwordSMS is the SMS that texts n its password, whose credentials are
// c, with the one-tap link for it (if links are on), sealed.
func (p *Passwords) passwordSMS(ctx context.Context, n auth.Number, password string, c auth.Credentials, now time.Time) (Pending, error) {
	link, err := p.Links.New(ctx, n, c, now)
	if err != nil {
		return Pending{}, err
	}
	body, err := Seal(p.Key, []byte(PasswordLinkText(p.Domain, password, link)))
	if err != nil {
		return Pending{}, err
	}
	return Pending{
		ID:          rand.Text(),
		To:          string(n),
		Purpose:     PurposePassword,
		Body:        body,
		Sealed:      true,
		Created:     now,
		NextAttempt: now,
	}, nil
}

// recyclable reports whether a is to start afresh: its owner has been away
// for RecycleAfter, and the number may have a new owner (SPEC.md
// "Accounts").
func (p *Passwords) recyclable(a auth.Account, now time.Time) bool {
	if p.RecycleAfter <= 0 || p.Recycle == nil {
		return false
	}
	last := a.LastLogin
	if last.IsZero() {
		last = a.Created
	}
	return now.Sub(last) > p.RecycleAfter
}

// refuse counts and logs a refusal and returns its error.
func (p *Passwords) refuse(ctx context.Context, n auth.Number, ip, reason string, wait time.Duration) error {
	if p.Throttled != nil {
		p.Throttled.WithLabelValues(reason).Inc()
	}
	p.log().LogAttrs(ctx, slog.LevelInfo, "password request throttled",
		slog.String("number", string(n)), slog.String("ip", ip), slog.String("reason", reason), slog.Duration("retry_after", wait))
	return &ThrottledError{RetryAfter: wait, Reason: reason}
}
