// Package auth owns phone numbers as addresses, accounts and their states,
// passwords, SCRAM credentials, the server side of SASL and login lockout.
package auth

import (
	"context"
	"crypto/sha1"
	"crypto/sha512"
	"errors"
	"time"
)

// Number is a phone number in canonical E.164 form with the leading plus
// sign, e.g. "+821012345678". It is also the localpart of the account's JID
// and its SASL username. Values of this type are only made by NumberParser
// (or converted from strings the store gave back), so they are always valid.
type Number string

// String returns the canonical form.
func (n Number) String() string { return string(n) }

// State is the life-cycle state of a stored account (SPEC.md "Accounts").
// A latent number has no stored account at all, so it has no State.
type State string

// Account states.
const (
	StateUnclaimed State = "unclaimed" // made by a message, a password request or an import; never logged in
	StateActive    State = "active"    // has logged in at least once
)

// ScramKeys are the salted SCRAM credentials for one hash function
// (RFC 5802 §3): what the server keeps instead of a password.
type ScramKeys struct {
	Salt       []byte
	Iterations int
	StoredKey  []byte
	ServerKey  []byte
}

// Credentials hold the SCRAM keys for every hash the server offers.
// SHA512 is zero for a password set before SHA-512 keys were kept: such an
// account logs in with SHA-1 and SHA-256 only until its next password.
type Credentials struct {
	SHA1   ScramKeys
	SHA256 ScramKeys
	SHA512 ScramKeys
}

// keys returns the keys of the hash whose output is size bytes.
func (c Credentials) keys(size int) ScramKeys {
	switch size {
	case sha1.Size:
		return c.SHA1
	case sha512.Size:
		return c.SHA512
	}
	return c.SHA256
}

// Account is a stored (unclaimed or active) account.
type Account struct {
	Number      Number
	State       State
	Created     time.Time
	LastLogin   time.Time // zero when it never logged in
	Credentials Credentials
	// Pending holds the keys of a password texted on request and not yet
	// used to log in (SPEC.md "HTTP"): until it is, Credentials keep
	// working. Its keys share the salts and iteration counts of
	// Credentials, so that one SCRAM exchange, whose salt is sent before
	// the client proves anything, can check both. Zero when none.
	Pending Credentials
	// Generation grows by one with every new password, so that sessions
	// that authenticated with an older password can be told apart.
	Generation int64
}

// ErrNotFound is returned by stores when the thing asked for does not exist.
var ErrNotFound = errors.New("not found")

// Accounts is the account store that auth and the server use. Implemented
// by package storage for SQLite and PostgreSQL.
type Accounts interface {
	// Account returns the stored account for n, or ErrNotFound.
	Account(ctx context.Context, n Number) (Account, error)
	// SetCredentials replaces the credentials of n, creating the account in
	// state unclaimed when it does not exist, drops its pending password,
	// and increments its Generation. It reports whether the account was
	// created.
	SetCredentials(ctx context.Context, n Number, c Credentials) (created bool, err error)
	// RecordLogin marks a successful login at t: the state becomes active
	// and LastLogin is set. ErrNotFound if there is no account.
	RecordLogin(ctx context.Context, n Number, t time.Time) error
	// DeleteAccount removes the account and everything stored for it
	// (roster, vCard, private data, blocklist, offline messages).
	// ErrNotFound if there is no account.
	DeleteAccount(ctx context.Context, n Number) error
	// ListAccounts returns stored accounts ordered by number; state "" means all.
	ListAccounts(ctx context.Context, state State) ([]Account, error)
}
