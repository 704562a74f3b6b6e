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
	// (creating the account unclaimed when absent; generation+1), set
	// its touched time to now when it is unclaimed, and enqueue p with its
	// log row. It reports whether the account was created.
	IssuePassword(ctx context.Context, n auth.Number, c auth.Credentials, p Pending) (created bool, err error)
	// QueuedTimes returns when SMS of purpose were queued for to since
	// the given time, oldest first.
	QueuedTimes(ctx context.Context, to, purpose string, since time.Time) ([]time.Time, error)
}

// Passwords texts passwords (SPEC.md "Accounts", "HTTP"): Request for the
// API and the home page, with the limits; Issue for xmppctl, without them.
// Set the fields before first use; a zero limit is no limit. It is safe for
// concurrent use.
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
	// OnIssued is called after a new password was stored (the daemon
	// closes the account's sessions); nil: nothing.
	OnIssued func(ctx context.Context, n auth.Number)
	// Wake nudges the sending worker after an SMS was queued; nil: nothing.
	Wake func()
	// Throttled counts refusals by reason (NewThrottledCounter); nil: not counted.
	Throttled *prometheus.CounterVec
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Log gets one line per refusal and recycling; nil: slog.Default().
	Log *slog.Logger

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
		p.ips = &window{span: hour, limit: p.PerIPHour}
		p.prefixes = &window{span: hour, limit: p.PerPrefixHour}
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
// asked for from the client address ip, and makes the previous one invalid.
// An invalid number is an error that matches auth.ErrInvalidNumber (and
// auth.ErrCannotReceiveSMS for numbers that take no SMS); a request over a
// limit is a *ThrottledError. Every request for a valid number counts
// towards the per-IP limit, whatever becomes of it (except that a request
// refused by that limit itself is not counted, so its RetryAfter holds).
// An account that has not been logged in to for RecycleAfter is recycled
// first.
func (p *Passwords) Request(ctx context.Context, phone, ip string) error {
	p.init()
	n, err := p.Parser.Parse(phone)
	if err != nil {
		return err
	}
	now := p.now()
	if ok, wait := p.ips.take(ipKey(ip), now); !ok {
		return p.refuse(ctx, n, ip, ReasonPerIP, wait)
	}

	mu := &p.numbers[maphash.String(p.seed, string(n))%uint64(len(p.numbers))]
	mu.Lock()
	defer mu.Unlock()
	if p.Interval > 0 || p.PerDay > 0 {
		queued, err := p.Store.QueuedTimes(ctx, string(n), PurposePassword, now.Add(-max(day, p.Interval)))
		if err != nil {
			return fmt.Errorf("sms: password SMS sent to %s: %w", n, err)
		}
		if reason, wait := numberRetry(queued, now, p.Interval, p.PerDay); reason != "" {
			return p.refuse(ctx, n, ip, reason, wait)
		}
	}
	prefix := prefixKey(string(n))
	if ok, wait := p.prefixes.take(prefix, now); !ok {
		return p.refuse(ctx, n, ip, ReasonPerPrefix, wait)
	}
	if err := p.recycle(ctx, n, now); err != nil {
		p.prefixes.undo(prefix, now)
		return err
	}
	if _, err := p.issue(ctx, n, now); err != nil {
		p.prefixes.undo(prefix, now)
		return err
	}
	return nil
}

// Issue gives n a fresh password and queues the SMS that texts it, without
// the limits and without recycling (xmppctl: SPEC.md says the limits do
// not apply to it). It returns the password, for the caller to forget.
func (p *Passwords) Issue(ctx context.Context, n auth.Number) (password string, err error) {
	return p.issue(ctx, n, p.now())
}

func (p *Passwords) issue(ctx context.Context, n auth.Number, now time.Time) (string, error) {
	length := p.Length
	if length == 0 {
		length = DefaultPasswordLength
	}
	password, err := auth.GeneratePassword(length)
	if err != nil {
		return "", err
	}
	creds, err := auth.NewCredentials(password)
	if err != nil {
		return "", err
	}
	body, err := Seal(p.Key, []byte(PasswordText(p.Domain, password)))
	if err != nil {
		return "", err
	}
	m := Pending{
		ID:          rand.Text(),
		To:          string(n),
		Purpose:     PurposePassword,
		Body:        body,
		Sealed:      true,
		Created:     now,
		NextAttempt: now,
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

// recycle starts n's account afresh when its owner has been away for
// RecycleAfter: the number may have a new owner (SPEC.md "Accounts").
func (p *Passwords) recycle(ctx context.Context, n auth.Number, now time.Time) error {
	if p.RecycleAfter <= 0 || p.Recycle == nil {
		return nil
	}
	a, err := p.Store.Account(ctx, n)
	if errors.Is(err, auth.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sms: account %s: %w", n, err)
	}
	last := a.LastLogin
	if last.IsZero() {
		last = a.Created
	}
	if now.Sub(last) <= p.RecycleAfter {
		return nil
	}
	if err := p.Recycle(ctx, n); err != nil {
		return fmt.Errorf("sms: recycling %s: %w", n, err)
	}
	p.log().LogAttrs(ctx, slog.LevelInfo, "account recycled for a password request",
		slog.String("number", string(n)), slog.Time("last_login", a.LastLogin), slog.Time("created", a.Created))
	return nil
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
