package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// The fuzz targets below each aim at one SASL message the server parses
// and check it against a reference written from the RFCs' grammars
// (RFC 5802 §7, RFC 4616 §2), independently of the server's code: the
// server must accept exactly what the grammar accepts (less what it does
// not support: channel binding, mandatory extensions), take the same
// fields out of it, and fail everything else with malformed-request.

// rfcSaslname decodes RFC 5802's saslname: 1*(value-safe-char / "=2C" /
// "=3D"), where value-safe-char is any UTF-8 character but NUL, ',' and '='.
func rfcSaslname(s string) (string, bool) {
	var out strings.Builder
	for s != "" {
		switch {
		case strings.HasPrefix(s, "=2C"):
			out.WriteByte(',')
			s = s[3:]
		case strings.HasPrefix(s, "=3D"):
			out.WriteByte('=')
			s = s[3:]
		case s[0] == 0 || s[0] == ',' || s[0] == '=':
			return "", false
		default:
			out.WriteByte(s[0])
			s = s[1:]
		}
	}
	return out.String(), out.Len() > 0
}

// rfcPrintable is RFC 5802's printable, at least once: %x21-2B / %x2D-7E.
func rfcPrintable(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= 0x21 && c <= 0x2b || c >= 0x2d && c <= 0x7e) {
			return false
		}
	}
	return s != ""
}

// rfcAttrVal is RFC 5802's attr-val: ALPHA "=" 1*value-char, value-char
// being any UTF-8 character but NUL and ','.
func rfcAttrVal(s string) bool {
	if len(s) < 3 || s[1] != '=' || !('a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z') {
		return false
	}
	return !strings.ContainsAny(s[2:], "\x00,")
}

// rfcClientFirst is what RFC 5802 makes of a client-first-message that
// this server supports ("n" or "y" flag, no mandatory extension).
type rfcClientFirst struct {
	gs2Header, authzid, username, nonce, bare string
}

func parseRFCClientFirst(msg string) (cf rfcClientFirst, ok bool) {
	if !utf8.ValidString(msg) || len(msg) > maxSASLMessage {
		return cf, false
	}
	// gs2-header = gs2-cbind-flag "," [ authzid ] ","
	if !strings.HasPrefix(msg, "n,") && !strings.HasPrefix(msg, "y,") {
		return cf, false // "p=" asks for channel binding, never offered
	}
	comma := strings.IndexByte(msg[2:], ',')
	if comma < 0 {
		return cf, false
	}
	if a := msg[2 : 2+comma]; a != "" {
		name, found := strings.CutPrefix(a, "a=")
		if !found {
			return cf, false
		}
		if cf.authzid, ok = rfcSaslname(name); !ok {
			return cf, false
		}
	}
	cf.gs2Header = msg[:2+comma+1]
	cf.bare = msg[len(cf.gs2Header):]
	// client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
	parts := strings.Split(cf.bare, ",")
	if len(parts) < 2 || strings.HasPrefix(parts[0], "m=") {
		return cf, false
	}
	name, found := strings.CutPrefix(parts[0], "n=")
	if !found {
		return cf, false
	}
	if cf.username, ok = rfcSaslname(name); !ok {
		return cf, false
	}
	if cf.nonce, found = strings.CutPrefix(parts[1], "r="); !found || !rfcPrintable(cf.nonce) {
		return cf, false
	}
	for _, ext := range parts[2:] {
		if !rfcAttrVal(ext) {
			return cf, false
		}
	}
	return cf, true
}

// FuzzSCRAMClientFirst: the server's parse of client-first-message
// against the grammar's.
func FuzzSCRAMClientFirst(f *testing.F) {
	u := "+821012345678"
	for _, s := range []string{
		"n,,n=" + u + ",r=abc", "y,,n=" + u + ",r=abc", "y,a=" + u + ",n=" + u + ",r=abc",
		"n,,n=" + u + ",r=abc,x=ext,y=a=b", "n,,n=+82=2C10=3D,r=abc", "n,,n=" + u + ",r=abc,x=",
		"n,,n=" + u + ",r=abc,x=a\x00", "p=tls-exporter,,n=" + u + ",r=abc", "n,,m=ext,n=" + u + ",r=abc",
		"n,,n=a=2Xb,r=abc", "n,a=,n=" + u + ",r=abc", "n,,n=" + u + ",r=ab c", "n,,n=é,r=~",
	} {
		f.Add([]byte(s))
	}
	fx := newSASLFixture(f, 1<<30)
	f.Fuzz(func(t *testing.T, msg []byte) {
		ex, err := fx.sasl.Start(MechanismSCRAMSHA256, true)
		if err != nil {
			t.Fatal(err)
		}
		got, fail := ex.parseClientFirst(msg)
		want, ok := parseRFCClientFirst(string(msg))
		switch {
		case ok && fail != nil:
			t.Fatalf("%q: refused (%v), but the grammar accepts it as %+v", msg, fail, want)
		case !ok && fail == nil:
			t.Fatalf("%q: accepted as %+v, but the grammar refuses it", msg, got)
		case !ok && fail.Condition != ConditionMalformedRequest:
			t.Fatalf("%q: %s, want malformed-request", msg, fail.Condition)
		case ok && (got.gs2Header != want.gs2Header || got.authzid != want.authzid || got.username != want.username ||
			got.nonce != want.nonce || got.bare != want.bare):
			t.Fatalf("%q: parsed %+v, the grammar says %+v", msg, got, want)
		}
	})
}

// FuzzSCRAMClientFinal: after a valid client-first-message of a known
// account, the server's answer to any client-final-message. It logs in
// exactly when the proof is the client proof of the account's password
// over the message's own attributes (computed here as a client does); a
// message the grammar refuses (or with a proof of the wrong size) is
// malformed-request; one that changes the channel binding or the nonce,
// or proves nothing, is not-authorized.
func FuzzSCRAMClientFinal(f *testing.F) {
	const (
		clientFirst = "n,,n=+821012345678,r=CNONCE"
		nonce       = "CNONCESNONCE"
	)
	fx := newSASLFixture(f, 1<<30)
	fx.sasl.newNonce = func() (string, error) { return "SNONCE", nil }
	keys := fx.creds.SHA256
	serverFirst := "r=" + nonce + ",s=" + base64.StdEncoding.EncodeToString(keys.Salt) + ",i=" + strconv.Itoa(keys.Iterations)
	serverFirst += ",d=" + base64.StdEncoding.EncodeToString(DowngradeHash(sha256.New, fx.sasl.Mechanisms(true), nil))
	// What the client derives from the password, once.
	clientKey := hmacSum(sha256.New, hi(sha256.New, []byte(testPassword), keys.Salt, keys.Iterations), []byte("Client Key"))
	proofOf := func(withoutProof string) string {
		sig := hmacSum(sha256.New, storedKey(sha256.New, clientKey), []byte(clientFirst[3:]+","+serverFirst+","+withoutProof))
		for i := range sig {
			sig[i] ^= clientKey[i]
		}
		return base64.StdEncoding.EncodeToString(sig)
	}
	zeroProof := ",p=" + base64.StdEncoding.EncodeToString(make([]byte, sha256.Size))
	for _, s := range []string{
		"c=biws,r=" + nonce + ",p=" + proofOf("c=biws,r="+nonce),
		"c=biws,r=" + nonce + ",x=1,p=" + proofOf("c=biws,r="+nonce+",x=1"),
		"c=biws,r=" + nonce + zeroProof, "c=biws,r=" + nonce + ",x=1" + zeroProof, "c=eSws,r=" + nonce + zeroProof,
		"c=biws,r=CNONCE" + zeroProof, "c=biws,r=" + nonce + ",p=AAAA", "c=biws,r=" + nonce + ",p=x" + zeroProof,
		"c=biws,r=" + nonce + ",x=\xff" + zeroProof, "c=biws,r=" + nonce + ",x=" + zeroProof,
		"c=biws" + zeroProof, "r=" + nonce + ",c=biws" + zeroProof, "c=biw,r=" + nonce + zeroProof, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, final []byte) {
		ex, err := fx.sasl.Start(MechanismSCRAMSHA256, true)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if ch, _, err := ex.Next(ctx, []byte(clientFirst)); err != nil || string(ch) != serverFirst {
			t.Fatalf("client-first: %q, %v; want %q", ch, err, serverFirst)
		}
		ch, done, err := ex.Next(ctx, final)
		want := rfcClientFinalOutcome(string(final), nonce, "n,,", proofOf)
		var fail *Failure
		switch {
		case want == "" && (!done || err != nil || !bytes.HasPrefix(ch, []byte("v="))):
			t.Fatalf("%q, the right proof: %q, %v, %v; want success", final, ch, done, err)
		case want != "" && (done || !errors.As(err, &fail)):
			t.Fatalf("%q: %q, %v, %v; want %s", final, ch, done, err, want)
		case want != "" && fail.Condition != want:
			t.Fatalf("%q: %s, want %s", final, fail.Condition, want)
		}
		if err != nil {
			assertNoSecrets(t, err, fx.creds, testPassword)
		}
	})
}

// rfcClientFinalOutcome is the condition RFC 5802 calls for on final ("":
// success), proofOf giving the right proof for the message without it:
//
//	client-final-message = channel-binding "," nonce ["," extensions] "," proof
//	channel-binding = "c=" base64 ; proof = "p=" base64
func rfcClientFinalOutcome(final, nonce, gs2Header string, proofOf func(withoutProof string) string) string {
	if len(final) > maxSASLMessage || !utf8.ValidString(final) {
		return ConditionMalformedRequest
	}
	parts := strings.Split(final, ",")
	if len(parts) < 3 {
		return ConditionMalformedRequest
	}
	cb, okC := strings.CutPrefix(parts[0], "c=")
	r, okR := strings.CutPrefix(parts[1], "r=")
	last := parts[len(parts)-1]
	proof, okP := strings.CutPrefix(last, "p=")
	if !okC || !okR || !okP {
		return ConditionMalformedRequest
	}
	for _, ext := range parts[2 : len(parts)-1] {
		// "p=" only once, last.
		if !rfcAttrVal(ext) || strings.HasPrefix(ext, "p=") {
			return ConditionMalformedRequest
		}
	}
	binding, errC := base64.StdEncoding.Strict().DecodeString(cb)
	p, errP := base64.StdEncoding.Strict().DecodeString(proof)
	if errC != nil || errP != nil || len(p) != sha256.Size {
		return ConditionMalformedRequest
	}
	if string(binding) != gs2Header || r != nonce || proof != proofOf(final[:len(final)-len(last)-1]) {
		return ConditionNotAuthorized
	}
	return ""
}

// FuzzPLAIN: the server's answer to a PLAIN message (RFC 4616):
//
//	message = [authzid] UTF8NUL authcid UTF8NUL passwd ; authcid, passwd: 1*SAFE (UTF-8 but NUL)
//
// Only the known account's password, with no authzid or its own, logs in;
// what the grammar refuses is malformed-request. (An empty message is no
// initial response, which asks for a challenge.)
func FuzzPLAIN(f *testing.F) {
	u := "+821012345678"
	for _, s := range []string{
		"\x00" + u + "\x00" + testPassword, u + "\x00" + u + "\x00" + testPassword, "\x00010-1234-5678\x00" + testPassword,
		"\x00" + u + "\x00wrong", "+821099998888\x00" + u + "\x00" + testPassword, "\x00\x00" + testPassword,
		"\x00" + u + "\x00", "\x00" + u + "\x00" + testPassword + "\x00", "\x00" + u + "\x00\xff", "x",
	} {
		f.Add([]byte(s))
	}
	fx := newSASLFixture(f, 1<<30)
	f.Fuzz(func(t *testing.T, msg []byte) {
		ex, err := fx.sasl.Start(MechanismPLAIN, true)
		if err != nil {
			t.Fatal(err)
		}
		ch, done, err := ex.Next(context.Background(), msg)
		if len(msg) == 0 {
			if ch == nil || done || err != nil {
				t.Fatalf("no initial response: %q, %v, %v; want an empty challenge", ch, done, err)
			}
			return
		}
		parts := strings.Split(string(msg), "\x00")
		wellFormed := len(msg) <= maxSASLMessage && utf8.Valid(msg) && len(parts) == 3 && parts[1] != "" && parts[2] != ""
		var fail *Failure
		switch {
		case err != nil && !errors.As(err, &fail):
			t.Fatalf("%q: %v, not a SASL failure", msg, err)
		case !wellFormed && (done || fail == nil || fail.Condition != ConditionMalformedRequest):
			t.Fatalf("%q: done %v, %v; the grammar refuses it: want malformed-request", msg, done, err)
		case wellFormed && fail != nil && fail.Condition == ConditionMalformedRequest:
			t.Fatalf("%q: malformed-request, but the grammar accepts it", msg)
		case done && (err != nil || parts[2] != testPassword):
			t.Fatalf("%q: logged in, %v, without the password", msg, err)
		case done:
			n, perr := fx.sasl.Parser.Parse(parts[1])
			if perr != nil || n != testUser || ex.Number() != testUser {
				t.Fatalf("%q: logged in as %q (%v), not as the account whose password it gave", msg, ex.Number(), perr)
			}
		}
		if err != nil {
			assertNoSecrets(t, err, fx.creds, testPassword)
		}
	})
}
