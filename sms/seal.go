package sms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// KeySize is the length of the secret key that seals SMS bodies
// (XMPPD_SECRET_KEY): 32 bytes, for AES-256.
const KeySize = 32

// Seal encrypts plaintext with AES-256-GCM under key (KeySize bytes) and
// returns the random nonce followed by the ciphertext and its tag. It is how
// a pending SMS that carries a password is kept in the store.
func Seal(key, plaintext []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("sms: seal: %w", err)
	}
	return aead.Seal(out, out, plaintext, nil), nil
}

// Open decrypts what Seal made with the same key. A wrong key or an altered
// text is an error.
func Open(key, sealed []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("sms: open: sealed text too short")
	}
	nonce, text := sealed[:aead.NonceSize()], sealed[aead.NonceSize():]
	plain, err := aead.Open(nil, nonce, text, nil)
	if err != nil {
		return nil, errors.New("sms: open: wrong key or damaged text")
	}
	return plain, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("sms: secret key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sms: %w", err)
	}
	return cipher.NewGCM(block)
}
