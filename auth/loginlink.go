package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"time"
)

// One-tap login links (SPEC.md "Web client and one-tap login"): every
// password SMS carries XMPPD_PUBLIC_URL/l/TOKEN, which logs the browser
// that opens it into the web client, once, for XMPPD_LOGIN_LINK_TTL, and
// only while the password it came with is the account's (current, or
// pending and not yet replaced). The store keeps the token's SHA-256,
// never the token, and a tag of that password.

// LinkTokenLength is the length of a link token: 128 random bits in
// unpadded base64url.
const LinkTokenLength = 22

const (
	linkTokenBytes = 16
	passwordTagKey = "dialtone login link password tag"
)

// LoginLink is a stored one-tap link.
type LoginLink struct {
	// Hash is LinkTokenHash of the token, the key it is stored under.
	Hash string
	// Number is the account the link logs in to.
	Number Number
	// PasswordTag is PasswordTag of the password texted with the link.
	PasswordTag []byte
	Created     time.Time
	Expires     time.Time
	// Used is when the link logged a browser in; zero while it has not.
	Used time.Time
}

// NewLinkToken returns a fresh token and the hash to store it under.
func NewLinkToken() (token, hash string) {
	b := make([]byte, linkTokenBytes)
	rand.Read(b) // never fails since Go 1.24
	token = base64.RawURLEncoding.EncodeToString(b)
	hash, _ = LinkTokenHash(token)
	return token, hash
}

// LinkTokenHash returns the hash that token is stored under, and false
// for a string that is no token NewLinkToken makes (length, alphabet, or
// bits beyond the 128), so that malformed input never reaches the store.
func LinkTokenHash(token string) (string, bool) {
	if len(token) != LinkTokenLength {
		return "", false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(b) != linkTokenBytes {
		return "", false
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), true
}

// PasswordTag names the password whose credentials are c, for a link that
// must work only while it is the account's password: a hash of its
// SHA-256 stored key, which tells nothing about the password itself. Nil
// when c has no SHA-256 keys.
func PasswordTag(c Credentials) []byte {
	if len(c.SHA256.StoredKey) == 0 {
		return nil
	}
	h := sha256.New()
	h.Write([]byte(passwordTagKey))
	h.Write(c.SHA256.StoredKey)
	return h.Sum(nil)
}

// LinkPassword tells which of a's passwords tag names: CurrentPassword,
// PendingPassword (texted on request and not yet used: the link, like a
// login with it, makes it current), or NoMatch (replaced since).
func (a Account) LinkPassword(tag []byte) PasswordMatch {
	if len(tag) == 0 {
		return NoMatch
	}
	if cur := PasswordTag(a.Credentials); cur != nil && subtle.ConstantTimeCompare(cur, tag) == 1 {
		return CurrentPassword
	}
	if p := PasswordTag(a.Pending); p != nil && subtle.ConstantTimeCompare(p, tag) == 1 {
		return PendingPassword
	}
	return NoMatch
}
