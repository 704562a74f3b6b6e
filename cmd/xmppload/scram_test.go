package main

import "testing"

// TestScramClient runs the example exchange of RFC 5802 §5 (SCRAM-SHA-1,
// user "user", password "pencil"), then a second login with the same
// salt, which must reuse the SaltedPassword, and one whose server
// signature is wrong.
func TestScramClient(t *testing.T) {
	const (
		clientNonce = "fyko+d2lbbFgONRv9qkxdawL"
		serverFirst = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
		clientFinal = "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
		serverFinal = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ="
	)
	login := func(final string) error {
		t.Helper()
		c, err := newScram("SCRAM-SHA-1", "user", "pencil")
		if err != nil {
			t.Fatal(err)
		}
		if _, first, err := c.Step(nil); err != nil || string(first[:9]) != "n,,n=user" {
			t.Fatalf("client-first %q, %v", first, err)
		}
		c.nonce, c.bare = clientNonce, "n=user,r="+clientNonce // the RFC's nonce
		_, resp, err := c.Step([]byte(serverFirst))
		if err != nil || string(resp) != clientFinal {
			t.Fatalf("client-final %q, %v; want %q", resp, err, clientFinal)
		}
		_, _, err = c.Step([]byte(final))
		return err
	}
	before := derivations.Load()
	if err := login(serverFinal); err != nil {
		t.Fatal(err)
	}
	if err := login(serverFinal); err != nil {
		t.Fatal(err)
	}
	if n := derivations.Load() - before; n != 1 {
		t.Fatalf("%d PBKDF2 runs for two logins with one salt, want 1", n)
	}
	if err := login("v=AAAAAAAAAAAAAAAAAAAAAAAAAAA="); err == nil {
		t.Fatal("a wrong server signature was accepted")
	}
	c, _ := newScram("SCRAM-SHA-1", "user", "pencil")
	c.Step(nil)
	if _, _, err := c.Step([]byte("r=someoneelse,s=QSXCR+Q6sek8bf92,i=4096")); err == nil {
		t.Fatal("a nonce not extending ours was accepted")
	}
}

// TestScramCacheFile: SaltedPasswords saved by one run are used by the
// next, which then derives nothing.
func TestScramCacheFile(t *testing.T) {
	path := t.TempDir() + "/scram"
	c, _ := newScram("SCRAM-SHA-256", "u", "secret with spaces")
	if _, err := c.salted([]byte("salt\x00\xff"), 4096); err != nil {
		t.Fatal(err)
	}
	if err := saveScramCache(path); err != nil {
		t.Fatal(err)
	}
	want, _ := saltedCache.Load(scramKey{mech: "SCRAM-SHA-256", pass: "secret with spaces", salt: "salt\x00\xff", iter: 4096})
	saltedCache.Clear()
	if err := loadScramCache(path); err != nil {
		t.Fatal(err)
	}
	before := derivations.Load()
	got, err := c.salted([]byte("salt\x00\xff"), 4096)
	if err != nil || string(got) != string(want.([]byte)) || derivations.Load() != before {
		t.Fatalf("after reload: %x %v, %d derivations", got, err, derivations.Load()-before)
	}
	if err := loadScramCache(t.TempDir() + "/none"); err != nil {
		t.Fatalf("a missing file is an empty cache: %v", err)
	}
}
