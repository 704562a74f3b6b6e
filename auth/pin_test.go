package auth

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// PINs are six digits, leading zeros kept, all ten digits used in every
// place.
func TestGeneratePIN(t *testing.T) {
	var seen [PINDigits][10]bool
	for range 2000 {
		pin, err := GeneratePIN()
		if err != nil {
			t.Fatal(err)
		}
		if !ValidPIN(pin) {
			t.Fatalf("GeneratePIN = %q", pin)
		}
		for i := range PINDigits {
			seen[i][pin[i]-'0'] = true
		}
	}
	for i, digits := range seen {
		for d, ok := range digits {
			if !ok {
				t.Errorf("digit %d never at place %d in 2000 PINs", d, i)
			}
		}
	}
}

func TestValidPIN(t *testing.T) {
	for pin, want := range map[string]bool{
		"123456": true, "000000": true,
		"12345": false, "1234567": false, "12345a": false, "": false,
		"１２３４５６": false, // full-width digits
		"12 456": false, "+12345": false,
	} {
		if got := ValidPIN(pin); got != want {
			t.Errorf("ValidPIN(%q) = %v", pin, got)
		}
	}
}

// The stored hash depends on the secret, the number and the PIN, and on
// where one ends and the other begins.
func TestPINHash(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	h := PINHash(key, "+821012345678", "123456")
	if len(h) != 32 || !bytes.Equal(h, PINHash(key, "+821012345678", "123456")) {
		t.Fatalf("PINHash is not a stable SHA-256 HMAC: %x", h)
	}
	for name, other := range map[string][]byte{
		"other PIN":    PINHash(key, "+821012345678", "123457"),
		"other number": PINHash(key, "+821012345679", "123456"),
		"other key":    PINHash(bytes.Repeat([]byte{2}, 32), "+821012345678", "123456"),
		"shifted":      PINHash(key, "+8210123456781", "23456"),
	} {
		if bytes.Equal(h, other) {
			t.Errorf("%s: same hash", name)
		}
	}
}

func TestCheckChosenPassword(t *testing.T) {
	for _, tc := range []struct {
		password string
		ok       bool
	}{
		{"12345678", true},
		{"a+b&c=d%2B", true},
		{"LkP3+/#$!-aq", true}, // the app's alphabet (CryptoHelper.createPassword)
		{"pässwörd", true},     // NFC and NFKC alike
		{"밀번호밀번호밀번", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("é", 128), true}, // characters, not bytes
		{"1234567", false},
		{"", false},
		{strings.Repeat("x", 129), false},
		{"new\nline1", false},
		{"nul\x00char1", false},
		{"\x7fdelete1", false},
		{"ﬁnancial", false},             // a ligature NFKC undoes
		{"pa\u0301sswo\u0308rd", false}, // decomposed accents
		{"bad\xffutf8", false},
	} {
		err := CheckChosenPassword(tc.password)
		if (err == nil) != tc.ok {
			t.Errorf("CheckChosenPassword(%q) = %v, want ok %v", tc.password, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrChosenPassword) {
			t.Errorf("CheckChosenPassword(%q) = %v, not ErrChosenPassword", tc.password, err)
		}
	}
}
