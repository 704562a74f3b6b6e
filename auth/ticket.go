package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// Tickets let the web client log in without the password (SPEC.md "Web
// client and one-tap login": after a login on the home page, or through a
// one-tap link, "Open chat" does not ask again). The web session asks for
// one; the client gives its secret as the SASL password, with SCRAM or
// PLAIN like any password. A ticket is random, works once and for
// TicketTTL, only while the password of the session's generation is the
// account's, and the store keeps only its SCRAM keys, derived with the
// salts of the account's password so that the exchange that checks the
// password (its salt sent before the client proves anything) checks the
// tickets too.

// TicketTTL is how long a ticket works: enough to open a WebSocket and
// log in on a slow phone.
const TicketTTL = 2 * time.Minute

// MaxTickets bounds the unused tickets an account has at once (several
// tabs, reconnects): a store keeps the newest.
const MaxTickets = 8

// ticketBytes is the size of a ticket's secret: 128 random bits.
const ticketBytes = 16

// Ticket is a stored single-use login of the web client.
type Ticket struct {
	// ID names the ticket in the store.
	ID     string
	Number Number
	// Generation is the account's Generation when it was made; the
	// ticket works only while the account is at it.
	Generation int64
	// Keys are the stored and server keys of the secret; their salts and
	// iteration counts are those of the account's credentials.
	Keys    Credentials
	Expires time.Time
}

// TicketStore keeps tickets. Implemented by package storage.
type TicketStore interface {
	// Tickets returns n's tickets that have not expired at now, at most
	// MaxTickets, the newest first.
	Tickets(ctx context.Context, n Number, now time.Time) ([]Ticket, error)
	// UseTicket removes the ticket id of n if it has not expired at now;
	// ErrNotFound when it is gone (used already, or expired).
	UseTicket(ctx context.Context, n Number, id string, now time.Time) error
}

// NewTicket makes a ticket for acct that works until expires. secret is
// what the client logs in with, as its password; t is what to store.
func NewTicket(acct Account, expires time.Time) (secret string, t Ticket, err error) {
	if !acct.Credentials.Usable() {
		return "", Ticket{}, errors.New("auth: a ticket needs an account with a password")
	}
	b := make([]byte, ticketBytes)
	rand.Read(b) // never fails since Go 1.24
	secret = base64.RawURLEncoding.EncodeToString(b)
	keys, err := NewCredentialsLike(secret, acct.Credentials)
	if err != nil {
		return "", Ticket{}, err
	}
	return secret, Ticket{ID: rand.Text(), Number: acct.Number, Generation: acct.Generation, Keys: keys, Expires: expires}, nil
}

// exchangeTicket is a ticket an exchange may accept: its keys for the
// exchange's hash, salted as the account's.
type exchangeTicket struct {
	id   string
	keys ScramKeys
}

func (s *SASL) now() time.Time {
	if s.clock != nil {
		return s.clock()
	}
	return time.Now()
}

// usableTickets returns acct's tickets that can log in to it now, with the keys
// of the hash of size (sha1.Size or sha256.Size). A store failure is a
// temporary-auth-failure.
func (e *Exchange) usableTickets(ctx context.Context, acct Account, size int) ([]exchangeTicket, *Failure) {
	if e.s.Tickets == nil {
		return nil, nil
	}
	list, err := e.s.Tickets.Tickets(ctx, e.user, e.s.now())
	if err != nil {
		return nil, e.fail(ConditionTemporaryAuthFailure, unavailableText,
			fmt.Errorf("auth: tickets of %s: %w", e.user, err))
	}
	base := acct.Credentials.keys(size)
	var out []exchangeTicket
	for _, t := range list[:min(len(list), MaxTickets)] {
		k := t.Keys.keys(size)
		k.Salt, k.Iterations = base.Salt, base.Iterations
		if t.Generation == acct.Generation && usableKeys(k, size) {
			out = append(out, exchangeTicket{id: t.ID, keys: k})
		}
	}
	return out, nil
}

// provesTicket returns the ticket whose keys proof proves. Every ticket is
// checked, so that the time taken does not tell which one it was.
func (e *Exchange) provesTicket(authMessage, proof []byte) (exchangeTicket, bool) {
	var found exchangeTicket
	ok := false
	for _, t := range e.tickets {
		if e.proves(t.keys, authMessage, proof) && !ok {
			found, ok = t, true
		}
	}
	return found, ok
}

// plainTicket reports whether password is the secret of one of acct's
// tickets (SASL PLAIN).
func (e *Exchange) plainTicket(ctx context.Context, acct Account, password string) (exchangeTicket, bool, *Failure) {
	list, f := e.usableTickets(ctx, acct, sha256.Size)
	if f != nil || len(list) == 0 {
		return exchangeTicket{}, false, f
	}
	cur := acct.Credentials.SHA256
	salted := hi(sha256.New, []byte(password), cur.Salt, cur.Iterations)
	stored := storedKey(sha256.New, hmacSum(sha256.New, salted, clientKeyLabel))
	var found exchangeTicket
	ok := false
	for _, t := range list {
		if subtle.ConstantTimeCompare(stored, t.keys.StoredKey) == 1 && !ok {
			found, ok = t, true
		}
	}
	return found, ok, nil
}

// useTicket spends t: a ticket that another login used meanwhile, or that
// expired, fails like a wrong password.
func (e *Exchange) useTicket(ctx context.Context, t exchangeTicket) *Failure {
	err := e.s.Tickets.UseTicket(ctx, e.user, t.id, e.s.now())
	switch {
	case errors.Is(err, ErrNotFound):
		return e.failCounted(ConditionNotAuthorized, notAuthorizedText)
	case err != nil:
		return e.fail(ConditionTemporaryAuthFailure, unavailableText,
			fmt.Errorf("auth: using a ticket of %s: %w", e.user, err))
	}
	return nil
}
