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
