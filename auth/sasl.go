package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"mellium.im/xmpp/jid"
)

// SASL mechanism names the server offers.
const (
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismSCRAMSHA1   = "SCRAM-SHA-1"
	MechanismPLAIN       = "PLAIN"
	// PlusSuffix makes the channel-binding variant of a SCRAM mechanism
	// (RFC 5802 §4), e.g. SCRAM-SHA-256-PLUS.
	PlusSuffix = "-PLUS"
)

// SASL failure conditions: the element names of RFC 6120 §6.5 that this
// package produces or that the XMPP layer needs around it, for <failure/>.
const (
	ConditionNotAuthorized        = "not-authorized"
	ConditionTemporaryAuthFailure = "temporary-auth-failure"
	ConditionMalformedRequest     = "malformed-request"
	ConditionInvalidAuthzid       = "invalid-authzid"
	ConditionInvalidMechanism     = "invalid-mechanism"
	ConditionAborted              = "aborted"
	ConditionEncryptionRequired   = "encryption-required"
)

const (
	// maxSASLMessage is far above any honest client-first, client-final or
	// PLAIN message, and keeps AuthMessage small.
	maxSASLMessage = 2048
	// serverNonceSize is in random bytes; RFC 5802 wants the nonce
	// unguessable.
	serverNonceSize = 18
	fakeKeyLabel    = "dialtone fake scram keys"

	// Texts for Failure.Text. Wrong passwords and unknown users share the
	// (empty) not-authorized text.
	notAuthorizedText              = ""
	lockedText                     = "too many failed logins, try again in "
	malformedText                  = "malformed SASL message"
	unavailableText                = "authentication is unavailable, try again later"
	channelBindingNotSupportedText = "channel binding is not supported"
	bindingTypeText                = "channel binding type not offered on this connection"
	downgradeText                  = "channel binding was offered: a client that can bind must"
	bindingMismatchText            = "channel binding does not match this connection"
	notYourselfText                = "you may only act as yourself"
	exchangeOverText               = "authentication exchange is over"
)

// CredentialSource is the part of Accounts that SASL needs.
type CredentialSource interface {
	// Account returns the stored account for n, or ErrNotFound.
	Account(ctx context.Context, n Number) (Account, error)
}

// PromoteFunc makes the pending password of n, whose keys are pending
// (Account.Pending), its current one, because it was just used to log in
// (SPEC.md "HTTP"): from then on only it works, and the sessions that
// logged in with an older password are to be closed. It returns the
// account's Generation from then on. ErrNotFound: those keys are neither
// pending nor current any more (a newer password replaced them).
type PromoteFunc func(ctx context.Context, n Number, pending Credentials) (generation int64, err error)

// SASL is the server side of SASL authentication (RFC 4422) for XMPP,
// working only from stored SCRAM keys: SCRAM-SHA-256, SCRAM-SHA-1 (RFC 5802,
// RFC 7677), SCRAM-SHA-512 when every account has its keys, each also as
// -PLUS with channel binding (RFC 5929 tls-server-end-point, RFC 9266
// tls-exporter) on a connection whose TLS this server terminates, and PLAIN
// (RFC 4616) on TLS. Server-first messages carry the XEP-0474 downgrade
// protection hash. Unknown users fail exactly like wrong passwords. A SASL is safe
// for concurrent use once set up; each authentication is an Exchange.
type SASL struct {
	Parser  *NumberParser    // reads usernames and authorization identities
	Store   CredentialSource // where credentials come from
	Lockout *Lockout         // may be nil: no lockout
	// Secret keys the fake salts of unknown users, which must stay the same
	// across attempts and restarts so that they look stored. Empty: a
	// random secret per process.
	Secret []byte
	// Domain, when set, lets a client give its authorization identity as
	// the bare JID number@Domain (RFC 6120 §6.3.8); empty refuses JID forms.
	Domain string
	// Promote is called when a login used the account's pending password;
	// nil: pending passwords do not log in.
	Promote PromoteFunc
	// Tickets are the web client's single-use logins (see Ticket), taken
	// as a password by SCRAM and PLAIN alike; nil: none.
	Tickets TicketStore
	// SHA512 reports whether SCRAM-SHA-512 is offered. Mechanisms are
	// offered before the user is known, and accounts whose password was
	// set before SHA-512 keys were kept have none: it should say yes only
	// once every account has them (see storage). nil: never offered.
	SHA512 func() bool
	// Fast keeps FAST tokens (XEP-0484); nil: no FAST.
	Fast FastStore

	// Test hooks; nil in production.
	newNonce  func() (string, error)
	parseUser func(string) (Number, error)
	clock     func() time.Time
	// noDowngradeHash leaves XEP-0474's d= out, for the RFC test vectors.
	noDowngradeHash bool
}

// processSecret stands in for an empty SASL.Secret.
var processSecret = sync.OnceValue(func() []byte {
	b := make([]byte, 32)
	rand.Read(b) // never fails since Go 1.24
	return b
})

// Failure is a SASL failure: Condition is the RFC 6120 §6.5 condition
// element name (one of the Condition constants), Text an optional
// human-readable explanation safe to send to the client (never a key or a
// password). Unwrap gives the internal cause, if any, for logging.
type Failure struct {
	Condition string
	Text      string

	cause error
}

// Error implements error.
func (f *Failure) Error() string {
	s := "sasl: " + f.Condition
	if f.Text != "" {
		s += ": " + f.Text
	}
	if f.cause != nil {
		s += ": " + f.cause.Error()
	}
	return s
}

// Unwrap returns the internal cause (e.g. a store error), which is not for
// the client.
func (f *Failure) Unwrap() error { return f.cause }

// Mechanisms returns the mechanisms to advertise on a connection without
// channel binding, strongest first (Offer with only TLS known).
func (s *SASL) Mechanisms(tls bool) []string { return s.Offer(Conn{TLS: tls}) }

// Offer returns the mechanisms to advertise on c, strongest first: the
// -PLUS ones when c can bind (then on every such connection alike, since
// clients pin the strongest mechanism they have seen), SCRAM, and PLAIN
// only on TLS.
func (s *SASL) Offer(c Conn) []string {
	var scram []string
	if s.SHA512 != nil && s.SHA512() {
		scram = append(scram, MechanismSCRAMSHA512)
	}
	scram = append(scram, MechanismSCRAMSHA256, MechanismSCRAMSHA1)
	var out []string
	if c.Binding.Can() {
		for _, m := range scram {
			out = append(out, m+PlusSuffix)
		}
	}
	out = append(out, scram...)
	if c.TLS {
		out = append(out, MechanismPLAIN)
	}
	return out
}

// Start begins an exchange with the mechanism the client picked on a
// connection without channel binding (Begin with only TLS known).
func (s *SASL) Start(mechanism string, tls bool) (*Exchange, error) {
	return s.Begin(mechanism, Conn{TLS: tls})
}

// Begin begins an exchange with the mechanism the client picked on c. A
// mechanism not in Offer(c) gets invalid-mechanism.
func (s *SASL) Begin(mechanism string, c Conn) (*Exchange, error) {
	offered := s.Offer(c)
	e := &Exchange{s: s, mech: mechanism, conn: c, offered: offered}
	if !slices.Contains(offered, mechanism) {
		return nil, &Failure{Condition: ConditionInvalidMechanism, Text: "mechanism not offered"}
	}
	base, plus := strings.CutSuffix(mechanism, PlusSuffix)
	e.plus = plus
	switch base {
	case MechanismSCRAMSHA512:
		e.h = sha512.New
	case MechanismSCRAMSHA256:
		e.h = sha256.New
	case MechanismSCRAMSHA1:
		e.h = sha1.New
	}
	if (s.Parser == nil && s.parseUser == nil) || s.Store == nil {
		return nil, &Failure{Condition: ConditionTemporaryAuthFailure, Text: unavailableText,
			cause: errors.New("auth: SASL without Parser or Store")}
	}
	return e, nil
}

type exchangeState int

const (
	stateInitial      exchangeState = iota // nothing received yet
	stateAwaitInitial                      // sent an empty challenge for a missing initial response
	stateAwaitFinal                        // SCRAM: sent server-first
	stateDone                              // succeeded or failed
)

// Exchange is one SASL authentication attempt, made by SASL.Start. It is
// not safe for concurrent use (one stream drives it).
type Exchange struct {
	s       *SASL
	mech    string
	h       func() hash.Hash // nil for PLAIN
	state   exchangeState
	conn    Conn     // the connection it runs on
	offered []string // the mechanisms offered there, for XEP-0474
	plus    bool     // a -PLUS mechanism
	cbData  []byte   // the channel binding data the client chose

	rawUser string // username as the client sent it (decoded)
	user    Number // parsed username; empty when it is not a number
	counted bool   // Lockout.Fail already called for this exchange

	// SCRAM state between client-first and client-final.
	keys            ScramKeys
	known           bool        // keys are a stored account's, not fake
	pendingKeys     ScramKeys   // of the pending password, same salt as keys; zero: none
	pending         Credentials // the pending password's credentials, for Promote
	tickets         []exchangeTicket
	gen             int64
	lastLogin       time.Time // of an account already active, as read; zero otherwise
	gs2Header       string
	clientFirstBare string
	serverFirst     string
	nonce           string

	authenticated bool
}

// LastLogin returns, once the exchange succeeded, when the account last
// logged in as the exchange read it, if it was already active; zero when
// it was not (its first login makes it active) or the exchange did not
// read it. The server skips recording a login that soon after another.
func (e *Exchange) LastLogin() time.Time {
	if !e.authenticated {
		return time.Time{}
	}
	return e.lastLogin
}

// activeSince is the last login of an active account, zero for any other.
func activeSince(a Account) time.Time {
	if a.State != StateActive {
		return time.Time{}
	}
	return a.LastLogin
}

// Mechanism returns the mechanism of the exchange.
func (e *Exchange) Mechanism() string { return e.mech }

// Number returns the authenticated account's number once Next reported
// done; before that it is empty.
func (e *Exchange) Number() Number {
	if !e.authenticated {
		return ""
	}
	return e.user
}

// Generation returns the Generation of the account's credentials that
// authenticated, so that a later password change can end this session.
func (e *Exchange) Generation() int64 {
	if !e.authenticated {
		return 0
	}
	return e.gen
}

// Next takes the client's next message (already base64-decoded; nil or
// empty for a missing initial response) and returns the challenge to send,
// or, with done, the additional data with success (SCRAM server-final,
// nil for PLAIN). A non-nil err is always a *Failure, and ends the
// exchange; so does success.
func (e *Exchange) Next(ctx context.Context, response []byte) (challenge []byte, done bool, err error) {
	switch e.state {
	case stateInitial:
		if len(response) == 0 {
			// RFC 6120 §6.4.2: no initial response, so ask for it.
			e.state = stateAwaitInitial
			return []byte{}, false, nil
		}
	case stateAwaitInitial:
		if len(response) == 0 {
			return nil, false, e.fail(ConditionMalformedRequest, "empty response", nil)
		}
	case stateAwaitFinal:
		return e.scramFinal(ctx, response)
	default:
		return nil, false, &Failure{Condition: ConditionMalformedRequest, Text: exchangeOverText}
	}
	if e.h == nil {
		return e.plain(ctx, response)
	}
	return e.scramFirst(ctx, response)
}

// fail ends the exchange without counting it against the number: no
// password was tried (malformed client-first, refused authzid, locked, store
// down).
func (e *Exchange) fail(condition, text string, cause error) *Failure {
	e.state = stateDone
	return &Failure{Condition: condition, Text: text, cause: cause}
}

// failCounted ends the exchange as a failed login that the lockout counts,
// at most once per exchange (SPEC "Accounts").
func (e *Exchange) failCounted(condition, text string) *Failure {
	if e.user != "" && !e.counted {
		e.counted = true
		e.s.Lockout.Fail(e.user)
	}
	return e.fail(condition, text, nil)
}

func (e *Exchange) succeed() {
	e.state = stateDone
	e.authenticated = true
	e.s.Lockout.Succeed(e.user)
}

// lockedFailure returns the failure for a locked number, or nil.
func (e *Exchange) lockedFailure() *Failure {
	if e.user == "" {
		return nil
	}
	d := e.s.Lockout.Locked(e.user)
	if d <= 0 {
		return nil
	}
	return e.fail(ConditionTemporaryAuthFailure, lockedText+d.Round(time.Second).String(), nil)
}

func (s *SASL) resolve(username string) (Number, error) {
	if s.parseUser != nil {
		return s.parseUser(username)
	}
	return s.Parser.Parse(username)
}

// setUser records the username; a string that is not a valid number
// leaves user empty and the exchange goes on to fail like a wrong password.
func (e *Exchange) setUser(username string) {
	e.rawUser = username
	if n, err := e.s.resolve(username); err == nil {
		e.user = n
	}
}

// sameAccount reports whether authzid names the account of the username
// (RFC 4422 §3.4.1: we only let users act as themselves).
func (e *Exchange) sameAccount(authzid string) bool {
	if authzid == "" || authzid == e.rawUser {
		return true
	}
	local := authzid
	if strings.Contains(authzid, "@") {
		if e.s.Domain == "" {
			return false
		}
		j, err := jid.Parse(authzid)
		if err != nil || j.Resourcepart() != "" {
			return false
		}
		ours, err := jid.New("", e.s.Domain, "")
		if err != nil || j.Domainpart() != ours.Domainpart() {
			return false
		}
		local = j.Localpart()
	}
	if e.user == "" {
		return false
	}
	n, err := e.s.resolve(local)
	return err == nil && n == e.user
}

// account returns the stored account of the exchange's user; ok is false
// when there is none (latent or invalid), so the caller goes on with fake
// keys. A store failure is a temporary-auth-failure.
func (e *Exchange) account(ctx context.Context) (acct Account, ok bool, f *Failure) {
	if e.user == "" {
		return Account{}, false, nil
	}
	acct, err := e.s.Store.Account(ctx, e.user)
	switch {
	case errors.Is(err, ErrNotFound):
		return Account{}, false, nil
	case err != nil:
		return Account{}, false, e.fail(ConditionTemporaryAuthFailure, unavailableText,
			fmt.Errorf("auth: looking up %s: %w", e.user, err))
	}
	return acct, true, nil
}

// fakeKeys are the keys shown for a user without usable stored keys:
// deterministic per username and mechanism, like a stored account's, and
// matching no password.
func (e *Exchange) fakeKeys(size int) ScramKeys {
	secret := e.s.Secret
	if len(secret) == 0 {
		secret = processSecret()
	}
	id := e.rawUser
	if e.user != "" {
		id = string(e.user) // every spelling of a number gets the same salt
	}
	part := func(label string) []byte {
		h := sha256.New // what earlier versions used: the same salts as before
		if size > sha256.Size {
			h = sha512.New
		}
		mac := hmac.New(h, secret)
		mac.Write([]byte(fakeKeyLabel + "\x00" + label + "\x00" + strings.TrimSuffix(e.mech, PlusSuffix) + "\x00" + id))
		return mac.Sum(nil)
	}
	// The HMAC's output is long enough for the keys of the hash; a
	// -PLUS mechanism shows the salt of its base, as a stored account does.
	return ScramKeys{
		Salt:       part("salt")[:saltSize],
		Iterations: DefaultIterations,
		StoredKey:  part("stored")[:size],
		ServerKey:  part("server")[:size],
	}
}

// plain handles "authzid NUL authcid NUL password" (RFC 4616).
func (e *Exchange) plain(ctx context.Context, msg []byte) ([]byte, bool, error) {
	if len(msg) > maxSASLMessage {
		return nil, false, e.fail(ConditionMalformedRequest, malformedText, nil)
	}
	parts := bytes.Split(msg, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 || len(parts[2]) == 0 ||
		!utf8.Valid(parts[0]) || !utf8.Valid(parts[1]) || !utf8.Valid(parts[2]) {
		return nil, false, e.fail(ConditionMalformedRequest, malformedText, nil)
	}
	e.setUser(string(parts[1]))
	if !e.sameAccount(string(parts[0])) {
		return nil, false, e.fail(ConditionInvalidAuthzid, notYourselfText, nil)
	}
	if f := e.lockedFailure(); f != nil {
		return nil, false, f
	}
	acct, ok, f := e.account(ctx)
	if f != nil {
		return nil, false, f
	}
	known := ok && usableKeys(acct.Credentials.SHA256, sha256.Size)
	checked := acct
	if !known {
		// Do the same PBKDF2 work as for a stored account.
		checked = Account{Credentials: Credentials{SHA256: e.fakeKeys(sha256.Size)}}
	}
	if e.s.Promote == nil {
		checked.Pending = Credentials{}
	}
	match := checked.MatchPassword(string(parts[2]))
	if match == NoMatch && known {
		t, ok, f := e.plainTicket(ctx, acct, string(parts[2]))
		if f != nil {
			return nil, false, f
		}
		if ok {
			if f := e.useTicket(ctx, t); f != nil {
				return nil, false, f
			}
			e.gen = acct.Generation
			e.succeed()
			return nil, true, nil
		}
	}
	if match == NoMatch || !known {
		return nil, false, e.failCounted(ConditionNotAuthorized, notAuthorizedText)
	}
	e.gen = acct.Generation
	e.lastLogin = activeSince(acct)
	if match == PendingPassword {
		e.pending = acct.Pending
		if f := e.promote(ctx); f != nil {
			return nil, false, f
		}
	}
	e.succeed()
	return nil, true, nil
}

// scramFirst handles client-first-message and answers server-first-message
// (RFC 5802 §5.1, §7).
func (e *Exchange) scramFirst(ctx context.Context, msg []byte) ([]byte, bool, error) {
	cf, f := e.parseClientFirst(msg)
	if f != nil {
		return nil, false, f
	}
	e.setUser(cf.username)
	if !e.sameAccount(cf.authzid) {
		return nil, false, e.fail(ConditionInvalidAuthzid, notYourselfText, nil)
	}
	if f := e.lockedFailure(); f != nil {
		return nil, false, f
	}
	acct, ok, f := e.account(ctx)
	if f != nil {
		return nil, false, f
	}
	size := e.h().Size()
	if ok {
		e.keys = acct.Credentials.keys(size)
		e.known = usableKeys(e.keys, size)
		e.gen = acct.Generation
		e.lastLogin = activeSince(acct)
		pending := acct.Pending.keys(size)
		// The salt is sent before the client proves anything, so only a
		// pending password salted alike can be checked in this exchange.
		if e.known && e.s.Promote != nil && usableKeys(pending, size) && sameDerivation(pending, e.keys) {
			e.pendingKeys, e.pending = pending, acct.Pending
		}
		if e.known {
			if e.tickets, f = e.usableTickets(ctx, acct, size); f != nil {
				return nil, false, f
			}
		}
	}
	if !e.known {
		e.keys = e.fakeKeys(size)
	}
	snonce, err := e.s.serverNonce()
	if err != nil {
		return nil, false, e.fail(ConditionTemporaryAuthFailure, unavailableText, err)
	}
	e.gs2Header = cf.gs2Header
	e.clientFirstBare = cf.bare
	e.nonce = cf.nonce + snonce
	e.serverFirst = "r=" + e.nonce +
		",s=" + base64.StdEncoding.EncodeToString(e.keys.Salt) +
		",i=" + strconv.Itoa(e.keys.Iterations)
	if !e.s.noDowngradeHash {
		e.serverFirst += ",d=" + base64.StdEncoding.EncodeToString(DowngradeHash(e.h, e.offered, e.conn.Binding.Types()))
	}
	e.state = stateAwaitFinal
	return []byte(e.serverFirst), false, nil
}

func (s *SASL) serverNonce() (string, error) {
	if s.newNonce != nil {
		return s.newNonce()
	}
	b := make([]byte, serverNonceSize)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: server nonce: %w", err)
	}
	// Base64 without padding uses only printable characters other than ','.
	return base64.RawStdEncoding.EncodeToString(b), nil
}

type clientFirst struct {
	gs2Header string // "n,," or "y,a=…,": what c= must repeat
	authzid   string // decoded
	username  string // decoded
	nonce     string
	bare      string // client-first-message-bare, for AuthMessage
}

// parseClientFirst reads
//
//	gs2-cbind-flag "," [ "a=" saslname ] "," [ "m=" … "," ] "n=" saslname "," "r=" c-nonce [ "," extensions ]
func (e *Exchange) parseClientFirst(msg []byte) (clientFirst, *Failure) {
	malformed := func(text string) (clientFirst, *Failure) {
		return clientFirst{}, e.fail(ConditionMalformedRequest, text, nil)
	}
	if len(msg) > maxSASLMessage || !utf8.Valid(msg) {
		return malformed(malformedText)
	}
	fields := strings.Split(string(msg), ",")
	if len(fields) < 4 {
		return malformed(malformedText)
	}
	var cf clientFirst
	switch flag := fields[0]; {
	case flag == "n" && !e.plus:
	case flag == "y" && !e.plus:
		// The client can bind but saw no -PLUS: a downgrade when this
		// connection offered it (RFC 5802 §6).
		if e.conn.Binding.Can() && e.conn.SASL2 {
			return clientFirst{}, e.fail(ConditionNotAuthorized, downgradeText, nil)
		}
	case strings.HasPrefix(flag, "p=") && e.plus:
		data, ok := e.conn.Binding.Data(flag[2:])
		if !ok {
			return malformed(bindingTypeText)
		}
		e.cbData = data
	case strings.HasPrefix(flag, "p="):
		return malformed(channelBindingNotSupportedText)
	default:
		return malformed(malformedText)
	}
	if a := fields[1]; a != "" {
		v, ok := strings.CutPrefix(a, "a=")
		if !ok {
			return malformed(malformedText)
		}
		if cf.authzid, ok = decodeSaslname(v); !ok {
			return malformed(malformedText)
		}
	}
	cf.gs2Header = fields[0] + "," + fields[1] + ","
	cf.bare = string(msg[len(cf.gs2Header):])
	rest := fields[2:]
	if strings.HasPrefix(rest[0], "m=") {
		return malformed("mandatory extension not supported")
	}
	v, ok := strings.CutPrefix(rest[0], "n=")
	if !ok {
		return malformed(malformedText)
	}
	if cf.username, ok = decodeSaslname(v); !ok {
		return malformed(malformedText)
	}
	if cf.nonce, ok = strings.CutPrefix(rest[1], "r="); !ok || !printable(cf.nonce) {
		return malformed(malformedText)
	}
	for _, ext := range rest[2:] {
		if !isAttrVal(ext) {
			return malformed(malformedText)
		}
	}
	return cf, nil
}

// scramFinal handles client-final-message and answers server-final-message
// (RFC 5802 §5.1, §7).
func (e *Exchange) scramFinal(ctx context.Context, msg []byte) ([]byte, bool, error) {
	if len(msg) > maxSASLMessage || !utf8.Valid(msg) {
		return nil, false, e.failCounted(ConditionMalformedRequest, malformedText)
	}
	// c=… "," r=… ["," extensions] "," p=…
	s := string(msg)
	fields := strings.Split(s, ",")
	if len(fields) < 3 {
		return nil, false, e.failCounted(ConditionMalformedRequest, malformedText)
	}
	cb, okC := strings.CutPrefix(fields[0], "c=")
	nonce, okR := strings.CutPrefix(fields[1], "r=")
	last := fields[len(fields)-1]
	proofB64, okP := strings.CutPrefix(last, "p=")
	if !okC || !okR || !okP {
		return nil, false, e.failCounted(ConditionMalformedRequest, malformedText)
	}
	for _, ext := range fields[2 : len(fields)-1] {
		if !isAttrVal(ext) || strings.HasPrefix(ext, "p=") {
			return nil, false, e.failCounted(ConditionMalformedRequest, malformedText)
		}
	}
	size := e.h().Size()
	proof, err := base64.StdEncoding.Strict().DecodeString(proofB64)
	if err != nil || len(proof) != size {
		return nil, false, e.failCounted(ConditionMalformedRequest, malformedText)
	}
	binding, err := base64.StdEncoding.Strict().DecodeString(cb)
	if err != nil {
		return nil, false, e.failCounted(ConditionMalformedRequest, malformedText)
	}
	if nonce != e.nonce {
		// A changed nonce could be a replay.
		return nil, false, e.failCounted(ConditionNotAuthorized, notAuthorizedText)
	}
	if !hmac.Equal(binding, append([]byte(e.gs2Header), e.cbData...)) {
		// A changed header could be a downgrade; other binding data, a
		// man in the middle with a TLS connection of its own.
		return nil, false, e.failCounted(ConditionNotAuthorized, bindingMismatchText)
	}
	if f := e.lockedFailure(); f != nil {
		return nil, false, f
	}
	withoutProof := s[:len(s)-len(last)-1]
	authMessage := []byte(e.clientFirstBare + "," + e.serverFirst + "," + withoutProof)

	keys := e.keys
	current := e.proves(e.keys, authMessage, proof)
	// Both checks always run, so that the time taken does not tell
	// whether a password was requested for the number.
	other := e.pendingKeys
	if other.StoredKey == nil {
		other = e.keys
	}
	pending := e.proves(other, authMessage, proof) && e.pendingKeys.StoredKey != nil
	if !current && !pending && e.known {
		if t, ok := e.provesTicket(authMessage, proof); ok {
			if f := e.useTicket(ctx, t); f != nil {
				return nil, false, f
			}
			serverSignature := hmacSum(e.h, t.keys.ServerKey, authMessage)
			e.succeed()
			return []byte("v=" + base64.StdEncoding.EncodeToString(serverSignature)), true, nil
		}
	}
	if !current && !pending || !e.known {
		return nil, false, e.failCounted(ConditionNotAuthorized, notAuthorizedText)
	}
	if !current {
		keys = e.pendingKeys
		if f := e.promote(ctx); f != nil {
			return nil, false, f
		}
	}
	serverSignature := hmacSum(e.h, keys.ServerKey, authMessage)
	e.succeed()
	return []byte("v=" + base64.StdEncoding.EncodeToString(serverSignature)), true, nil
}

// proves reports whether proof is the client proof of the password whose
// keys are k: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage), and
// H(ClientKey) must be the StoredKey.
func (e *Exchange) proves(k ScramKeys, authMessage, proof []byte) bool {
	clientKey := hmacSum(e.h, k.StoredKey, authMessage)
	subtle.XORBytes(clientKey, clientKey, proof)
	return subtle.ConstantTimeCompare(storedKey(e.h, clientKey), k.StoredKey) == 1
}

// promote makes the pending password that just proved itself the current
// one, and the exchange takes the generation that follows; a password
// replaced meanwhile fails like a wrong one.
func (e *Exchange) promote(ctx context.Context) *Failure {
	gen, err := e.s.Promote(ctx, e.user, e.pending)
	switch {
	case errors.Is(err, ErrNotFound):
		return e.failCounted(ConditionNotAuthorized, notAuthorizedText)
	case err != nil:
		return e.fail(ConditionTemporaryAuthFailure, unavailableText,
			fmt.Errorf("auth: making the pending password of %s current: %w", e.user, err))
	}
	e.gen = gen
	return nil
}

// decodeSaslname undoes the RFC 5802 escaping of ',' (=2C) and '=' (=3D);
// any other '=' or a NUL makes the name malformed.
func decodeSaslname(s string) (string, bool) {
	if s == "" || strings.IndexByte(s, 0) >= 0 {
		return "", false
	}
	if strings.IndexByte(s, '=') < 0 {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", false
		}
		i += 2
	}
	return b.String(), true
}

// printable is RFC 5802's printable: %x21-2B / %x2D-7E, at least one.
func printable(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}

// isAttrVal is RFC 5802's attr-val: ALPHA "=" value, for extensions we
// ignore; value is at least one character, none of them NUL (',' ends
// it).
func isAttrVal(s string) bool {
	return len(s) >= 3 && s[1] == '=' &&
		(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') &&
		strings.IndexByte(s[2:], 0) < 0
}
