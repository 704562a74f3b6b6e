package sms

import (
	"bytes"
	"testing"
)

func TestSeal(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	plain := []byte("Your example.com password is abcDEF23456. Log in with your phone number.")
	a, err := Seal(key, plain)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Seal(key, plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Error("two seals of one text are equal: the nonce is not random")
	}
	if bytes.Contains(a, []byte("abcDEF23456")) || len(a) != 12+len(plain)+16 {
		t.Errorf("sealed text of %d bytes shows the password or has the wrong size", len(a))
	}
	for _, s := range [][]byte{a, b} {
		got, err := Open(key, s)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("Open = %q, %v", got, err)
		}
	}
	empty, err := Seal(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Open(key, empty); err != nil || len(got) != 0 {
		t.Errorf("Open of a sealed empty text = %q, %v", got, err)
	}

	other := bytes.Repeat([]byte{8}, KeySize)
	if _, err := Open(other, a); err == nil {
		t.Error("Open with another key succeeded")
	}
	for i := range a {
		bad := bytes.Clone(a)
		bad[i] ^= 1
		if _, err := Open(key, bad); err == nil {
			t.Fatalf("Open of a text with byte %d altered succeeded", i)
		}
	}
	for _, short := range [][]byte{nil, a[:12], a[:27]} {
		if _, err := Open(key, short); err == nil {
			t.Errorf("Open of %d bytes succeeded", len(short))
		}
	}
	for _, k := range [][]byte{nil, key[:16], append(bytes.Clone(key), 1)} {
		if _, err := Seal(k, plain); err == nil {
			t.Errorf("Seal with a key of %d bytes succeeded", len(k))
		}
		if _, err := Open(k, a); err == nil {
			t.Errorf("Open with a key of %d bytes succeeded", len(k))
		}
	}
}
