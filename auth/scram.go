package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
)

const (
	// DefaultIterations is the PBKDF2 iteration count of new credentials:
	// the RFC 7677 minimum, which clients of phones still compute quickly.
	DefaultIterations = 4096
	// saltSize is the length of new random salts.
	saltSize = 16
	// maxIterations refuses absurd counts from a damaged store, which would
	// turn one PLAIN login into minutes of CPU.
	maxIterations = 1 << 20
)

var (
	clientKeyLabel = []byte("Client Key")
	serverKeyLabel = []byte("Server Key")
)

// NewCredentials derives the SCRAM-SHA-1, -256 and -512 keys of password,
// each with its own random salt and DefaultIterations (RFC 5802 §3). The
// password is used as given: no SASLprep, since generated passwords are
// ASCII letters and digits.
func NewCredentials(password string) (Credentials, error) {
	var c Credentials
	for _, k := range []struct {
		keys *ScramKeys
		h    func() hash.Hash
	}{{&c.SHA1, sha1.New}, {&c.SHA256, sha256.New}, {&c.SHA512, sha512.New}} {
		salt := make([]byte, saltSize)
		if _, err := rand.Read(salt); err != nil {
			return Credentials{}, fmt.Errorf("auth: salt: %w", err)
		}
		*k.keys = deriveKeys(k.h, []byte(password), salt, DefaultIterations)
	}
	return c, nil
}

// NewCredentialsLike derives the keys of password with the salts and
// iteration counts of like, which must be Usable: the keys of a pending
// password (Account.Pending) of the account whose credentials are like.
func NewCredentialsLike(password string, like Credentials) (Credentials, error) {
	if !like.Usable() {
		return Credentials{}, errors.New("auth: no usable credentials to derive a pending password alike")
	}
	c := Credentials{
		SHA1:   deriveKeys(sha1.New, []byte(password), like.SHA1.Salt, like.SHA1.Iterations),
		SHA256: deriveKeys(sha256.New, []byte(password), like.SHA256.Salt, like.SHA256.Iterations),
	}
	// SHA-512 keys only alike existing ones: a pending password is
	// checked in the exchange of the current one's salt.
	if usableKeys(like.SHA512, sha512.Size) {
		c.SHA512 = deriveKeys(sha512.New, []byte(password), like.SHA512.Salt, like.SHA512.Iterations)
	}
	return c, nil
}

// HasSHA512 reports whether c has SCRAM-SHA-512 keys.
func (c Credentials) HasSHA512() bool { return usableKeys(c.SHA512, sha512.Size) }

// Usable reports whether c has keys for every SCRAM mechanism always
// offered (SHA-512 keys are optional: older accounts lack them).
func (c Credentials) Usable() bool {
	return usableKeys(c.SHA1, sha1.Size) && usableKeys(c.SHA256, sha256.Size)
}

// VerifyPassword reports whether password matches the SHA-256 keys, for
// SASL PLAIN. The comparison is constant-time.
func (c Credentials) VerifyPassword(password string) bool {
	return Account{Credentials: c}.MatchPassword(password) == CurrentPassword
}

// PasswordMatch says which of an account's passwords a password is.
type PasswordMatch int

// The answers of MatchPassword.
const (
	NoMatch         PasswordMatch = iota
	CurrentPassword               // Account.Credentials
	PendingPassword               // Account.Pending, not yet used
)

// MatchPassword tells whether password is the account's current password,
// its pending one, or neither, by the SHA-256 keys (SASL PLAIN, the web
// login). A pending password counts only with the salt and iteration
// count of the current one, as the store keeps it, so that one key
// derivation serves both; the comparisons are constant-time.
func (a Account) MatchPassword(password string) PasswordMatch {
	cur, pending := a.Credentials.SHA256, a.Pending.SHA256
	if !usableKeys(cur, sha256.Size) {
		return NoMatch
	}
	salted := hi(sha256.New, []byte(password), cur.Salt, cur.Iterations)
	stored := storedKey(sha256.New, hmacSum(sha256.New, salted, clientKeyLabel))
	switch {
	case subtle.ConstantTimeCompare(stored, cur.StoredKey) == 1:
		return CurrentPassword
	case sameDerivation(pending, cur) && usableKeys(pending, sha256.Size) &&
		subtle.ConstantTimeCompare(stored, pending.StoredKey) == 1:
		return PendingPassword
	}
	return NoMatch
}

// sameDerivation reports whether a and b were derived with the same salt
// and iteration count, so that one salted password checks both.
func sameDerivation(a, b ScramKeys) bool {
	return a.Iterations == b.Iterations && bytes.Equal(a.Salt, b.Salt)
}

// usableKeys reports whether k can take part in an exchange at all.
func usableKeys(k ScramKeys, size int) bool {
	return len(k.Salt) > 0 && k.Iterations > 0 && k.Iterations <= maxIterations &&
		len(k.StoredKey) == size && len(k.ServerKey) == size
}

// deriveKeys computes the stored SCRAM keys of RFC 5802 §3.
func deriveKeys(h func() hash.Hash, password, salt []byte, iterations int) ScramKeys {
	salted := hi(h, password, salt, iterations)
	return ScramKeys{
		Salt:       append([]byte(nil), salt...),
		Iterations: iterations,
		StoredKey:  storedKey(h, hmacSum(h, salted, clientKeyLabel)),
		ServerKey:  hmacSum(h, salted, serverKeyLabel),
	}
}

// hi is Hi() of RFC 5802 §2.2, which is PBKDF2 with one output block.
// Written out rather than imported so that it does not depend on FIPS-mode
// limits on salt and key sizes that SCRAM test vectors do not meet.
func hi(h func() hash.Hash, password, salt []byte, iterations int) []byte {
	mac := hmac.New(h, password)
	mac.Write(salt)
	mac.Write(binary.BigEndian.AppendUint32(nil, 1))
	u := mac.Sum(nil)
	out := append([]byte(nil), u...)
	for i := 1; i < iterations; i++ {
		mac.Reset()
		mac.Write(u)
		u = mac.Sum(u[:0])
		subtle.XORBytes(out, out, u)
	}
	return out
}

func hmacSum(h func() hash.Hash, key, data []byte) []byte {
	mac := hmac.New(h, key)
	mac.Write(data)
	return mac.Sum(nil)
}

func storedKey(h func() hash.Hash, clientKey []byte) []byte {
	d := h()
	d.Write(clientKey)
	return d.Sum(nil)
}
