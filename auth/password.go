package auth

import (
	"crypto/rand"
	"fmt"
)

// passwordAlphabet has letters and digits without the ones people confuse
// when they copy a password from an SMS (0 O o, 1 l I).
const passwordAlphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz"

const (
	// MinPasswordLength is the shortest password GeneratePassword makes
	// (SPEC "Accounts": at least 10 characters).
	MinPasswordLength = 10
	// maxPasswordLength only guards against a silly allocation.
	maxPasswordLength = 1024
)

// GeneratePassword returns a random password of length characters (at least
// MinPasswordLength) from an alphabet of unambiguous letters and digits,
// each character uniformly distributed.
func GeneratePassword(length int) (string, error) {
	if length < MinPasswordLength {
		length = MinPasswordLength
	}
	if length > maxPasswordLength {
		return "", fmt.Errorf("auth: password length %d over %d", length, maxPasswordLength)
	}
	// Bytes at or above limit are thrown away: limit is the largest multiple
	// of the alphabet size that fits in a byte, so b%size has no bias.
	const size = len(passwordAlphabet)
	const limit = 256 / size * size
	out := make([]byte, 0, length)
	buf := make([]byte, length+length/2)
	for len(out) < length {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("auth: generating password: %w", err)
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < length {
				out = append(out, passwordAlphabet[int(b)%size])
			}
		}
	}
	return string(out), nil
}
