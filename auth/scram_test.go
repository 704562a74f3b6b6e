package auth

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"testing"
)

// TestHi checks Hi() against the PBKDF2-HMAC-SHA1 vectors of RFC 6070 and
// the SCRAM-SHA-256 salted password behind RFC 7677's example.
func TestHi(t *testing.T) {
	for _, tt := range []struct {
		password, salt string
		iter           int
		want           string
	}{
		{"password", "salt", 1, "0c60c80f961f0e71f3a9b524af6012062fe037a6"},
		{"password", "salt", 2, "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957"},
		{"password", "salt", 4096, "4b007901b765489abead49d926f721d065a429c1"},
	} {
		got := hi(sha1.New, []byte(tt.password), []byte(tt.salt), tt.iter)
		if hex.EncodeToString(got) != tt.want {
			t.Errorf("Hi(%q, %q, %d) = %x, want %s", tt.password, tt.salt, tt.iter, got, tt.want)
		}
	}
}

func TestNewCredentials(t *testing.T) {
	c, err := NewCredentials("pencil")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		name string
		keys ScramKeys
		size int
	}{{"SHA1", c.SHA1, sha1.Size}, {"SHA256", c.SHA256, sha256.Size}} {
		if len(k.keys.Salt) != 16 || k.keys.Iterations != DefaultIterations ||
			len(k.keys.StoredKey) != k.size || len(k.keys.ServerKey) != k.size {
			t.Errorf("%s keys malformed: %+v", k.name, k.keys)
		}
	}
	if bytes.Equal(c.SHA1.Salt, c.SHA256.Salt) {
		t.Error("SHA1 and SHA256 share a salt")
	}
	// Re-derive independently with the RFC 5802 §3 formulas.
	salted := hi(sha256.New, []byte("pencil"), c.SHA256.Salt, DefaultIterations)
	ck := hmacSum(sha256.New, salted, []byte("Client Key"))
	sum := sha256.Sum256(ck)
	if !bytes.Equal(sum[:], c.SHA256.StoredKey) {
		t.Error("StoredKey is not H(HMAC(SaltedPassword, \"Client Key\"))")
	}
	if !bytes.Equal(hmacSum(sha256.New, salted, []byte("Server Key")), c.SHA256.ServerKey) {
		t.Error("ServerKey is not HMAC(SaltedPassword, \"Server Key\")")
	}

	if !c.VerifyPassword("pencil") {
		t.Error("right password refused")
	}
	// Not "pencil\x00": HMAC zero-pads keys, so PBKDF2 cannot tell it from
	// "pencil"; PLAIN cannot carry a NUL in a password anyway.
	for _, wrong := range []string{"", "Pencil", "pencil ", "pencil!"} {
		if c.VerifyPassword(wrong) {
			t.Errorf("wrong password %q accepted", wrong)
		}
	}
	if (Credentials{}).VerifyPassword("") {
		t.Error("empty credentials accept the empty password")
	}
	broken := c
	broken.SHA256.Iterations = maxIterations + 1
	if broken.VerifyPassword("pencil") {
		t.Error("absurd iteration count accepted")
	}

	d, _ := NewCredentials("pencil")
	if bytes.Equal(c.SHA256.Salt, d.SHA256.Salt) || bytes.Equal(c.SHA256.StoredKey, d.SHA256.StoredKey) {
		t.Error("two credentials for one password share salt or keys")
	}
}

// TestDeriveKeysRFC7677 derives the keys of the RFC 7677 example user and
// checks them against the proof and signature printed there, computed the
// way a client would (from the password) rather than the way the server
// checks (from StoredKey).
func TestDeriveKeysRFC7677(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	k := deriveKeys(sha256.New, []byte("pencil"), salt, 4096)
	auth := []byte("n=user,r=rOprNGfwEbeRWgbNEkqO," +
		"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096," +
		"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
	sig := hmacSum(sha256.New, k.ServerKey, auth)
	if got := base64.StdEncoding.EncodeToString(sig); got != "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=" {
		t.Errorf("server signature %s", got)
	}
}

// A pending password is derived with the salts and iteration counts of the
// current one, and MatchPassword tells the two apart.
func TestMatchPasswordPending(t *testing.T) {
	cur, err := NewCredentials("current1234")
	if err != nil {
		t.Fatal(err)
	}
	pending, err := NewCredentialsLike("pending1234", cur)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct{ a, b ScramKeys }{{cur.SHA1, pending.SHA1}, {cur.SHA256, pending.SHA256}} {
		if !sameDerivation(k.a, k.b) || bytes.Equal(k.a.StoredKey, k.b.StoredKey) {
			t.Fatalf("pending keys %+v not derived alike from %+v", k.b, k.a)
		}
	}
	if !pending.Usable() || !cur.Usable() || (Credentials{}).Usable() {
		t.Fatal("Usable")
	}
	a := Account{Credentials: cur, Pending: pending}
	for pw, want := range map[string]PasswordMatch{
		"current1234": CurrentPassword, "pending1234": PendingPassword, "other": NoMatch, "": NoMatch,
	} {
		if got := a.MatchPassword(pw); got != want {
			t.Errorf("MatchPassword(%q) = %v, want %v", pw, got, want)
		}
	}
	if (Account{Credentials: cur}).MatchPassword("pending1234") != NoMatch {
		t.Error("a pending password matched an account without one")
	}
	// Salted otherwise, a pending password is never checked.
	fresh, _ := NewCredentials("pending1234")
	if (Account{Credentials: cur, Pending: fresh}).MatchPassword("pending1234") != NoMatch {
		t.Error("a pending password with its own salt matched")
	}
	if _, err := NewCredentialsLike("x", Credentials{}); err == nil {
		t.Error("NewCredentialsLike of unusable credentials")
	}
}
