package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
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

// NewCredentials derives the SCRAM-SHA-1 and SCRAM-SHA-256 keys of password,
// each with its own random salt and DefaultIterations (RFC 5802 §3). The
// password is used as given: no SASLprep, since generated passwords are
// ASCII letters and digits.
func NewCredentials(password string) (Credentials, error) {
	var c Credentials
	for _, k := range []struct {
		keys *ScramKeys
		h    func() hash.Hash
	}{{&c.SHA1, sha1.New}, {&c.SHA256, sha256.New}} {
		salt := make([]byte, saltSize)
		if _, err := rand.Read(salt); err != nil {
			return Credentials{}, fmt.Errorf("auth: salt: %w", err)
		}
		*k.keys = deriveKeys(k.h, []byte(password), salt, DefaultIterations)
	}
	return c, nil
}

// VerifyPassword reports whether password matches the SHA-256 keys, for
// SASL PLAIN. The comparison is constant-time.
func (c Credentials) VerifyPassword(password string) bool {
	k := c.SHA256
	if !usableKeys(k, sha256.Size) {
		return false
	}
	salted := hi(sha256.New, []byte(password), k.Salt, k.Iterations)
	stored := storedKey(sha256.New, hmacSum(sha256.New, salted, clientKeyLabel))
	return subtle.ConstantTimeCompare(stored, k.StoredKey) == 1
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
