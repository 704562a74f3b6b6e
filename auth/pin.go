package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// The PINs of the app API (SPEC.md "App API"): a PIN texted to a number
// lets whoever holds the phone set the account's password.
const (
	// PINDigits is the length of a PIN.
	PINDigits = 6
	// PINTTL is how long a PIN works after it was made.
	PINTTL = 5 * time.Minute
	// PINTries is how many wrong PINs one PIN survives; the next try,
	// right or wrong, is refused.
	PINTries = 3
)

// Bounds of a password an app chooses (SPEC.md "App API"), in characters.
const (
	MinChosenPassword = 8
	MaxChosenPassword = 128
)

// pinLimit is 10^PINDigits: PINs are uniform in [0, pinLimit).
var pinLimit = big.NewInt(1_000_000)

// GeneratePIN returns PINDigits random decimal digits, uniformly
// distributed, leading zeros kept.
func GeneratePIN() (string, error) {
	v, err := rand.Int(rand.Reader, pinLimit)
	if err != nil {
		return "", fmt.Errorf("auth: generating PIN: %w", err)
	}
	return fmt.Sprintf("%0*d", PINDigits, v.Int64()), nil
}

// ValidPIN reports whether s has the form of a PIN: exactly PINDigits
// ASCII digits.
func ValidPIN(s string) bool {
	if len(s) != PINDigits {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// pinHashLabel separates the PIN hash key from other uses of the secret.
const pinHashLabel = "dialtone pin v1"

// PINHash is what the store keeps of the PIN of n: HMAC-SHA-256 keyed with
// the server's secret. A million PINs are quickly tried against a plain
// hash; without the key a copy of the database gives none of them away.
// The number is part of the input, so equal PINs of two numbers differ.
func PINHash(secret []byte, n Number, pin string) []byte {
	k := hmac.New(sha256.New, secret)
	k.Write([]byte(pinHashLabel))
	m := hmac.New(sha256.New, k.Sum(nil))
	m.Write([]byte(n))
	m.Write([]byte{0})
	m.Write([]byte(pin))
	return m.Sum(nil)
}

// ErrChosenPassword is matched by every refusal of CheckChosenPassword.
var ErrChosenPassword = errors.New("password not acceptable")

// CheckChosenPassword says why a password an app chose cannot be used, or
// nil. The error's text is for the client. Lengths count characters
// (SPEC.md: 8 to 128). Control characters are refused (NUL would end the
// password inside SASL PLAIN), and so is text that NFKC normalisation
// changes: clients prepare a SCRAM password that way (Conversations and
// Quicksy apply NFKC), so such a password could not log in with them.
func CheckChosenPassword(password string) error {
	if !utf8.ValidString(password) {
		return fmt.Errorf("%w: not UTF-8", ErrChosenPassword)
	}
	n := utf8.RuneCountInString(password)
	if n < MinChosenPassword {
		return fmt.Errorf("%w: shorter than %d characters", ErrChosenPassword, MinChosenPassword)
	}
	if n > MaxChosenPassword {
		return fmt.Errorf("%w: longer than %d characters", ErrChosenPassword, MaxChosenPassword)
	}
	for _, r := range password {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: control characters are not allowed", ErrChosenPassword)
		}
	}
	if !norm.NFKC.IsNormalString(password) {
		return fmt.Errorf("%w: not in Unicode normal form NFKC", ErrChosenPassword)
	}
	return nil
}
