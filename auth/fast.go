package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// FAST (XEP-0484) lets a client that logged in once log in again with a
// token instead of its password, in one round trip: HT-SHA-256-* (Hashed
// Token SASL, draft-schmaus-kitten-sasl-ht) sends
// HMAC-SHA-256(token, "Initiator" || channel binding data) and gets
// HMAC-SHA-256(token, "Responder" || same) back.
//
// The HMAC is keyed by the token, so the server needs the token itself
// at each login: the store keeps an id, and the token is HMAC(SASL.Secret,
// id), which the server derives again. A copy of the database alone
// (without the secret key) gives no token. A token belongs to one
// account, one client (the SASL2 user-agent id) and one password
// generation: a new password voids it. Each FAST login rotates it: the
// success carries a new token, and the older ones of that client go once
// the new one is used.

// FastTTL is how long a FAST token works.
const FastTTL = 14 * 24 * time.Hour

// FAST mechanisms: HT-SHA-256 with no channel binding, tls-exporter or
// tls-server-end-point. HT-*-UNIQ (tls-unique) is not offered: it has no
// meaning on TLS 1.3.
const (
	MechanismHTNone = "HT-SHA-256-NONE"
	MechanismHTExpr = "HT-SHA-256-EXPR"
	MechanismHTEndp = "HT-SHA-256-ENDP"
)

// FastToken is a stored FAST token.
type FastToken struct {
	ID         string // what the store keeps; the token is derived from it
	Number     Number
	UserAgent  string // the SASL2 <user-agent id/> it was issued to
	Generation int64  // the account's Generation when issued
	Created    time.Time
	Expires    time.Time
}

// FastStore keeps FAST tokens. Implemented by package storage.
type FastStore interface {
	// AddFastToken stores t.
	AddFastToken(ctx context.Context, t FastToken) error
	// FastTokens returns the tokens of n for userAgent that have not
	// expired at now, the newest first.
	FastTokens(ctx context.Context, n Number, userAgent string, now time.Time) ([]FastToken, error)
	// DeleteFastTokens removes n's tokens for userAgent created before
	// t (all of them when t is zero).
	DeleteFastTokens(ctx context.Context, n Number, userAgent string, before time.Time) error
}

// FastMechanisms returns the FAST mechanisms to offer on c.
func FastMechanisms(c Conn) []string {
	m := []string{}
	if c.Binding.Exporter != nil {
		m = append(m, MechanismHTExpr)
	}
	if c.Binding.EndPoint != nil {
		m = append(m, MechanismHTEndp)
	}
	return append(m, MechanismHTNone)
}

// fastBinding returns the channel binding data of a FAST mechanism on c.
func fastBinding(mech string, c Conn) ([]byte, bool) {
	switch mech {
	case MechanismHTNone:
		return nil, true
	case MechanismHTExpr:
		return c.Binding.Data(BindingTLSExporter)
	case MechanismHTEndp:
		return c.Binding.Data(BindingTLSServerEndPoint)
	}
	return nil, false
}

// IsFast reports whether mech names a FAST mechanism.
func IsFast(mech string) bool { return strings.HasPrefix(mech, "HT-") }

// fastToken is the token of id: what the client holds.
func (s *SASL) fastToken(id string) string {
	secret := s.Secret
	if len(secret) == 0 {
		secret = processSecret()
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("dialtone fast token\x00" + id))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// IssueFast makes and stores a new FAST token of n (at generation) for the
// client userAgent and returns the token and its expiry.
func (s *SASL) IssueFast(ctx context.Context, n Number, userAgent string, generation int64) (token string, expires time.Time, err error) {
	if s.Fast == nil || userAgent == "" {
		return "", time.Time{}, errors.New("auth: FAST needs a store and a user-agent id")
	}
	now := s.now()
	t := FastToken{ID: rand.Text(), Number: n, UserAgent: userAgent, Generation: generation, Created: now, Expires: now.Add(FastTTL)}
	if err := s.Fast.AddFastToken(ctx, t); err != nil {
		return "", time.Time{}, fmt.Errorf("auth: FAST token of %s: %w", n, err)
	}
	return s.fastToken(t.ID), t.Expires, nil
}

// FastExchange is one FAST login, made by SASL.BeginFast.
type FastExchange struct {
	s         *SASL
	mech      string
	cb        []byte
	userAgent string
	e         Exchange // for the lockout, user and generation rules of SASL
	used      FastToken
}

// BeginFast begins a FAST login with mech on c for the client userAgent
// (required: tokens are bound to it).
func (s *SASL) BeginFast(mech string, c Conn, userAgent string) (*FastExchange, error) {
	cb, ok := fastBinding(mech, c)
	if !ok || s.Fast == nil {
		return nil, &Failure{Condition: ConditionInvalidMechanism, Text: "mechanism not offered"}
	}
	if userAgent == "" {
		return nil, &Failure{Condition: ConditionMalformedRequest, Text: "FAST needs a user-agent id"}
	}
	return &FastExchange{s: s, mech: mech, cb: cb, userAgent: userAgent, e: Exchange{s: s, mech: mech}}, nil
}

// Number is the authenticated account once Next reported done.
func (f *FastExchange) Number() Number { return f.e.Number() }

// Generation is the account's generation the token was issued at.
func (f *FastExchange) Generation() int64 { return f.e.Generation() }

// Used is the token that logged in, once Next reported done.
func (f *FastExchange) Used() FastToken { return f.used }

// Next takes "username NUL initiator-hash" and, when it is the HMAC of one
// of the client's tokens, succeeds with the responder hash. A wrong or
// void token counts as a failed login, as a wrong password does.
func (f *FastExchange) Next(ctx context.Context, msg []byte) ([]byte, bool, error) {
	e := &f.e
	if e.state != stateInitial {
		return nil, false, &Failure{Condition: ConditionMalformedRequest, Text: exchangeOverText}
	}
	user, proof, ok := bytes.Cut(msg, []byte{0})
	if !ok || len(msg) > maxSASLMessage || len(user) == 0 || len(proof) != sha256.Size {
		return nil, false, e.fail(ConditionMalformedRequest, malformedText, nil)
	}
	e.setUser(string(user))
	if fl := e.lockedFailure(); fl != nil {
		return nil, false, fl
	}
	acct, known, fl := e.account(ctx)
	if fl != nil {
		return nil, false, fl
	}
	var list []FastToken
	if known {
		var err error
		if list, err = f.s.Fast.FastTokens(ctx, e.user, f.userAgent, f.s.now()); err != nil {
			return nil, false, e.fail(ConditionTemporaryAuthFailure, unavailableText, fmt.Errorf("auth: FAST tokens of %s: %w", e.user, err))
		}
	}
	found := false
	for _, t := range list {
		token := []byte(f.s.fastToken(t.ID))
		// Every token is checked, so that the time does not tell which.
		if hmac.Equal(hmacSum(sha256.New, token, append([]byte("Initiator"), f.cb...)), proof) &&
			t.Generation == acct.Generation && !found {
			f.used, found = t, true
		}
	}
	if !found {
		return nil, false, e.failCounted(ConditionNotAuthorized, notAuthorizedText)
	}
	e.gen = acct.Generation
	e.succeed()
	return hmacSum(sha256.New, []byte(f.s.fastToken(f.used.ID)), append([]byte("Responder"), f.cb...)), true, nil
}
