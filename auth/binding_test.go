package auth

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"dialtone/internal/scramtest"
	"dialtone/internal/tlscert"
)

// TestDowngradeHashVector checks the XEP-0474 hash against the value
// Monal's implementation prints for its example (SCRAM.m SSDPXepOutput).
func TestDowngradeHashVector(t *testing.T) {
	got := base64.StdEncoding.EncodeToString(DowngradeHash(sha1.New,
		[]string{"SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}, []string{"tls-server-end-point", "tls-exporter"}))
	if got != "dRc3RenuSY9ypgPpERowoaySQZY=" {
		t.Fatalf("DowngradeHash = %s", got)
	}
}

// scramLogin runs c against s on conn; the failure, if any.
func scramLogin(t *testing.T, s *SASL, conn Conn, c *scramtest.Client) *Failure {
	t.Helper()
	ex, err := s.Begin(c.Mechanism, conn)
	if err != nil {
		return asFailure(t, err)
	}
	ctx := context.Background()
	first, _, err := ex.Next(ctx, c.First())
	if err != nil {
		return asFailure(t, err)
	}
	final, err := c.Final(first)
	if err != nil {
		t.Fatal(err)
	}
	v, done, err := ex.Next(ctx, final)
	if err != nil {
		return asFailure(t, err)
	}
	if !done || c.Verify(v) != nil {
		t.Fatalf("success %q, %v: server signature wrong", v, done)
	}
	if !c.DowngradeOK(s.Offer(conn), conn.Binding.Types()) {
		t.Fatalf("d= does not hash the offer %v %v", s.Offer(conn), conn.Binding.Types())
	}
	return nil
}

func TestChannelBinding(t *testing.T) {
	f := newSASLFixture(t, 100)
	f.sasl.SHA512 = func() bool { return true }
	cb := ChannelBinding{Exporter: []byte("exporter-data-32-bytes-long....."), EndPoint: []byte("endpoint-hash")}
	conn := Conn{TLS: true, Binding: cb, SASL2: true}
	want := "SCRAM-SHA-512-PLUS SCRAM-SHA-256-PLUS SCRAM-SHA-1-PLUS SCRAM-SHA-512 SCRAM-SHA-256 SCRAM-SHA-1 PLAIN"
	if got := strings.Join(f.sasl.Offer(conn), " "); got != want {
		t.Fatalf("Offer = %s; want %s", got, want)
	}
	if got := strings.Join(f.sasl.Offer(Conn{TLS: true}), " "); got != "SCRAM-SHA-512 SCRAM-SHA-256 SCRAM-SHA-1 PLAIN" {
		t.Fatalf("Offer without binding = %s", got)
	}
	user := string(testUser)
	for _, tt := range []struct {
		name string
		c    scramtest.Client
		cond string // "": success
	}{
		{"exporter", scramtest.Client{Mechanism: "SCRAM-SHA-256-PLUS", BindingType: BindingTLSExporter, BindingData: cb.Exporter}, ""},
		{"end point sha-512", scramtest.Client{Mechanism: "SCRAM-SHA-512-PLUS", BindingType: BindingTLSServerEndPoint, BindingData: cb.EndPoint}, ""},
		{"sha-1", scramtest.Client{Mechanism: "SCRAM-SHA-1-PLUS", BindingType: BindingTLSExporter, BindingData: cb.Exporter}, ""},
		{"plain scram", scramtest.Client{Mechanism: "SCRAM-SHA-256"}, ""},
		{"wrong binding data", scramtest.Client{Mechanism: "SCRAM-SHA-256-PLUS", BindingType: BindingTLSExporter, BindingData: []byte("a proxy's exporter data.........")}, ConditionNotAuthorized},
		{"other type's data", scramtest.Client{Mechanism: "SCRAM-SHA-256-PLUS", BindingType: BindingTLSExporter, BindingData: cb.EndPoint}, ConditionNotAuthorized},
		{"tls-unique", scramtest.Client{Mechanism: "SCRAM-SHA-256-PLUS", BindingType: "tls-unique", BindingData: []byte("x")}, ConditionMalformedRequest},
		{"downgrade y", scramtest.Client{Mechanism: "SCRAM-SHA-256", Flag: "y"}, ConditionNotAuthorized},
		{"y on SASL1", scramtest.Client{Mechanism: "SCRAM-SHA-256", Flag: "y", User: "sasl1"}, ""},
		{"p on non-plus", scramtest.Client{Mechanism: "SCRAM-SHA-256", Flag: "p=tls-exporter", BindingData: cb.Exporter}, ConditionMalformedRequest},
		{"n on plus", scramtest.Client{Mechanism: "SCRAM-SHA-256-PLUS", Flag: "n"}, ConditionMalformedRequest},
		{"wrong password", scramtest.Client{Mechanism: "SCRAM-SHA-256-PLUS", BindingType: BindingTLSExporter, BindingData: cb.Exporter, Password: "wrong"}, ConditionNotAuthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.c
			on := conn
			if c.User == "sasl1" {
				on.SASL2 = false
			}
			c.User = user
			if c.Password == "" {
				c.Password = testPassword
			}
			fail := scramLogin(t, f.sasl, on, &c)
			switch {
			case tt.cond == "" && fail != nil:
				t.Fatalf("failed: %v", fail)
			case tt.cond != "" && (fail == nil || fail.Condition != tt.cond):
				t.Fatalf("got %v; want %s", fail, tt.cond)
			}
		})
	}
	// Where the server cannot bind, "y" is honest and -PLUS not offered.
	c := scramtest.Client{Mechanism: "SCRAM-SHA-256", Flag: "y", User: user, Password: testPassword}
	if fail := scramLogin(t, f.sasl, Conn{TLS: true}, &c); fail != nil {
		t.Fatalf("y without binding offered: %v", fail)
	}
	if _, err := f.sasl.Begin("SCRAM-SHA-256-PLUS", Conn{TLS: true}); err == nil || asFailure(t, err).Condition != ConditionInvalidMechanism {
		t.Fatalf("-PLUS without binding: %v", err)
	}
	// A client that saw a list without -PLUS detects the tampering.
	c = scramtest.Client{Mechanism: "SCRAM-SHA-256", User: user, Password: testPassword}
	if fail := scramLogin(t, f.sasl, conn, &c); fail != nil {
		t.Fatal(fail)
	}
	if c.DowngradeOK([]string{"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"}, nil) {
		t.Fatal("a stripped mechanism list matched d=")
	}
}

// TestSHA512Optional: an account without SHA-512 keys (made before they
// were kept) fails SCRAM-SHA-512 like a wrong password, and works with
// the others; NewCredentials makes all three.
func TestSHA512Optional(t *testing.T) {
	f := newSASLFixture(t, 100)
	f.sasl.SHA512 = func() bool { return true }
	if !f.creds.HasSHA512() {
		t.Fatal("NewCredentials made no SHA-512 keys")
	}
	old := f.creds
	old.SHA512 = ScramKeys{}
	acct := f.store.accounts[testUser]
	acct.Credentials = old
	f.store.accounts[testUser] = acct
	c := scramtest.Client{Mechanism: "SCRAM-SHA-512", User: string(testUser), Password: testPassword}
	if fail := scramLogin(t, f.sasl, Conn{TLS: true}, &c); fail == nil || fail.Condition != ConditionNotAuthorized {
		t.Fatalf("SHA-512 without keys: %v", fail)
	}
	c = scramtest.Client{Mechanism: "SCRAM-SHA-256", User: string(testUser), Password: testPassword}
	if fail := scramLogin(t, f.sasl, Conn{TLS: true}, &c); fail != nil {
		t.Fatalf("SHA-256: %v", fail)
	}
}

// TestSHA512Gate: closed while accounts lack keys, asked at most once per
// interval, open for good once none does.
func TestSHA512Gate(t *testing.T) {
	missing, asked := 2, 0
	g := &SHA512Gate{Every: time.Hour, Missing: func(context.Context) (int, error) { asked++; return missing, nil }}
	if g.Open() || g.Open() || asked != 1 {
		t.Fatalf("closed gate asked %d times", asked)
	}
	g.checked = time.Now().Add(-2 * time.Hour)
	missing = 0
	if !g.Open() || asked != 2 {
		t.Fatalf("gate not open after none missing (asked %d)", asked)
	}
	missing = 5
	if !g.Open() || asked != 2 {
		t.Fatal("an open gate closed or asked again")
	}
}

// FuzzChannelBinding sends any client-first and client-final to a -PLUS
// exchange and any FAST message to a FAST exchange: no panic, every error
// a *Failure, and nothing but the right proofs logs in.
func FuzzChannelBinding(f *testing.F) {
	f.Add([]byte("p=tls-exporter,,n=+821012345678,r=abc"), []byte("c=eD0=,r=abc,p=AAAA"), []byte("+821012345678\x00"+strings.Repeat("A", 32)))
	f.Add([]byte("y,,n=x,r=a"), []byte(""), []byte("\x00"))
	f.Add([]byte("p=tls-unique,a=x,n=x,r=a,g=1"), []byte("c=,r=,p="), []byte("x"))
	fx := newSASLFixture(f, 1<<30)
	fx.sasl.Fast = &memFast{}
	conn := Conn{TLS: true, Binding: ChannelBinding{Exporter: []byte("exporter"), EndPoint: []byte("endpoint")}}
	f.Fuzz(func(t *testing.T, first, final, fast []byte) {
		ctx := context.Background()
		ex, err := fx.sasl.Begin("SCRAM-SHA-256-PLUS", conn)
		if err != nil {
			t.Fatal(err)
		}
		_, done, err := ex.Next(ctx, first)
		if err == nil && !done {
			_, done, err = ex.Next(ctx, final)
		}
		var fail *Failure
		if done || (err != nil && !errors.As(err, &fail)) {
			t.Fatalf("%q %q: done %v, %v", first, final, done, err)
		}
		fe, err := fx.sasl.BeginFast(MechanismHTExpr, conn, "ua")
		if err != nil {
			t.Fatal(err)
		}
		if _, done, err := fe.Next(ctx, fast); done || !errors.As(err, &fail) {
			t.Fatalf("FAST %q: done %v, %v", fast, done, err)
		}
	})
}

// memFast is an in-memory FastStore with one token of testUser for "ua".
type memFast struct{}

func (*memFast) AddFastToken(context.Context, FastToken) error { return nil }
func (*memFast) FastTokens(_ context.Context, n Number, ua string, now time.Time) ([]FastToken, error) {
	return []FastToken{{ID: "id", Number: n, UserAgent: ua, Generation: 3, Created: now, Expires: now.Add(time.Hour)}}, nil
}
func (*memFast) DeleteFastTokens(context.Context, Number, string, time.Time) error { return nil }

// TestFastExchange: the token derived from the stored id logs in with the
// binding of the connection, and answers with the responder hash.
func TestFastExchange(t *testing.T) {
	fx := newSASLFixture(t, 100)
	fx.sasl.Fast = &memFast{}
	conn := Conn{TLS: true, Binding: ChannelBinding{Exporter: []byte("exporter")}}
	token := []byte(fx.sasl.fastToken("id"))
	for _, tt := range []struct {
		cb   string
		ok   bool
		mech string
	}{{"exporter", true, MechanismHTExpr}, {"other", false, MechanismHTExpr}, {"", true, MechanismHTNone}} {
		fe, err := fx.sasl.BeginFast(tt.mech, conn, "ua")
		if err != nil {
			t.Fatal(err)
		}
		msg := append([]byte(string(testUser)+"\x00"), hmacSum(sha256.New, token, []byte("Initiator"+tt.cb))...)
		resp, done, err := fe.Next(context.Background(), msg)
		if done != tt.ok || (tt.ok && !bytes.Equal(resp, hmacSum(sha256.New, token, []byte("Responder"+tt.cb)))) {
			t.Fatalf("%s with %q: %v, %v", tt.mech, tt.cb, done, err)
		}
	}
	if _, err := fx.sasl.BeginFast(MechanismHTEndp, conn, "ua"); err == nil {
		t.Fatal("HT-SHA-256-ENDP without the certificate's hash")
	}
}

// TestEndPointHashCached: the hash of the certificate presented last is
// kept (a login no longer parses it), alternating certificates each get
// their own, and a caller changing the returned bytes changes nothing
// for the next.
func TestEndPointHashCached(t *testing.T) {
	var ders [][]byte
	for _, name := range []string{"a.example", "b.example"} {
		c, err := tlscert.New(name, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ders = append(ders, c.Certificate[0])
	}
	for i := range 4 {
		der := ders[i%2]
		want := sha256.Sum256(der) // ECDSA with SHA-256
		got := EndPointHash(der)
		if !bytes.Equal(got, want[:]) {
			t.Fatalf("round %d: EndPointHash = %x, want %x", i, got, want)
		}
		got[0] ^= 0xff
	}
	if allocs := testing.AllocsPerRun(100, func() { EndPointHash(ders[1]) }); allocs > 1 {
		t.Errorf("EndPointHash of the last certificate: %v allocations, want at most 1 (no parsing)", allocs)
	}
	if EndPointHash([]byte("not a certificate")) != nil {
		t.Error("EndPointHash of garbage is not nil")
	}
}
