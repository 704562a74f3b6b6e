package sms

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"time"

	"dialtone/auth"
)

// Reasons a PIN request or a PIN is refused, besides those of Passwords;
// label values of sms_password_throttled_total too.
const (
	ReasonPerInstallation = "per_installation" // the app installation's daily cap
	ReasonPINTries        = "pin_tries"        // the PIN had its tries
)

// DefaultPINsPerInstallationDay is SPEC.md's "3 a day per Installation-Id".
const DefaultPINsPerInstallationDay = 3

// ErrNoPIN means that the number has no PIN: none was sent, it expired, or
// it was used (SPEC.md "App API": 404).
var ErrNoPIN = errors.New("sms: no PIN for this number, or it expired")

// ErrWrongPIN means that the PIN is not the one sent (401).
var ErrWrongPIN = errors.New("sms: wrong PIN")

// PINText is the text of a PIN SMS (SPEC.md "App API"). A non-empty
// appHash, the Android SMS Retriever hash of the app, goes on a line of
// its own at the end, where the retriever looks for it; the PIN stays the
// first run of six digits, which is what the app reads out of the text.
func PINText(domain, pin, appHash string) string {
	text := "Your " + domain + " code is: " + pin
	if appHash != "" {
		text += "\n" + appHash
	}
	return text
}

// PINResult is what UsePIN found.
type PINResult int

// The answers of PINStore.UsePIN.
const (
	PINAbsent  PINResult = iota // no PIN, or it expired (and is now gone)
	PINMatched                  // the right PIN; it is gone, it works once
	PINWrong                    // a wrong PIN; one try is used up
	PINSpent                    // the PIN had all its tries; nothing checked
)

// PINCheck is the outcome of one UsePIN.
type PINCheck struct {
	Result PINResult
	// Expires is when the PIN stops working; set for PINWrong and PINSpent.
	Expires time.Time
}

// PINStore is what PINs needs from the store besides the PasswordStore
// of its Passwords. Implemented by package storage.
type PINStore interface {
	// Account returns the stored account for n, or auth.ErrNotFound.
	Account(ctx context.Context, n auth.Number) (auth.Account, error)
	// SavePIN does in one transaction: make hash (auth.PINHash) the PIN
	// of n until expires, with no try used, replacing any PIN before it,
	// and enqueue p, the SMS that texts it, with its log row.
	SavePIN(ctx context.Context, n auth.Number, hash []byte, expires time.Time, p Pending) error
	// UsePIN checks hash against the PIN of n at now, one caller at a
	// time per number: a match removes the PIN; a mismatch uses one of
	// its tries; a PIN that has had tries wrong ones is PINSpent and
	// is not compared; an expired one is removed and PINAbsent.
	UsePIN(ctx context.Context, n auth.Number, hash []byte, tries int, now time.Time) (PINCheck, error)
	// SetDeliveredCredentials replaces the credentials of n, creating the
	// account unclaimed when absent, drops any pending password, moves the
	// generation on and marks the password delivered (no notice replaces
	// it); it reports whether the account was created.
	SetDeliveredCredentials(ctx context.Context, n auth.Number, c auth.Credentials) (created bool, err error)
}

// PINs is the app API (SPEC.md "App API"): Request texts a PIN to a
// number, SetPassword takes it back with the password the app chose. It
// shares with Passwords, whose fields it uses, everything SPEC.md says
// holds for a password SMS as well: the limits (the per-number ones count
// PIN and password SMS together, and so do the in-memory per-IP and
// per-prefix windows), recycling, the domain, the clock and the log.
// Passwords.Key seals the PIN SMS and keys the stored PIN hashes.
// Passwords.OnIssued is called after a PIN set a password. Set the fields
// before first use; it is safe for concurrent use.
type PINs struct {
	Passwords *Passwords
	Store     PINStore
	// PerInstallationDay caps the PINs texted for one app installation
	// (its Installation-Id) in 24 hours; 0 means no cap.
	PerInstallationDay int
	// AppHash is the Android SMS Retriever hash put at the end of a PIN
	// SMS (XMPPD_APP_SMS_HASH); empty: none.
	AppHash string

	once          sync.Once
	installations *window
}

func (s *PINs) init() {
	s.Passwords.init()
	s.once.Do(func() {
		s.installations = &window{span: day, limit: s.PerInstallationDay, shared: s.Passwords.Shared, kind: "pin per installation"}
	})
}

// Request texts a fresh PIN to phone (any accepted form) for the app
// installation installation, asked for from the client address ip. It
// replaces any PIN the number had. Nothing about the account changes until
// the PIN is used, so that knowing a number locks nobody out. Errors are
// those of Passwords.Request: auth.ErrInvalidNumber (and
// auth.ErrRegionNotAllowed, auth.ErrCannotReceiveSMS), or a
// *ThrottledError, ReasonPerInstallation among its reasons.
func (s *PINs) Request(ctx context.Context, phone, ip, installation string) error {
	s.init()
	p := s.Passwords
	n, now, unlock, err := p.admit(ctx, phone, ip, s.refuse)
	if err != nil {
		return err
	}
	defer unlock()
	// Counted only for PINs that go out: a refused request costs the app
	// nothing of its daily three.
	if ok, wait, err := s.installations.take(ctx, installation, now); err != nil {
		return err
	} else if !ok {
		return s.refuse(ctx, n, ip, ReasonPerInstallation, wait)
	}
	prefix := prefixKey(string(n))
	if ok, wait, err := p.prefixes.take(ctx, prefix, now); err != nil || !ok {
		s.installations.undo(ctx, installation, now)
		if err != nil {
			return err
		}
		return s.refuse(ctx, n, ip, ReasonPerPrefix, wait)
	}
	if err := s.issue(ctx, n, now); err != nil {
		s.installations.undo(ctx, installation, now)
		p.prefixes.undo(ctx, prefix, now)
		return err
	}
	return nil
}

// issue stores a new PIN for n and queues its SMS, sealed.
func (s *PINs) issue(ctx context.Context, n auth.Number, now time.Time) error {
	p := s.Passwords
	pin, err := auth.GeneratePIN()
	if err != nil {
		return err
	}
	body, err := Seal(p.Key, []byte(PINText(p.Domain, pin, s.AppHash)))
	if err != nil {
		return err
	}
	m := Pending{
		ID:          rand.Text(),
		To:          string(n),
		Purpose:     PurposePIN,
		Body:        body,
		Sealed:      true,
		Created:     now,
		NextAttempt: now,
	}
	if err := s.Store.SavePIN(ctx, n, auth.PINHash(p.Key, n, pin), now.Add(auth.PINTTL), m); err != nil {
		return fmt.Errorf("sms: new PIN for %s: %w", n, err)
	}
	if p.Wake != nil {
		p.Wake()
	}
	return nil
}

// SetPassword makes password the password of phone's account if pin is
// the PIN texted to it, from the client address ip (for the log), and
// returns the account's canonical number. The
// account is made when there is none, and recycled first when its owner
// has been away for RecycleAfter (the PIN proves the number's present
// holder asks). fresh reports that the account had never logged in (or
// starts afresh): SPEC.md's 201. The password replaces the old one and
// any pending one at once; Passwords.OnIssued closes the sessions.
//
// Errors: auth.ErrInvalidNumber for the number, auth.ErrChosenPassword
// (checked before the PIN, so that no try is used up on it), ErrNoPIN,
// ErrWrongPIN, and a *ThrottledError (ReasonPINTries) once the PIN had
// its tries, with RetryAfter until it expires.
func (s *PINs) SetPassword(ctx context.Context, phone, pin, password, ip string) (n auth.Number, fresh bool, err error) {
	s.init()
	p := s.Passwords
	if n, err = p.Parser.Parse(phone); err != nil {
		return "", false, err
	}
	if err := auth.CheckChosenPassword(password); err != nil {
		return n, false, err
	}
	now := p.now()
	mu := p.numberLock(n)
	mu.Lock()
	defer mu.Unlock()
	check, err := s.Store.UsePIN(ctx, n, auth.PINHash(p.Key, n, pin), auth.PINTries, now)
	if err != nil {
		return n, false, fmt.Errorf("sms: checking the PIN of %s: %w", n, err)
	}
	switch check.Result {
	case PINMatched:
	case PINAbsent:
		return n, false, ErrNoPIN
	case PINSpent:
		return n, false, s.refuse(ctx, n, ip, ReasonPINTries, check.Expires.Sub(now))
	default:
		p.log().LogAttrs(ctx, slog.LevelInfo, "wrong PIN", slog.String("number", string(n)), slog.String("ip", ip))
		return n, false, ErrWrongPIN
	}

	// Derived only now: key derivation costs, and wrong PINs are cheap.
	creds, err := auth.NewCredentials(password)
	if err != nil {
		return n, false, err
	}
	a, err := s.Store.Account(ctx, n)
	found := err == nil
	if err != nil && !errors.Is(err, auth.ErrNotFound) {
		return n, false, fmt.Errorf("sms: account %s: %w", n, err)
	}
	fresh = !found || a.State != auth.StateActive
	if found && p.recyclable(a, now) {
		if err := p.Recycle(ctx, n); err != nil {
			return n, false, fmt.Errorf("sms: recycling %s: %w", n, err)
		}
		p.log().LogAttrs(ctx, slog.LevelInfo, "account recycled for a PIN",
			slog.String("number", string(n)), slog.Time("last_login", a.LastLogin), slog.Time("created", a.Created))
		fresh = true
	}
	if _, err := s.Store.SetDeliveredCredentials(ctx, n, creds); err != nil {
		return n, false, fmt.Errorf("sms: password of %s: %w", n, err)
	}
	if p.OnIssued != nil {
		p.OnIssued(ctx, n)
	}
	p.log().LogAttrs(ctx, slog.LevelInfo, "password set with a PIN",
		slog.String("number", string(n)), slog.Bool("new", fresh), slog.String("ip", ip))
	return n, fresh, nil
}

// refuse counts and logs a refusal of the app API and returns its error.
func (s *PINs) refuse(ctx context.Context, n auth.Number, ip, reason string, wait time.Duration) error {
	p := s.Passwords
	if p.Throttled != nil {
		p.Throttled.WithLabelValues(reason).Inc()
	}
	p.log().LogAttrs(ctx, slog.LevelInfo, "PIN refused",
		slog.String("number", string(n)), slog.String("ip", ip), slog.String("reason", reason), slog.Duration("retry_after", wait))
	return &ThrottledError{RetryAfter: wait, Reason: reason}
}

// admit applies the limits that password and PIN SMS share, up to the
// per-number ones: it reads phone, counts the request against ip's hourly
// budget, takes the number's lock and checks the SMS the number was sent
// (PIN and password SMS together: SPEC.md "App API" says the same limits).
// On success the caller holds the lock until it calls unlock; a refusal
// is the error refuse makes of it.
func (p *Passwords) admit(ctx context.Context, phone, ip string,
	refuse func(ctx context.Context, n auth.Number, ip, reason string, wait time.Duration) error,
) (n auth.Number, now time.Time, unlock func(), err error) {
	if n, err = p.Parser.Parse(phone); err != nil {
		return "", time.Time{}, nil, err
	}
	now = p.now()
	if ok, wait, err := p.ips.take(ctx, ipKey(ip), now); err != nil {
		return "", time.Time{}, nil, err
	} else if !ok {
		return "", time.Time{}, nil, refuse(ctx, n, ip, ReasonPerIP, wait)
	}
	mu := p.numberLock(n)
	mu.Lock()
	if p.Interval > 0 || p.PerDay > 0 {
		queued, err := p.queuedTimes(ctx, n, now.Add(-max(day, p.Interval)))
		if err == nil {
			if reason, wait := numberRetry(queued, now, p.Interval, p.PerDay); reason != "" {
				err = refuse(ctx, n, ip, reason, wait)
			}
		}
		if err != nil {
			mu.Unlock()
			return "", time.Time{}, nil, err
		}
	}
	return n, now, mu.Unlock, nil
}

// numberLock is the mutex that serialises the limits and the changes of
// one number's password and PIN.
func (p *Passwords) numberLock(n auth.Number) *sync.Mutex {
	return &p.numbers[maphash.String(p.seed, string(n))%uint64(len(p.numbers))]
}

// limitedPurposes are the SMS that the per-number password limits count:
// a PIN gives the account to whoever reads it as a password does, and SMS
// pumping is as cheap through either.
var limitedPurposes = []string{PurposePassword, PurposePIN}

// queuedTimes returns when password and PIN SMS were queued for n since
// the given time, oldest first.
func (p *Passwords) queuedTimes(ctx context.Context, n auth.Number, since time.Time) ([]time.Time, error) {
	var all []time.Time
	for _, purpose := range limitedPurposes {
		ts, err := p.Store.QueuedTimes(ctx, string(n), purpose, since)
		if err != nil {
			return nil, fmt.Errorf("sms: %s SMS sent to %s: %w", purpose, n, err)
		}
		all = append(all, ts...)
	}
	slices.SortFunc(all, time.Time.Compare)
	return all, nil
}
