package sms

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"testing"
	"time"

	"dialtone/auth"
)

// memPINStore adds the PINs to memPasswordStore; its PIN SMS go into the
// same outbox, so that the password limits see them.
type memPINStore struct {
	*memPasswordStore
	pins      map[auth.Number]*memPIN
	delivered map[auth.Number]bool
}

type memPIN struct {
	hash    []byte
	expires time.Time
	tries   int
}

func (s *memPINStore) SavePIN(_ context.Context, n auth.Number, hash []byte, expires time.Time, p Pending) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.pins[n] = &memPIN{hash: hash, expires: expires}
	s.outbox = append(s.outbox, p)
	return nil
}

func (s *memPINStore) UsePIN(_ context.Context, n auth.Number, hash []byte, tries int, now time.Time) (PINCheck, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pins[n]
	switch {
	case p == nil:
		return PINCheck{Result: PINAbsent}, nil
	case !now.Before(p.expires):
		delete(s.pins, n)
		return PINCheck{Result: PINAbsent}, nil
	case p.tries >= tries:
		return PINCheck{Result: PINSpent, Expires: p.expires}, nil
	case bytes.Equal(p.hash, hash):
		delete(s.pins, n)
		return PINCheck{Result: PINMatched, Expires: p.expires}, nil
	}
	p.tries++
	return PINCheck{Result: PINWrong, Expires: p.expires}, nil
}

func (s *memPINStore) SetDeliveredCredentials(_ context.Context, n auth.Number, c auth.Credentials) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[n]
	if !ok {
		a = auth.Account{Number: n, State: auth.StateUnclaimed, Created: t0}
	}
	a.Credentials, a.Pending = c, auth.Credentials{}
	a.Generation++
	s.accounts[n] = a
	s.delivered[n] = true
	return !ok, nil
}

// pinEnv is a passwordEnv with the app API on top.
type pinEnv struct {
	*passwordEnv
	pins  *PINs
	store *memPINStore
}

func newPINEnv(t *testing.T) *pinEnv {
	t.Helper()
	e := newPasswordEnv(t)
	store := &memPINStore{memPasswordStore: e.store, pins: map[auth.Number]*memPIN{}, delivered: map[auth.Number]bool{}}
	return &pinEnv{passwordEnv: e, store: store,
		pins: &PINs{Passwords: e.p, Store: store, PerInstallationDay: DefaultPINsPerInstallationDay}}
}

const (
	testInstallation = "0f8fad5b-d9cb-469f-a165-70867728950e"
	pinNumber        = auth.Number("+821012345678")
)

var pinSMSText = regexp.MustCompile(`^Your chat\.example code is: ([0-9]{6})$`)

// textedPIN is the PIN of the last SMS queued, which must be a PIN SMS to n.
func (e *pinEnv) textedPIN(t *testing.T, n auth.Number) string {
	t.Helper()
	sent := e.store.sent()
	if len(sent) == 0 {
		t.Fatal("no SMS queued")
	}
	m := sent[len(sent)-1]
	if m.To != string(n) || m.Purpose != PurposePIN || !m.Sealed {
		t.Fatalf("last SMS %+v, want a sealed PIN SMS to %s", m, n)
	}
	plain, err := Open(testKey, m.Body)
	if err != nil {
		t.Fatal(err)
	}
	sub := pinSMSText.FindStringSubmatch(string(plain))
	if sub == nil {
		t.Fatalf("PIN SMS text %q does not match SPEC.md", plain)
	}
	return sub[1]
}

// wrongPIN is a PIN other than pin.
func wrongPIN(pin string) string {
	if pin == "000000" {
		return "111111"
	}
	return "000000"
}

// request asks for a PIN for n from the test installation and address.
func (e *pinEnv) request(t *testing.T, phone string) error {
	t.Helper()
	return e.pins.Request(context.Background(), phone, "192.0.2.1", testInstallation)
}

// A PIN request texts a sealed PIN SMS and changes nothing else: no
// account is made, no session closed, until the PIN is used.
func TestPINRequest(t *testing.T) {
	e := newPINEnv(t)
	if err := e.request(t, "010-1234-5678"); err != nil {
		t.Fatal(err)
	}
	sent := e.store.sent()
	if len(sent) != 1 || !sent[0].Created.Equal(t0) || sent[0].ID == "" {
		t.Fatalf("queued %+v", sent)
	}
	pin := e.textedPIN(t, pinNumber)
	if bytes.Contains(sent[0].Body, []byte(pin)) {
		t.Fatal("the PIN SMS is stored in the clear")
	}
	if _, err := e.store.Account(context.Background(), pinNumber); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("a PIN request made an account: %v", err)
	}
	stored := e.store.pins[pinNumber]
	if stored == nil || !bytes.Equal(stored.hash, auth.PINHash(testKey, pinNumber, pin)) || !stored.expires.Equal(t0.Add(5*time.Minute)) {
		t.Fatalf("stored PIN %+v", stored)
	}
	if e.wakes != 1 || len(e.issued) != 0 || len(e.recycled) != 0 {
		t.Fatalf("hooks: wakes %d, issued %v, recycled %v", e.wakes, e.issued, e.recycled)
	}
}

// The Android SMS Retriever hash goes on its own line at the end; the PIN
// is still the first six digits in a row, which the app looks for.
func TestPINText(t *testing.T) {
	if got := PINText("chat.example", "012345", ""); got != "Your chat.example code is: 012345" {
		t.Fatalf("PINText = %q", got)
	}
	got := PINText("chat.example", "012345", "FA+9qCX9VSu")
	if got != "Your chat.example code is: 012345\nFA+9qCX9VSu" {
		t.Fatalf("PINText with a hash = %q", got)
	}
	// The app's own pattern (quicksyPlaystore SmsRetrieverWrapper.extractPin).
	if m := regexp.MustCompile(`(^|[^0-9])([0-9]{6})([^0-9]|$)`).FindStringSubmatch(got); m == nil || m[2] != "012345" {
		t.Fatalf("the app would read %q out of %q", m, got)
	}
	if n, ucs2 := Segments(got); n != 1 || ucs2 {
		t.Fatalf("a PIN SMS with a hash takes %d segments (UCS-2: %v)", n, ucs2)
	}
}

// PIN and password SMS share the per-number limits, both ways round.
func TestPINSharesPasswordLimits(t *testing.T) {
	e := newPINEnv(t)
	e.pins.PerInstallationDay = 0
	ctx := context.Background()
	if err := e.request(t, string(pinNumber)); err != nil {
		t.Fatal(err)
	}
	e.clock.add(time.Minute)
	wantThrottled(t, e.p.Request(ctx, string(pinNumber), "192.0.2.1"), ReasonInterval, time.Minute)
	wantThrottled(t, e.request(t, string(pinNumber)), ReasonInterval, time.Minute)
	e.clock.add(time.Minute)
	if err := e.p.Request(ctx, string(pinNumber), "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	e.clock.add(time.Minute)
	wantThrottled(t, e.request(t, string(pinNumber)), ReasonInterval, time.Minute)
	// Five a day, PINs and passwords together.
	for range 3 {
		e.clock.add(2 * time.Minute)
		if err := e.request(t, string(pinNumber)); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.add(2 * time.Minute)
	wantThrottled(t, e.p.Request(ctx, string(pinNumber), "192.0.2.1"), ReasonPerDay, 24*time.Hour-11*time.Minute)
	if counted(t, e.p, ReasonInterval) != 3 || counted(t, e.p, ReasonPerDay) != 1 {
		t.Fatalf("refusals counted: interval %v, per day %v", counted(t, e.p, ReasonInterval), counted(t, e.p, ReasonPerDay))
	}
}

// One client address has one hourly budget for password and PIN requests.
func TestPINSharesPerIP(t *testing.T) {
	e := newPINEnv(t)
	e.p.PerIPHour = 2
	ctx := context.Background()
	if err := e.p.Request(ctx, "+821011110001", "192.0.2.7"); err != nil {
		t.Fatal(err)
	}
	if err := e.pins.Request(ctx, "+821011110002", "192.0.2.7", testInstallation); err != nil {
		t.Fatal(err)
	}
	wantThrottled(t, e.pins.Request(ctx, "+821011110003", "192.0.2.7", testInstallation), ReasonPerIP, time.Hour)
	wantThrottled(t, e.p.Request(ctx, "+821011110003", "192.0.2.7"), ReasonPerIP, time.Hour)
}

// Three PINs a day per installation, counting only PINs that went out.
func TestPINPerInstallation(t *testing.T) {
	e := newPINEnv(t)
	ctx := context.Background()
	req := func(phone, installation string) error {
		return e.pins.Request(ctx, phone, "192.0.2.1", installation)
	}
	for i, phone := range []string{"+821011110001", "+821011110002", "+821011110003"} {
		if err := req(phone, testInstallation); err != nil {
			t.Fatalf("PIN %d: %v", i+1, err)
		}
		e.clock.add(time.Minute)
	}
	wantThrottled(t, req("+821011110004", testInstallation), ReasonPerInstallation, 24*time.Hour-3*time.Minute)
	if err := req("+821011110004", "6f9619ff-8b86-d011-b42d-00c04fc964ff"); err != nil {
		t.Fatalf("another installation: %v", err)
	}
	// Refused for the number's interval: the installation's count stays.
	other := "7c9e6679-7425-40de-944b-e07fc1f90ae7"
	if err := req("+821022220001", other); err != nil {
		t.Fatal(err)
	}
	wantThrottled(t, req("+821022220001", other), ReasonInterval, 2*time.Minute)
	wantThrottled(t, req("+821022220001", other), ReasonInterval, 2*time.Minute)
	for _, phone := range []string{"+821022220002", "+821022220003"} {
		if err := req(phone, other); err != nil {
			t.Fatalf("%s after refusals: %v", phone, err)
		}
	}
	// A day after the first, the installation may again.
	e.clock.add(24*time.Hour - 3*time.Minute)
	if err := req("+821011110005", testInstallation); err != nil {
		t.Fatal(err)
	}
	if counted(t, e.p, ReasonPerInstallation) != 1 {
		t.Fatalf("per-installation refusals counted: %v", counted(t, e.p, ReasonPerInstallation))
	}
}

// The PIN sets the chosen password of a new account (201), at once and
// delivered (no notice replaces it), and works once.
func TestPINSetPasswordNew(t *testing.T) {
	e := newPINEnv(t)
	ctx := context.Background()
	if err := e.request(t, "010-1234-5678"); err != nil {
		t.Fatal(err)
	}
	pin := e.textedPIN(t, pinNumber)
	const chosen = "a+b&c=d%2B e"
	n, fresh, err := e.pins.SetPassword(ctx, "+82 10 1234 5678", pin, chosen, "192.0.2.1")
	if err != nil || !fresh || n != pinNumber {
		t.Fatalf("SetPassword = %s, %v, %v; want %s, fresh", n, fresh, err, pinNumber)
	}
	a, _ := e.store.Account(ctx, pinNumber)
	if a.MatchPassword(chosen) != auth.CurrentPassword || !e.store.delivered[pinNumber] {
		t.Fatalf("account after SetPassword: %+v, delivered %v", a, e.store.delivered[pinNumber])
	}
	if len(e.issued) != 1 || e.issued[0] != pinNumber {
		t.Fatalf("OnIssued calls %v", e.issued)
	}
	if _, _, err := e.pins.SetPassword(ctx, string(pinNumber), pin, chosen, "192.0.2.1"); !errors.Is(err, ErrNoPIN) {
		t.Fatalf("the PIN a second time: %v, want ErrNoPIN", err)
	}
}

// On an active account the PIN's password replaces the current and the
// pending one (200: not fresh); an unclaimed account counts as new.
func TestPINSetPasswordExisting(t *testing.T) {
	for _, tc := range []struct {
		state auth.State
		fresh bool
	}{{auth.StateActive, false}, {auth.StateUnclaimed, true}} {
		t.Run(string(tc.state), func(t *testing.T) {
			e := newPINEnv(t)
			ctx := context.Background()
			old, _ := auth.NewCredentials("oldpassword1")
			pending, _ := auth.NewCredentialsLike("pendingpass1", old)
			e.store.accounts[pinNumber] = auth.Account{Number: pinNumber, State: tc.state, Created: t0, LastLogin: t0,
				Credentials: old, Pending: pending, Generation: 4}
			if err := e.request(t, string(pinNumber)); err != nil {
				t.Fatal(err)
			}
			_, fresh, err := e.pins.SetPassword(ctx, string(pinNumber), e.textedPIN(t, pinNumber), "chosen+pass", "192.0.2.1")
			if err != nil || fresh != tc.fresh {
				t.Fatalf("SetPassword: fresh %v, %v; want fresh %v", fresh, err, tc.fresh)
			}
			a, _ := e.store.Account(ctx, pinNumber)
			if a.MatchPassword("chosen+pass") != auth.CurrentPassword || a.MatchPassword("oldpassword1") != auth.NoMatch ||
				a.MatchPassword("pendingpass1") != auth.NoMatch || a.Generation != 5 {
				t.Fatalf("account after SetPassword: %+v", a)
			}
			if len(e.recycled) != 0 || len(e.issued) != 1 {
				t.Fatalf("recycled %v, issued %v", e.recycled, e.issued)
			}
		})
	}
}

// An account whose owner has been away for RecycleAfter starts afresh
// when the PIN is used, not when it is asked for.
func TestPINRecycles(t *testing.T) {
	e := newPINEnv(t)
	ctx := context.Background()
	old, _ := auth.NewCredentials("oldpassword1")
	e.store.accounts[pinNumber] = auth.Account{Number: pinNumber, State: auth.StateActive, Created: t0.Add(-5000 * time.Hour),
		LastLogin: t0.Add(-2161 * time.Hour), Credentials: old, Generation: 1}
	if err := e.request(t, string(pinNumber)); err != nil {
		t.Fatal(err)
	}
	if len(e.recycled) != 0 {
		t.Fatalf("recycled on the PIN request: %v", e.recycled)
	}
	pin := e.textedPIN(t, pinNumber)
	if _, _, err := e.pins.SetPassword(ctx, string(pinNumber), wrongPIN(pin), "chosenpass", "192.0.2.1"); !errors.Is(err, ErrWrongPIN) {
		t.Fatalf("wrong PIN: %v", err)
	}
	if len(e.recycled) != 0 {
		t.Fatalf("recycled on a wrong PIN: %v", e.recycled)
	}
	_, fresh, err := e.pins.SetPassword(ctx, string(pinNumber), pin, "chosenpass", "192.0.2.1")
	if err != nil || !fresh || len(e.recycled) != 1 || e.recycled[0] != pinNumber {
		t.Fatalf("SetPassword: fresh %v, %v; recycled %v", fresh, err, e.recycled)
	}
}

// Three wrong PINs, then the PIN is refused, right or not, until it
// expires; a password that cannot be used costs no try.
func TestPINTries(t *testing.T) {
	e := newPINEnv(t)
	ctx := context.Background()
	if err := e.request(t, string(pinNumber)); err != nil {
		t.Fatal(err)
	}
	pin := e.textedPIN(t, pinNumber)
	wrong := wrongPIN(pin)
	for _, bad := range []string{"short", string(make([]byte, 129)), "tab\there1", "ﬁnancial"} {
		if _, _, err := e.pins.SetPassword(ctx, string(pinNumber), wrong, bad, "192.0.2.1"); !errors.Is(err, auth.ErrChosenPassword) {
			t.Fatalf("password %q: %v, want ErrChosenPassword", bad, err)
		}
	}
	for i := range 3 {
		if _, _, err := e.pins.SetPassword(ctx, string(pinNumber), wrong, "chosenpass", "192.0.2.1"); !errors.Is(err, ErrWrongPIN) {
			t.Fatalf("wrong PIN %d: %v", i+1, err)
		}
	}
	e.clock.add(time.Minute)
	_, _, err := e.pins.SetPassword(ctx, string(pinNumber), pin, "chosenpass", "192.0.2.1")
	wantThrottled(t, err, ReasonPINTries, 4*time.Minute)
	if _, err := e.store.Account(ctx, pinNumber); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("a refused PIN made an account: %v", err)
	}
	e.clock.add(4 * time.Minute)
	if _, _, err := e.pins.SetPassword(ctx, string(pinNumber), pin, "chosenpass", "192.0.2.1"); !errors.Is(err, ErrNoPIN) {
		t.Fatalf("after expiry: %v, want ErrNoPIN", err)
	}
}

// A PIN expires after five minutes.
func TestPINExpires(t *testing.T) {
	e := newPINEnv(t)
	if err := e.request(t, string(pinNumber)); err != nil {
		t.Fatal(err)
	}
	pin := e.textedPIN(t, pinNumber)
	e.clock.add(5 * time.Minute)
	if _, _, err := e.pins.SetPassword(context.Background(), string(pinNumber), pin, "chosenpass", "192.0.2.1"); !errors.Is(err, ErrNoPIN) {
		t.Fatalf("after five minutes: %v, want ErrNoPIN", err)
	}
}

// Numbers that are not addresses are refused before anything else, and
// say why (the API answers 400 or 451).
func TestPINNumbers(t *testing.T) {
	e := newPINEnv(t)
	parser, err := auth.NewNumberParser("KR", []string{"KR"})
	if err != nil {
		t.Fatal(err)
	}
	e.p.Parser = parser
	ctx := context.Background()
	for _, tc := range []struct {
		phone string
		want  error
	}{
		{"12", auth.ErrInvalidNumber},
		{"not a number", auth.ErrInvalidNumber},
		{"+44 7400 123456", auth.ErrRegionNotAllowed},
		{"060-234-5678", auth.ErrCannotReceiveSMS},
	} {
		if err := e.pins.Request(ctx, tc.phone, "192.0.2.1", testInstallation); !errors.Is(err, tc.want) {
			t.Errorf("Request(%q) = %v, want %v", tc.phone, err, tc.want)
		}
		if _, _, err := e.pins.SetPassword(ctx, tc.phone, "123456", "chosenpass", "192.0.2.1"); !errors.Is(err, tc.want) {
			t.Errorf("SetPassword(%q) = %v, want %v", tc.phone, err, tc.want)
		}
	}
	if len(e.store.sent()) != 0 {
		t.Fatalf("SMS queued: %+v", e.store.sent())
	}
}

// A store failure is an error, and takes back the counts of the request.
func TestPINStoreFails(t *testing.T) {
	e := newPINEnv(t)
	e.p.PerPrefixHour = 1
	e.store.fail = errors.New("disk full")
	if err := e.request(t, string(pinNumber)); err == nil || !errors.Is(err, e.store.fail) {
		t.Fatalf("Request on a failing store: %v", err)
	}
	e.store.fail = nil
	if err := e.request(t, string(pinNumber)); err != nil {
		t.Fatalf("after the store recovered: %v", err)
	}
}
