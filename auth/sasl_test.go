package auth

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"
)

// fakeStore is an in-memory CredentialSource.
type fakeStore struct {
	mu       sync.Mutex
	accounts map[Number]Account
	err      error // returned for every lookup when set
}

func (s *fakeStore) Account(ctx context.Context, n Number) (Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return Account{}, s.err
	}
	a, ok := s.accounts[n]
	if !ok {
		return Account{}, ErrNotFound
	}
	return a, nil
}

const (
	testUser     = Number("+821012345678")
	testPassword = "Rk7mXq4pZt"
	latentUser   = Number("+821099998888")
)

type saslFixture struct {
	sasl  *SASL
	store *fakeStore
	clock *fakeClock
	creds Credentials
}

func newSASLFixture(t testing.TB, maxFailures int) *saslFixture {
	t.Helper()
	creds, err := NewCredentials(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	store := &fakeStore{accounts: map[Number]Account{
		testUser: {Number: testUser, State: StateActive, Credentials: creds, Generation: 3},
	}}
	lock, clock := newTestLockout(maxFailures)
	return &saslFixture{
		sasl: &SASL{
			Parser:  mustParser(t, "KR"),
			Store:   store,
			Lockout: lock,
			Secret:  []byte("test secret"),
			Domain:  "example.com",
		},
		store: store,
		clock: clock,
		creds: creds,
	}
}

// login runs one exchange between a mellium.im/sasl client, an independent
// implementation, and our server. With initial false the client's first
// message waits for the server's empty challenge, as when a client sends
// <auth/> with no text. A non-nil error is the server's *Failure.
func login(t testing.TB, s *SASL, mech sasl.Mechanism, tls, initial bool, user, password, authzid string) (*Exchange, *Failure) {
	t.Helper()
	ctx := context.Background()
	client := sasl.NewClient(mech, sasl.Credentials(func() ([]byte, []byte, []byte) {
		return []byte(user), []byte(password), []byte(authzid)
	}))
	ex, err := s.Start(mech.Name, tls)
	if err != nil {
		return nil, asFailure(t, err)
	}
	_, resp, err := client.Step(nil)
	if err != nil {
		t.Fatalf("client start: %v", err)
	}
	if !initial {
		challenge, done, err := ex.Next(ctx, nil)
		if err != nil || done || challenge == nil || len(challenge) != 0 {
			t.Fatalf("Next(nil) = %q, %v, %v; want an empty challenge", challenge, done, err)
		}
	}
	for range 4 {
		challenge, done, err := ex.Next(ctx, resp)
		if err != nil {
			if done || challenge != nil {
				t.Fatalf("failure with done=%v challenge=%q", done, challenge)
			}
			return ex, asFailure(t, err)
		}
		if done {
			if mech.Name == MechanismPLAIN {
				if challenge != nil {
					t.Fatalf("PLAIN success with data %q", challenge)
				}
			} else if _, _, err := client.Step(challenge); err != nil {
				// The client checks the server signature.
				t.Fatalf("client refused server-final %q: %v", challenge, err)
			}
			return ex, nil
		}
		if _, resp, err = client.Step(challenge); err != nil {
			t.Fatalf("client step on %q: %v", challenge, err)
		}
	}
	t.Fatal("exchange did not end")
	return nil, nil
}

func asFailure(t testing.TB, err error) *Failure {
	t.Helper()
	var f *Failure
	if !errors.As(err, &f) {
		t.Fatalf("error %T %v is not a *Failure", err, err)
	}
	return f
}

var allMechs = []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1, sasl.Plain}

func TestSASLSuccess(t *testing.T) {
	for _, mech := range allMechs {
		for _, tt := range []struct{ user, authzid string }{
			{"+821012345678", ""},
			{"010-1234-5678", ""},
			{"01012345678", ""},
			{"+82 10-1234-5678", ""},
			{"+821012345678", "+821012345678"},
			{"010-1234-5678", "+82 10 1234 5678"},
			{"+821012345678", "+821012345678@example.com"},
			{"+821012345678", "010-1234-5678@EXAMPLE.com"},
			// Escaping of the username round trips (the authzid would not:
			// mellium's client sends it unescaped); fails as unknown.
			{"a=b,c", ""},
		} {
			for _, initial := range []bool{true, false} {
				name := fmt.Sprintf("%s/%q/%q/initial=%v", mech.Name, tt.user, tt.authzid, initial)
				t.Run(name, func(t *testing.T) {
					f := newSASLFixture(t, 5)
					ex, fail := login(t, f.sasl, mech, true, initial, tt.user, testPassword, tt.authzid)
					if tt.user == "a=b,c" {
						if fail == nil || fail.Condition != ConditionNotAuthorized {
							t.Fatalf("failure %v, want not-authorized", fail)
						}
						return
					}
					if fail != nil {
						t.Fatalf("login failed: %v", fail)
					}
					if ex.Number() != testUser || ex.Generation() != 3 {
						t.Errorf("Number, Generation = %q, %d", ex.Number(), ex.Generation())
					}
					if _, _, err := ex.Next(context.Background(), []byte("again")); err == nil {
						t.Error("Next after success did not fail")
					}
				})
			}
		}
	}
}

// TestSASLNotAuthorized: wrong passwords, latent, unknown and invalid users
// all get the very same failure.
func TestSASLNotAuthorized(t *testing.T) {
	for _, mech := range allMechs {
		for _, tt := range []struct{ user, password string }{
			{"+821012345678", "wrong"},
			{"010-1234-5678", testPassword + "x"},
			{string(latentUser), testPassword},
			{"010-9999-8888", "whatever"},
			{"alice", testPassword},           // not a number
			{"+82602345678", testPassword},    // premium rate
			{"+447400123456", testPassword},   // valid, no account
			{"+821012345678\u00e9", "secret"}, // UTF-8 junk
		} {
			t.Run(fmt.Sprintf("%s/%q", mech.Name, tt.user), func(t *testing.T) {
				f := newSASLFixture(t, 5)
				ex, fail := login(t, f.sasl, mech, true, true, tt.user, tt.password, "")
				if fail == nil {
					t.Fatal("login succeeded")
				}
				want := Failure{Condition: ConditionNotAuthorized}
				if *fail != want {
					t.Errorf("failure %#v, want %#v", *fail, want)
				}
				if ex.Number() != "" || ex.Generation() != 0 {
					t.Errorf("failed exchange reports %q, %d", ex.Number(), ex.Generation())
				}
				assertNoSecrets(t, fail, f.creds, testPassword, tt.password)
			})
		}
	}
}

func assertNoSecrets(t testing.TB, err error, c Credentials, passwords ...string) {
	t.Helper()
	msg := err.Error()
	for _, k := range [][]byte{c.SHA1.StoredKey, c.SHA1.ServerKey, c.SHA256.StoredKey, c.SHA256.ServerKey} {
		if strings.Contains(msg, base64.StdEncoding.EncodeToString(k)) || strings.Contains(msg, fmt.Sprintf("%x", k)) || strings.Contains(msg, string(k)) {
			t.Errorf("error %q contains a key", msg)
		}
	}
	for _, p := range passwords {
		if len(p) > 3 && strings.Contains(msg, p) {
			t.Errorf("error %q contains password %q", msg, p)
		}
	}
}

// serverFirst starts a SCRAM exchange for user and returns the server-first
// attributes.
func serverFirst(t *testing.T, s *SASL, mech, user string) map[byte]string {
	t.Helper()
	ex, err := s.Start(mech, false)
	if err != nil {
		t.Fatal(err)
	}
	ch, _, err := ex.Next(context.Background(), []byte("n,,n="+user+",r=clientnonce"))
	if err != nil {
		t.Fatalf("client-first for %q: %v", user, err)
	}
	attrs := map[byte]string{}
	for _, f := range strings.Split(string(ch), ",") {
		attrs[f[0]] = f[2:]
	}
	return attrs
}

// TestSASLFakeSalt: what an unknown user is shown looks like a stored
// account: a stable 16-byte salt, 4096 iterations, a long random nonce.
func TestSASLFakeSalt(t *testing.T) {
	f := newSASLFixture(t, 5)
	for _, mech := range []string{MechanismSCRAMSHA256, MechanismSCRAMSHA1} {
		real := serverFirst(t, f.sasl, mech, "+821012345678")
		a := serverFirst(t, f.sasl, mech, "+821099998888")
		b := serverFirst(t, f.sasl, mech, "010-9999-8888")
		c := serverFirst(t, f.sasl, mech, "+821099997777")
		d := serverFirst(t, f.sasl, mech, "nobody")
		wantSalt := f.creds.SHA256.Salt
		if mech == MechanismSCRAMSHA1 {
			wantSalt = f.creds.SHA1.Salt
		}
		if real['s'] != base64.StdEncoding.EncodeToString(wantSalt) {
			t.Errorf("%s: stored salt not shown", mech)
		}
		if a['s'] != b['s'] {
			t.Errorf("%s: two spellings of one latent number get salts %s and %s", mech, a['s'], b['s'])
		}
		if a['s'] == c['s'] || a['s'] == d['s'] {
			t.Errorf("%s: different users share a fake salt", mech)
		}
		for _, m := range []map[byte]string{real, a, d} {
			salt, err := base64.StdEncoding.DecodeString(m['s'])
			if err != nil || len(salt) != 16 || m['i'] != "4096" {
				t.Errorf("%s: server-first %v", mech, m)
			}
			if !strings.HasPrefix(m['r'], "clientnonce") || len(m['r']) < len("clientnonce")+24 {
				t.Errorf("%s: nonce %q", mech, m['r'])
			}
		}
		if real['r'] == a['r'] {
			t.Errorf("%s: repeated server nonce", mech)
		}
	}
	// Stable across restarts: a new SASL with the same Secret.
	g := newSASLFixture(t, 5)
	if x, y := serverFirst(t, f.sasl, MechanismSCRAMSHA256, "+821099998888"), serverFirst(t, g.sasl, MechanismSCRAMSHA256, "+821099998888"); x['s'] != y['s'] {
		t.Error("fake salt changed with the same secret")
	}
	g.sasl.Secret = []byte("another secret")
	if x, y := serverFirst(t, f.sasl, MechanismSCRAMSHA256, "+821099998888"), serverFirst(t, g.sasl, MechanismSCRAMSHA256, "+821099998888"); x['s'] == y['s'] {
		t.Error("fake salt does not depend on the secret")
	}
}

func TestSASLLockout(t *testing.T) {
	for _, mech := range allMechs {
		t.Run(mech.Name, func(t *testing.T) {
			f := newSASLFixture(t, 3)
			for i := range 3 {
				if _, fail := login(t, f.sasl, mech, true, true, "+821012345678", "wrong", ""); fail == nil || fail.Condition != ConditionNotAuthorized {
					t.Fatalf("attempt %d: %v", i, fail)
				}
			}
			ex, fail := login(t, f.sasl, mech, true, true, "010-1234-5678", testPassword, "")
			if fail == nil || fail.Condition != ConditionTemporaryAuthFailure {
				t.Fatalf("locked account with the right password: %v", fail)
			}
			if ex.Number() != "" {
				t.Error("locked exchange reports a number")
			}
			assertNoSecrets(t, fail, f.creds, testPassword)
			f.clock.advance(time.Minute)
			if _, fail := login(t, f.sasl, mech, true, true, "+821012345678", testPassword, ""); fail != nil {
				t.Fatalf("after the lock: %v", fail)
			}
			// Success reset the count: two more failures do not lock.
			for range 2 {
				login(t, f.sasl, mech, true, true, "+821012345678", "wrong", "")
			}
			if _, fail := login(t, f.sasl, mech, true, true, "+821012345678", testPassword, ""); fail != nil {
				t.Fatalf("locked without 3 failures since the success: %v", fail)
			}

			// Latent numbers are counted and locked too.
			for range 3 {
				login(t, f.sasl, mech, true, true, string(latentUser), "x", "")
			}
			if _, fail := login(t, f.sasl, mech, true, true, string(latentUser), "x", ""); fail == nil || fail.Condition != ConditionTemporaryAuthFailure {
				t.Fatalf("latent number not locked: %v", fail)
			}
		})
	}
}

// TestSASLCountsOnce: one failed exchange is one failure, however it ends.
func TestSASLCountsOnce(t *testing.T) {
	f := newSASLFixture(t, 2)
	ctx := context.Background()
	ex, _ := f.sasl.Start(MechanismSCRAMSHA256, false)
	if _, _, err := ex.Next(ctx, []byte("n,,n=+821012345678,r=abc")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ex.Next(ctx, []byte("garbage")); asFailure(t, err).Condition != ConditionMalformedRequest {
		t.Fatalf("garbage client-final: %v", err)
	}
	ex.Next(ctx, []byte("more garbage"))
	if f.sasl.Lockout.Locked(testUser) != 0 {
		t.Fatal("one exchange counted twice")
	}
	login(t, f.sasl, sasl.ScramSha1, false, true, "+821012345678", "wrong", "")
	if f.sasl.Lockout.Locked(testUser) == 0 {
		t.Fatal("malformed client-final not counted")
	}
}

func TestSASLAuthzid(t *testing.T) {
	for _, mech := range allMechs {
		for _, authzid := range []string{
			"+821099998888", "010-9999-8888", "someone", "+821012345678@other.example",
			"+821012345678@example.com/res", "@example.com", "+821012345678@",
		} {
			t.Run(mech.Name+"/"+authzid, func(t *testing.T) {
				f := newSASLFixture(t, 5)
				_, fail := login(t, f.sasl, mech, true, true, "+821012345678", testPassword, authzid)
				if fail == nil || fail.Condition != ConditionInvalidAuthzid {
					t.Fatalf("authzid %q: %v, want invalid-authzid", authzid, fail)
				}
			})
		}
	}
	// Without a Domain, JID forms are refused.
	f := newSASLFixture(t, 5)
	f.sasl.Domain = ""
	if _, fail := login(t, f.sasl, sasl.ScramSha256, true, true, "+821012345678", testPassword, "+821012345678@example.com"); fail == nil || fail.Condition != ConditionInvalidAuthzid {
		t.Fatalf("JID authzid without Domain: %v", fail)
	}
}

func TestSASLMechanisms(t *testing.T) {
	s := &SASL{}
	if got := strings.Join(s.Mechanisms(false), " "); got != "SCRAM-SHA-256 SCRAM-SHA-1" {
		t.Errorf("Mechanisms(false) = %s", got)
	}
	if got := strings.Join(s.Mechanisms(true), " "); got != "SCRAM-SHA-256 SCRAM-SHA-1 PLAIN" {
		t.Errorf("Mechanisms(true) = %s", got)
	}
	f := newSASLFixture(t, 5)
	for _, tt := range []struct {
		mech string
		tls  bool
	}{
		{"SCRAM-SHA-256-PLUS", true}, {"SCRAM-SHA-1-PLUS", true}, {"SCRAM-SHA-512", true},
		{"PLAIN", false}, {"plain", true}, {"scram-sha-256", true}, {"DIGEST-MD5", true},
		{"ANONYMOUS", true}, {"EXTERNAL", true}, {"", true}, {"\x00", false},
	} {
		ex, err := f.sasl.Start(tt.mech, tt.tls)
		if ex != nil || err == nil || asFailure(t, err).Condition != ConditionInvalidMechanism {
			t.Errorf("Start(%q, %v) = %v, %v; want invalid-mechanism", tt.mech, tt.tls, ex, err)
		}
	}
	// A mellium client set on -PLUS is refused up front, without a panic.
	for _, mech := range []sasl.Mechanism{sasl.ScramSha256Plus, sasl.ScramSha1Plus} {
		if _, fail := login(t, f.sasl, mech, true, true, "+821012345678", testPassword, ""); fail == nil || fail.Condition != ConditionInvalidMechanism {
			t.Errorf("%s: %v", mech.Name, fail)
		}
	}
	// An unusable SASL fails instead of dereferencing nil.
	if _, err := (&SASL{}).Start(MechanismSCRAMSHA256, true); err == nil || asFailure(t, err).Condition != ConditionTemporaryAuthFailure {
		t.Errorf("SASL without Parser and Store: %v", err)
	}
}

func TestSASLStoreError(t *testing.T) {
	f := newSASLFixture(t, 1)
	boom := errors.New("database is down")
	f.store.err = boom
	for _, mech := range allMechs {
		_, fail := login(t, f.sasl, mech, true, true, "+821012345678", testPassword, "")
		if fail == nil || fail.Condition != ConditionTemporaryAuthFailure || !errors.Is(fail, boom) {
			t.Fatalf("%s: %v", mech.Name, fail)
		}
		if strings.Contains(fail.Text, "database") {
			t.Errorf("%s: internal error in the text for the client: %q", mech.Name, fail.Text)
		}
	}
	if f.sasl.Lockout.Locked(testUser) != 0 {
		t.Error("a store failure counted as a failed login")
	}
}

// TestSASLVectors replays the exchanges of RFC 5802 §5 and RFC 7677 §3
// byte for byte, with their nonce and salt.
func TestSASLVectors(t *testing.T) {
	for _, tt := range []struct {
		mech, salt, snonce string
		msgs               [4]string
	}{
		{
			MechanismSCRAMSHA1, "QSXCR+Q6sek8bf92", "3rfcNHYJY1ZVvWVs7j",
			[4]string{
				"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
				"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
				"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
				"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
			},
		},
		{
			MechanismSCRAMSHA256, "W22ZaJ0SNY7soEsUEjb6gQ==", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
			[4]string{
				"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
				"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
				"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
				"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
			},
		},
	} {
		t.Run(tt.mech, func(t *testing.T) {
			salt, _ := base64.StdEncoding.DecodeString(tt.salt)
			var c Credentials
			c.SHA1 = deriveKeys(sha1.New, []byte("pencil"), salt, 4096)
			c.SHA256 = deriveKeys(sha256.New, []byte("pencil"), salt, 4096)
			s := vectorSASL(c, tt.snonce)
			ex, err := s.Start(tt.mech, false)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			ch, done, err := ex.Next(ctx, []byte(tt.msgs[0]))
			if err != nil || done || string(ch) != tt.msgs[1] {
				t.Fatalf("server-first = %q, %v, %v; want %q", ch, done, err, tt.msgs[1])
			}
			ch, done, err = ex.Next(ctx, []byte(tt.msgs[2]))
			if err != nil || !done || string(ch) != tt.msgs[3] {
				t.Fatalf("server-final = %q, %v, %v; want %q", ch, done, err, tt.msgs[3])
			}
			if ex.Number() != "user" || ex.Generation() != 7 {
				t.Errorf("Number, Generation = %q, %d", ex.Number(), ex.Generation())
			}

			// One flipped bit in the proof fails.
			ex, _ = s.Start(tt.mech, false)
			ex.Next(ctx, []byte(tt.msgs[0]))
			bad := []byte(tt.msgs[2])
			bad[len(bad)-3] ^= 1
			if _, _, err := ex.Next(ctx, bad); err == nil || asFailure(t, err).Condition != ConditionNotAuthorized {
				t.Fatalf("flipped proof: %v", err)
			}
		})
	}
}

func vectorSASL(c Credentials, snonce string) *SASL {
	return &SASL{
		Store: &fakeStore{accounts: map[Number]Account{
			"user": {Number: "user", State: StateActive, Credentials: c, Generation: 7},
		}},
		Secret:          []byte("s"),
		newNonce:        func() (string, error) { return snonce, nil },
		parseUser:       func(s string) (Number, error) { return Number(s), nil },
		noDowngradeHash: true,
	}
}

func TestSASLMalformedClientFirst(t *testing.T) {
	f := newSASLFixture(t, 5)
	u := "+821012345678"
	for _, tt := range []struct{ msg, cond string }{
		{"x", ConditionMalformedRequest},
		{",", ConditionMalformedRequest},
		{",,,", ConditionMalformedRequest},
		{"n,,", ConditionMalformedRequest},
		{"n,,n=" + u, ConditionMalformedRequest},
		{"n,,n=" + u + ",r=", ConditionMalformedRequest},
		{"n,,r=abc,n=" + u, ConditionMalformedRequest},
		{"n,,n=,r=abc", ConditionMalformedRequest},
		{"n,,n=a=2Xb,r=abc", ConditionMalformedRequest},
		{"n,,n=a=,r=abc", ConditionMalformedRequest},
		{"n,,n=a\x00b,r=abc", ConditionMalformedRequest},
		{"n,,n=" + u + ",r=ab c", ConditionMalformedRequest},
		{"n,,n=" + u + ",r=abc,,", ConditionMalformedRequest},
		{"n,,n=" + u + ",r=abc,1=x", ConditionMalformedRequest},
		{"n,,m=ext,n=" + u + ",r=abc", ConditionMalformedRequest},
		{"p=tls-exporter,,n=" + u + ",r=abc", ConditionMalformedRequest},
		{"p=tls-unique,,n=" + u + ",r=abc", ConditionMalformedRequest},
		{"q,,n=" + u + ",r=abc", ConditionMalformedRequest},
		{"n,b=x,n=" + u + ",r=abc", ConditionMalformedRequest},
		{"n,a=,n=" + u + ",r=abc", ConditionMalformedRequest},
		{"n,,n=" + u + ",r=\xff", ConditionMalformedRequest},
		{"n,,n=" + u + ",r=" + strings.Repeat("a", maxSASLMessage), ConditionMalformedRequest},
		{"n,a=+821099998888,n=" + u + ",r=abc", ConditionInvalidAuthzid},
	} {
		for _, mech := range []string{MechanismSCRAMSHA256, MechanismSCRAMSHA1} {
			ex, _ := f.sasl.Start(mech, false)
			ch, done, err := ex.Next(context.Background(), []byte(tt.msg))
			if err == nil || done || ch != nil {
				t.Errorf("%s %q: %q, %v, %v", mech, tt.msg, ch, done, err)
				continue
			}
			if c := asFailure(t, err).Condition; c != tt.cond {
				t.Errorf("%s %q: %s, want %s", mech, tt.msg, c, tt.cond)
			}
		}
	}
	// Accepted: y flag, extensions, escaped names.
	for _, msg := range []string{
		"y,,n=" + u + ",r=abc",
		"n,,n=" + u + ",r=abc,x=ext",
		"y,a=" + u + ",n=" + u + ",r=abc",
		"n,,n=+82=2C10,r=abc", // ',' decodes; not a number, so fake keys later
	} {
		ex, _ := f.sasl.Start(MechanismSCRAMSHA256, false)
		if _, _, err := ex.Next(context.Background(), []byte(msg)); err != nil {
			t.Errorf("%q: %v", msg, err)
		}
	}
}

func TestSASLMalformedClientFinal(t *testing.T) {
	f := newSASLFixture(t, 1000)
	const nonce = "SERVERNONCE"
	f.sasl.newNonce = func() (string, error) { return nonce, nil }
	r := "r=abc" + nonce
	proof := "p=" + base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, tt := range []struct{ first, final, cond string }{
		{"n,,", "", ConditionMalformedRequest},
		{"n,,", "c=biws", ConditionMalformedRequest},
		{"n,,", "c=biws," + r, ConditionMalformedRequest},
		{"n,,", "c=biws," + r + ",p=", ConditionMalformedRequest},
		{"n,,", "c=biws," + r + ",p=!!!!", ConditionMalformedRequest},
		{"n,,", "c=biws," + r + ",p=" + base64.StdEncoding.EncodeToString(make([]byte, 20)), ConditionMalformedRequest},
		{"n,,", r + ",c=biws," + proof, ConditionMalformedRequest},
		{"n,,", "c=biws," + r + "," + proof + ",x=y", ConditionMalformedRequest},
		{"n,,", "c=biws," + r + ",1=2," + proof, ConditionMalformedRequest},
		{"n,,", "c=biws," + r + "," + proof + "," + proof, ConditionMalformedRequest},
		{"n,,", "c=bi!s," + r + "," + proof, ConditionMalformedRequest},
		{"n,,", "c=eSws," + r + "," + proof, ConditionNotAuthorized}, // y,, instead of n,,
		{"y,,", "c=biws," + r + "," + proof, ConditionNotAuthorized}, // downgrade of y to n
		{"n,,", "c=biws,r=abc," + proof, ConditionNotAuthorized},     // client nonce only
		{"n,,", "c=biws,r=abc" + nonce + "x," + proof, ConditionNotAuthorized},
		{"n,,", "c=biws," + r + "," + proof, ConditionNotAuthorized}, // wrong proof
		{"n,,", "c=biws," + r + ",x=ext," + proof, ConditionNotAuthorized},
		{"n,,", strings.Repeat("c", maxSASLMessage+1), ConditionMalformedRequest},
	} {
		ex, _ := f.sasl.Start(MechanismSCRAMSHA256, false)
		if _, _, err := ex.Next(context.Background(), []byte(tt.first+"n=+821012345678,r=abc")); err != nil {
			t.Fatalf("client-first: %v", err)
		}
		ch, done, err := ex.Next(context.Background(), []byte(tt.final))
		if err == nil || done || ch != nil {
			t.Errorf("%q: %q, %v, %v", tt.final, ch, done, err)
			continue
		}
		if c := asFailure(t, err).Condition; c != tt.cond {
			t.Errorf("%q: %s, want %s", tt.final, c, tt.cond)
		}
		assertNoSecrets(t, err, f.creds, testPassword)
	}
}

func TestSASLMalformedPlain(t *testing.T) {
	f := newSASLFixture(t, 5)
	for _, msg := range []string{
		"x", "\x00", "\x00\x00", "\x00+821012345678\x00", "\x00\x00" + testPassword,
		"\x00+821012345678\x00" + testPassword + "\x00",
		"\x00+821012345678\x00\xff",
		"\x00+821012345678\x00" + strings.Repeat("a", maxSASLMessage),
	} {
		ex, _ := f.sasl.Start(MechanismPLAIN, true)
		_, _, err := ex.Next(context.Background(), []byte(msg))
		if err == nil || asFailure(t, err).Condition != ConditionMalformedRequest {
			t.Errorf("%q: %v, want malformed-request", msg, err)
		}
	}
	// An empty response after the empty challenge is malformed, not a loop.
	ex, _ := f.sasl.Start(MechanismPLAIN, true)
	ex.Next(context.Background(), nil)
	if _, _, err := ex.Next(context.Background(), nil); err == nil || asFailure(t, err).Condition != ConditionMalformedRequest {
		t.Errorf("second empty response: %v", err)
	}
}

// FuzzSCRAM feeds arbitrary client-first and client-final messages (and
// PLAIN messages) to the server. The server nonce is fixed so that the
// fuzzer can reach the proof check.
func FuzzSCRAM(f *testing.F) {
	fx := newSASLFixture(f, 1<<30)
	fx.sasl.newNonce = func() (string, error) { return "SNONCE", nil }
	seeds := [][2]string{
		{"n,,n=+821012345678,r=abc", "c=biws,r=abcSNONCE,p=" + base64.StdEncoding.EncodeToString(make([]byte, 32))},
		{"y,a=010-1234-5678,n=010-1234-5678,r=abc,e=x", "c=eSxhPTAxMC0xMjM0LTU2NzgsCg==,r=abcSNONCE,x=1,p=AAAA"},
		{"n,,n=a=2Cb=3D,r=a", "c=biws,r=aSNONCE,p=" + base64.StdEncoding.EncodeToString(make([]byte, 20))},
		{"p=tls-exporter,,n=u,r=x", ""},
		{"\x00+821012345678\x00" + testPassword, ""},
		{"", ""},
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s[0]), []byte(s[1]))
	}
	conditions := map[string]bool{
		ConditionNotAuthorized: true, ConditionTemporaryAuthFailure: true, ConditionMalformedRequest: true,
		ConditionInvalidAuthzid: true,
	}
	f.Fuzz(func(t *testing.T, m uint8, first, final []byte) {
		mech := []string{MechanismSCRAMSHA256, MechanismSCRAMSHA1, MechanismPLAIN}[int(m)%3]
		ex, err := fx.sasl.Start(mech, true)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for _, msg := range [][]byte{first, final, final} {
			ch, done, err := ex.Next(ctx, msg)
			if done {
				// Only a right password gets through; the fuzzer cannot
				// know it, except in the PLAIN seed.
				if mech != MechanismPLAIN || !strings.Contains(string(first), testPassword) {
					t.Fatalf("%s authenticated with %q, %q", mech, first, final)
				}
				return
			}
			if err != nil {
				var fail *Failure
				if !errors.As(err, &fail) || !conditions[fail.Condition] {
					t.Fatalf("error %v", err)
				}
				assertNoSecrets(t, err, fx.creds, testPassword)
				return
			}
			if ch == nil {
				t.Fatal("no challenge, no error, not done")
			}
		}
	})
}

func TestDecodeSaslname(t *testing.T) {
	for in, want := range map[string]string{
		"user": "user", "a=2Cb": "a,b", "a=3Db": "a=b", "=3D=2C": "=,", "=3D2C": "=2C",
		"": "", "=": "", "a=": "", "a=2": "", "a=2c": "", "a=3d": "", "a=41": "", "a\x00": "",
	} {
		got, ok := decodeSaslname(in)
		if got != want || ok != (want != "") {
			t.Errorf("decodeSaslname(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// clientFinal computes, the way a client does from the password, a
// client-final-message with a valid proof for whatever attributes are
// given, so that a refusal can only come from the attribute checks.
func clientFinal(h func() hash.Hash, password string, salt []byte, iter int, clientFirstBare, serverFirst, withoutProof string) string {
	salted := hi(h, []byte(password), salt, iter)
	clientKey := hmacSum(h, salted, []byte("Client Key"))
	auth := []byte(clientFirstBare + "," + serverFirst + "," + withoutProof)
	sig := hmacSum(h, storedKey(h, clientKey), auth)
	proof := make([]byte, len(sig))
	for i := range sig {
		proof[i] = clientKey[i] ^ sig[i]
	}
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)
}

func TestSASLBindingAndNonceChecked(t *testing.T) {
	f := newSASLFixture(t, 1000)
	const snonce = "SERVERNONCE"
	f.sasl.newNonce = func() (string, error) { return snonce, nil }
	bare := "n=+821012345678,r=abc"
	for _, tt := range []struct {
		gs2, withoutProof, cond string
	}{
		{"n,,", "c=biws,r=abc" + snonce, ""}, // control: the helper is right
		{"y,,", "c=eSws,r=abc" + snonce + ",x=ext", ""},
		{"n,,", "c=eSws,r=abc" + snonce, ConditionNotAuthorized}, // y,, claimed
		{"y,,", "c=biws,r=abc" + snonce, ConditionNotAuthorized}, // n,, claimed
		{"n,,", "c=" + base64.StdEncoding.EncodeToString([]byte("n,a=x,")) + ",r=abc" + snonce, ConditionNotAuthorized},
		{"n,,", "c=biws,r=abc", ConditionNotAuthorized},                // server nonce dropped
		{"n,,", "c=biws,r=abc" + snonce + "X", ConditionNotAuthorized}, // nonce changed
		{"n,,", "c=biws,r=xyz" + snonce, ConditionNotAuthorized},       // client nonce changed
	} {
		for _, mech := range []string{MechanismSCRAMSHA256, MechanismSCRAMSHA1} {
			h, keys := sha256.New, f.creds.SHA256
			if mech == MechanismSCRAMSHA1 {
				h, keys = sha1.New, f.creds.SHA1
			}
			ex, _ := f.sasl.Start(mech, false)
			sf, _, err := ex.Next(context.Background(), []byte(tt.gs2+bare))
			if err != nil {
				t.Fatal(err)
			}
			final := clientFinal(h, testPassword, keys.Salt, keys.Iterations, bare, string(sf), tt.withoutProof)
			_, done, err := ex.Next(context.Background(), []byte(final))
			if tt.cond == "" {
				if err != nil || !done {
					t.Errorf("%s %q: %v, want success", mech, final, err)
				}
				continue
			}
			if err == nil || asFailure(t, err).Condition != tt.cond {
				t.Errorf("%s %q: %v, want %s", mech, final, err, tt.cond)
			}
		}
	}
}

const pendingPassword = "Pd3nd1ngPw"

// TestSASLPendingPassword: until the pending password logs in, the current
// one keeps working; its first login makes it current through Promote,
// whose generation the exchange then reports (SPEC.md "HTTP").
func TestSASLPendingPassword(t *testing.T) {
	for _, mech := range allMechs {
		t.Run(mech.Name, func(t *testing.T) {
			f := newSASLFixture(t, 5)
			a := f.store.accounts[testUser]
			var err error
			if a.Pending, err = NewCredentialsLike(pendingPassword, a.Credentials); err != nil {
				t.Fatal(err)
			}
			f.store.accounts[testUser] = a
			var promoted []Credentials
			promote := func(_ context.Context, n Number, c Credentials) (int64, error) {
				if n != testUser {
					t.Errorf("promoted %s", n)
				}
				promoted = append(promoted, c)
				return 4, nil
			}

			// Without Promote, the pending password does not log in.
			if _, fail := login(t, f.sasl, mech, true, true, string(testUser), pendingPassword, ""); fail == nil || fail.Condition != ConditionNotAuthorized {
				t.Fatalf("pending password without Promote: %v, want not-authorized", fail)
			}
			f.sasl.Promote = promote
			ex, fail := login(t, f.sasl, mech, true, true, string(testUser), testPassword, "")
			if fail != nil || ex.Generation() != 3 || len(promoted) != 0 {
				t.Fatalf("current password: %v, generation %d, promoted %d", fail, ex.Generation(), len(promoted))
			}
			ex, fail = login(t, f.sasl, mech, true, true, string(testUser), pendingPassword, "")
			if fail != nil || ex.Generation() != 4 || ex.Number() != testUser {
				t.Fatalf("pending password: %v, generation %d", fail, ex.Generation())
			}
			if len(promoted) != 1 || !reflect.DeepEqual(promoted[0], a.Pending) {
				t.Fatalf("promoted %+v, want the pending credentials", promoted)
			}

			// Replaced meanwhile: a failed login, counted.
			f.sasl.Promote = func(context.Context, Number, Credentials) (int64, error) { return 0, ErrNotFound }
			if _, fail := login(t, f.sasl, mech, true, true, string(testUser), pendingPassword, ""); fail == nil || fail.Condition != ConditionNotAuthorized {
				t.Fatalf("a replaced pending password: %v, want not-authorized", fail)
			}
			if f.sasl.Lockout.Locked(testUser) != 0 {
				t.Fatal("locked after one failure")
			}
			// The store failing: try again later.
			f.sasl.Promote = func(context.Context, Number, Credentials) (int64, error) { return 0, errors.New("db down") }
			if _, fail := login(t, f.sasl, mech, true, true, string(testUser), pendingPassword, ""); fail == nil || fail.Condition != ConditionTemporaryAuthFailure {
				t.Fatalf("promotion failing: %v, want temporary-auth-failure", fail)
			}
			// Wrong passwords still fail.
			f.sasl.Promote = promote
			if _, fail := login(t, f.sasl, mech, true, true, string(testUser), "wrong", ""); fail == nil || fail.Condition != ConditionNotAuthorized {
				t.Fatalf("wrong password: %v", fail)
			}
		})
	}
}
