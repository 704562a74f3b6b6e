package sms

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"dialtone/auth"
)

// memPasswordStore is an in-memory PasswordStore.
type memPasswordStore struct {
	mu       sync.Mutex
	accounts map[auth.Number]auth.Account
	outbox   []Pending
	fail     error
}

func newMemPasswordStore() *memPasswordStore {
	return &memPasswordStore{accounts: map[auth.Number]auth.Account{}}
}

func (s *memPasswordStore) Account(_ context.Context, n auth.Number) (auth.Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.accounts[n]
	if !ok {
		return auth.Account{}, auth.ErrNotFound
	}
	return a, nil
}

func (s *memPasswordStore) IssuePassword(_ context.Context, n auth.Number, c auth.Credentials, p Pending) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return false, s.fail
	}
	a, ok := s.accounts[n]
	if !ok {
		a = auth.Account{Number: n, State: auth.StateUnclaimed, Created: p.Created}
	}
	a.Credentials, a.Pending = c, auth.Credentials{}
	a.Generation++
	s.accounts[n] = a
	s.outbox = append(s.outbox, p)
	return !ok, nil
}

func (s *memPasswordStore) IssuePendingPassword(_ context.Context, n auth.Number, gen int64, c auth.Credentials, p Pending) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	a, ok := s.accounts[n]
	if !ok || a.Generation != gen {
		return ErrStale
	}
	a.Pending = c
	s.accounts[n] = a
	s.outbox = append(s.outbox, p)
	return nil
}

func (s *memPasswordStore) QueuedTimes(_ context.Context, to, purpose string, since time.Time) ([]time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Time
	for _, p := range s.outbox {
		if p.To == to && p.Purpose == purpose && p.Created.After(since) {
			out = append(out, p.Created)
		}
	}
	return out, nil
}

func (s *memPasswordStore) sent() []Pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.outbox)
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var testKey = bytes.Repeat([]byte{7}, KeySize)

// passwordEnv is a Passwords with the limits of SPEC's defaults over a
// memory store and a test clock, recording its hooks.
type passwordEnv struct {
	p        *Passwords
	store    *memPasswordStore
	clock    *clock
	mu       sync.Mutex
	issued   []auth.Number
	recycled []auth.Number
	wakes    int
}

func newPasswordEnv(t *testing.T) *passwordEnv {
	t.Helper()
	parser, err := auth.NewNumberParser("KR", nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &passwordEnv{store: newMemPasswordStore(), clock: &clock{t: t0}}
	e.p = &Passwords{
		Domain: "chat.example", Parser: parser, Store: e.store, Key: testKey,
		Interval: 2 * time.Minute, PerDay: 5, PerIPHour: 20, PerPrefixHour: 30,
		RecycleAfter: 2160 * time.Hour,
		Recycle: func(_ context.Context, n auth.Number) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.recycled = append(e.recycled, n)
			return nil
		},
		OnIssued: func(_ context.Context, n auth.Number) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.issued = append(e.issued, n)
		},
		Wake:      func() { e.mu.Lock(); e.wakes++; e.mu.Unlock() },
		Throttled: NewThrottledCounter(prometheus.NewRegistry()),
		Now:       e.clock.now,
		Log:       slog.New(slog.DiscardHandler),
	}
	return e
}

// counted returns the refusals counted for reason.
func counted(t *testing.T, p *Passwords, reason string) float64 {
	t.Helper()
	var m dto.Metric
	if err := p.Throttled.WithLabelValues(reason).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// wantThrottled checks that err is a ThrottledError with reason and wait.
func wantThrottled(t *testing.T, err error, reason string, wait time.Duration) {
	t.Helper()
	var te *ThrottledError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a ThrottledError (%s)", err, reason)
	}
	if te.Reason != reason || te.RetryAfter != wait {
		t.Fatalf("throttled %s after %v, want %s after %v", te.Reason, te.RetryAfter, reason, wait)
	}
}

var passwordText = regexp.MustCompile(`^Your chat\.example password is ([A-Za-z0-9]{12})\. Log in with your phone number\.$`)

func TestRequestIssues(t *testing.T) {
	e := newPasswordEnv(t)
	ctx := context.Background()
	if err := e.p.Request(ctx, "010-1234-5678", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	sent := e.store.sent()
	if len(sent) != 1 {
		t.Fatalf("%d SMS queued, want 1", len(sent))
	}
	m := sent[0]
	if m.To != "+821012345678" || m.Purpose != PurposePassword || !m.Sealed || m.ID == "" ||
		!m.Created.Equal(t0) || !m.NextAttempt.Equal(t0) {
		t.Fatalf("queued %+v", m)
	}
	if bytes.Contains(m.Body, []byte("password is")) {
		t.Fatal("the SMS is stored in the clear")
	}
	first := textedPassword(t, m)
	a, _ := e.store.Account(ctx, "+821012345678")
	if !a.Credentials.VerifyPassword(first) || a.State != auth.StateUnclaimed {
		t.Fatalf("the texted password does not log in to %+v", a)
	}
	if len(e.issued) != 1 || e.issued[0] != "+821012345678" || e.wakes != 1 || len(e.recycled) != 0 {
		t.Fatalf("hooks: issued %v, wakes %d, recycled %v", e.issued, e.wakes, e.recycled)
	}

	// A second, after the interval: a fresh password, pending beside the
	// first until it logs in; no session is closed.
	e.clock.add(2 * time.Minute)
	if err := e.p.Request(ctx, "+82 10-1234-5678", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	second := textedPassword(t, e.store.sent()[1])
	a, _ = e.store.Account(ctx, "+821012345678")
	if a.MatchPassword(first) != auth.CurrentPassword || a.MatchPassword(second) != auth.PendingPassword || a.Generation != 1 {
		t.Fatalf("after a second request: generation %d, first %v, second %v", a.Generation, a.MatchPassword(first), a.MatchPassword(second))
	}
	if len(e.issued) != 1 || e.wakes != 2 {
		t.Fatalf("hooks after a pending password: issued %v, wakes %d", e.issued, e.wakes)
	}
	// A third replaces the second as the pending one.
	e.clock.add(2 * time.Minute)
	if err := e.p.Request(ctx, "+821012345678", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	third := textedPassword(t, e.store.sent()[2])
	a, _ = e.store.Account(ctx, "+821012345678")
	if a.MatchPassword(first) != auth.CurrentPassword || a.MatchPassword(second) != auth.NoMatch ||
		a.MatchPassword(third) != auth.PendingPassword {
		t.Fatalf("after a third request: first %v, second %v, third %v", a.MatchPassword(first), a.MatchPassword(second), a.MatchPassword(third))
	}
}

// textedPassword is the password in the password SMS m.
func textedPassword(t *testing.T, m Pending) string {
	t.Helper()
	plain, err := Open(testKey, m.Body)
	if err != nil {
		t.Fatal(err)
	}
	sub := passwordText.FindStringSubmatch(string(plain))
	if sub == nil {
		t.Fatalf("SMS text %q", plain)
	}
	return sub[1]
}

// A request for an account whose password changed between the read and
// the write derives the pending password alike the new credentials.
func TestRequestPendingStale(t *testing.T) {
	e := newPasswordEnv(t)
	ctx := context.Background()
	const n = auth.Number("+821012345678")
	old, _ := auth.NewCredentials("oldpassword1")
	e.store.accounts[n] = auth.Account{Number: n, State: auth.StateActive, Created: t0, LastLogin: t0, Credentials: old, Generation: 1}
	replaced, _ := auth.NewCredentials("newpassword1")
	e.p.Store = &staleOnce{memPasswordStore: e.store, replace: replaced}
	if err := e.p.Request(ctx, string(n), "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	a, _ := e.store.Account(ctx, n)
	texted := textedPassword(t, e.store.sent()[0])
	if a.MatchPassword("newpassword1") != auth.CurrentPassword || a.MatchPassword(texted) != auth.PendingPassword {
		t.Fatalf("after a stale try: new %v, texted %v", a.MatchPassword("newpassword1"), a.MatchPassword(texted))
	}
}

// staleOnce replaces the credentials (an xmppctl reset, say) just before
// the first pending password is stored.
type staleOnce struct {
	*memPasswordStore
	replace auth.Credentials
	done    bool
}

func (s *staleOnce) IssuePendingPassword(ctx context.Context, n auth.Number, gen int64, c auth.Credentials, p Pending) error {
	if !s.done {
		s.done = true
		s.mu.Lock()
		a := s.accounts[n]
		a.Credentials, a.Generation = s.replace, a.Generation+1
		s.accounts[n] = a
		s.mu.Unlock()
	}
	return s.memPasswordStore.IssuePendingPassword(ctx, n, gen, c, p)
}

func TestRequestInvalidNumber(t *testing.T) {
	e := newPasswordEnv(t)
	e.p.PerIPHour = 1
	ctx := context.Background()
	for _, phone := range []string{"", "12345", "call me", "+8260012345678", strings.Repeat("1", 100)} {
		if err := e.p.Request(ctx, phone, "192.0.2.1"); !errors.Is(err, auth.ErrInvalidNumber) {
			t.Errorf("Request(%q) = %v, want ErrInvalidNumber", phone, err)
		}
	}
	// Premium rate (Korea 060): not an address either, with its own error.
	err := e.p.Request(ctx, "060-700-1234", "192.0.2.1")
	if !errors.Is(err, auth.ErrInvalidNumber) || !errors.Is(err, auth.ErrCannotReceiveSMS) {
		t.Errorf("premium rate: %v", err)
	}
	// None of them counted for the IP; nothing was queued.
	if err := e.p.Request(ctx, "010-1234-5678", "192.0.2.1"); err != nil {
		t.Fatalf("first valid request: %v", err)
	}
	if n := len(e.store.sent()); n != 1 {
		t.Fatalf("%d SMS queued, want 1", n)
	}
}

func TestRequestNumberLimits(t *testing.T) {
	e := newPasswordEnv(t)
	e.p.PerDay = 3
	ctx := context.Background()
	const n = "010-1234-5678"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.p.Request(ctx, n, "192.0.2.1"))
	e.clock.add(30 * time.Second)
	wantThrottled(t, e.p.Request(ctx, n, "192.0.2.2"), ReasonInterval, 90*time.Second)
	e.clock.add(90 * time.Second)
	must(e.p.Request(ctx, n, "192.0.2.3"))
	e.clock.add(time.Hour)
	must(e.p.Request(ctx, n, "192.0.2.4"))
	e.clock.add(time.Hour) // t0 + 2h2m; the first left at t0 + 24h
	wantThrottled(t, e.p.Request(ctx, n, "192.0.2.5"), ReasonPerDay, 22*time.Hour-2*time.Minute)
	e.clock.add(22*time.Hour - 2*time.Minute)
	must(e.p.Request(ctx, n, "192.0.2.6"))
	// Another number is not affected.
	must(e.p.Request(ctx, "010-2222-3333", "192.0.2.7"))
	if got := counted(t, e.p, ReasonInterval); got != 1 {
		t.Errorf("interval refusals counted %v, want 1", got)
	}
	if got := counted(t, e.p, ReasonPerDay); got != 1 {
		t.Errorf("per-day refusals counted %v, want 1", got)
	}
	if n := len(e.store.sent()); n != 5 {
		t.Errorf("%d SMS queued, want 5", n)
	}
}

// The per-number limits are read from the store, so a new Passwords (a
// restarted server) keeps them.
func TestRequestLimitsSurviveRestart(t *testing.T) {
	e := newPasswordEnv(t)
	ctx := context.Background()
	if err := e.p.Request(ctx, "010-1234-5678", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	e.clock.add(time.Minute)
	restarted := &Passwords{Domain: e.p.Domain, Parser: e.p.Parser, Store: e.store, Key: testKey,
		Interval: 2 * time.Minute, Now: e.clock.now, Log: e.p.Log}
	wantThrottled(t, restarted.Request(ctx, "010-1234-5678", "192.0.2.1"), ReasonInterval, time.Minute)
}

func TestRequestPerIP(t *testing.T) {
	e := newPasswordEnv(t)
	e.p.PerIPHour = 3
	ctx := context.Background()
	// Requests refused for the number count for the IP too.
	if err := e.p.Request(ctx, "010-1111-0001", "2001:db8:1:2::1"); err != nil {
		t.Fatal(err)
	}
	e.clock.add(time.Minute)
	wantThrottled(t, e.p.Request(ctx, "010-1111-0001", "2001:db8:1:2::2"), ReasonInterval, time.Minute)
	e.clock.add(time.Minute)
	if err := e.p.Request(ctx, "010-1111-0002", "2001:db8:1:2::3"); err != nil {
		t.Fatal(err)
	}
	e.clock.add(time.Minute)
	// The same /64, a fourth request within the hour: refused until the
	// first (at t0) is an hour old.
	wantThrottled(t, e.p.Request(ctx, "010-1111-0003", "2001:db8:1:2::4"), ReasonPerIP, 57*time.Minute)
	// Another client is not affected.
	if err := e.p.Request(ctx, "010-1111-0003", "198.51.100.1"); err != nil {
		t.Fatal(err)
	}
	e.clock.add(57 * time.Minute)
	if err := e.p.Request(ctx, "010-1111-0004", "2001:db8:1:2::4"); err != nil {
		t.Fatalf("after the wait: %v", err)
	}
}

func TestRequestPerPrefix(t *testing.T) {
	e := newPasswordEnv(t)
	e.p.PerPrefixHour = 2
	e.p.PerIPHour = 0
	ctx := context.Background()
	// 010-1234-0000 … 010-1234-9999 are one range.
	for i, n := range []string{"010-1234-0001", "010-1234-9999"} {
		e.clock.add(time.Minute)
		if err := e.p.Request(ctx, n, "192.0.2.1"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	e.clock.add(time.Minute) // t0 + 3m; the first was at t0 + 1m
	wantThrottled(t, e.p.Request(ctx, "010-1234-5555", "192.0.2.2"), ReasonPerPrefix, 58*time.Minute)
	if err := e.p.Request(ctx, "010-1235-5555", "192.0.2.2"); err != nil {
		t.Fatalf("next range: %v", err)
	}
	// A request refused for its number does not use up the range.
	wantThrottled(t, e.p.Request(ctx, "010-1235-5555", "192.0.2.2"), ReasonInterval, 2*time.Minute)
	e.clock.add(time.Minute)
	if err := e.p.Request(ctx, "010-1235-6666", "192.0.2.2"); err != nil {
		t.Fatalf("second in the next range: %v", err)
	}
}

func TestRequestNoLimits(t *testing.T) {
	e := newPasswordEnv(t)
	e.p.Interval, e.p.PerDay, e.p.PerIPHour, e.p.PerPrefixHour = 0, 0, 0, 0
	ctx := context.Background()
	for i := range 50 {
		if err := e.p.Request(ctx, "010-1234-5678", "192.0.2.1"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
}

// Concurrent requests for one number pass the interval once.
func TestRequestConcurrent(t *testing.T) {
	e := newPasswordEnv(t)
	e.p.PerIPHour = 0
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() { errs <- e.p.Request(context.Background(), "010-1234-5678", "192.0.2.1") })
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		var te *ThrottledError
		switch {
		case err == nil:
			ok++
		case !errors.As(err, &te):
			t.Fatal(err)
		}
	}
	if ok != 1 || len(e.store.sent()) != 1 {
		t.Fatalf("%d of 10 concurrent requests passed, %d SMS queued; want 1", ok, len(e.store.sent()))
	}
}

func TestRequestRecycles(t *testing.T) {
	ctx := context.Background()
	oldCreds, err := auth.NewCredentials("oldpassword1")
	if err != nil {
		t.Fatal(err)
	}
	const n = auth.Number("+821012345678")
	for _, tc := range []struct {
		name    string
		account *auth.Account
		recycle bool
	}{
		{name: "no account"},
		{name: "logged in lately", account: &auth.Account{Created: t0.Add(-5000 * time.Hour), LastLogin: t0.Add(-2000 * time.Hour)}},
		{name: "away too long", account: &auth.Account{Created: t0.Add(-5000 * time.Hour), LastLogin: t0.Add(-2161 * time.Hour)}, recycle: true},
		{name: "never logged in, made lately", account: &auth.Account{Created: t0.Add(-100 * time.Hour)}},
		{name: "never logged in, made long ago", account: &auth.Account{Created: t0.Add(-3000 * time.Hour)}, recycle: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newPasswordEnv(t)
			if tc.account != nil {
				tc.account.Number = n
				tc.account.Credentials = oldCreds
				e.store.accounts[n] = *tc.account
			}
			if err := e.p.Request(ctx, string(n), "192.0.2.1"); err != nil {
				t.Fatal(err)
			}
			if got := len(e.recycled) == 1; got != tc.recycle {
				t.Fatalf("recycled %v, want %v", e.recycled, tc.recycle)
			}
			// A new or recycled account gets the password at once (and its
			// sessions close); an existing one gets it pending.
			a, _ := e.store.Account(ctx, n)
			texted := textedPassword(t, e.store.sent()[0])
			atOnce := tc.account == nil || tc.recycle
			if atOnce && (a.MatchPassword(texted) != auth.CurrentPassword || len(e.issued) != 1) ||
				!atOnce && (a.MatchPassword(texted) != auth.PendingPassword || a.MatchPassword("oldpassword1") != auth.CurrentPassword || len(e.issued) != 0) {
				t.Fatalf("texted password %v, issued %v; want at once %v", a.MatchPassword(texted), e.issued, atOnce)
			}
		})
	}

	// A failed recycle texts nothing, and the range is not used up.
	e := newPasswordEnv(t)
	e.p.PerPrefixHour = 1
	e.store.accounts[n] = auth.Account{Number: n, Created: t0.Add(-3000 * time.Hour)}
	e.p.Recycle = func(context.Context, auth.Number) error { return errors.New("store down") }
	if err := e.p.Request(ctx, string(n), "192.0.2.1"); err == nil || len(e.store.sent()) != 0 || len(e.issued) != 0 {
		t.Fatalf("failed recycle: err %v, %d SMS, issued %v", err, len(e.store.sent()), e.issued)
	}
	e.p.Recycle = nil // recycling off
	if err := e.p.Request(ctx, string(n), "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
}

func TestRequestStoreFails(t *testing.T) {
	e := newPasswordEnv(t)
	e.store.fail = errors.New("disk full")
	if err := e.p.Request(context.Background(), "010-1234-5678", "192.0.2.1"); !errors.Is(err, e.store.fail) {
		t.Fatalf("err = %v", err)
	}
	if len(e.issued) != 0 || e.wakes != 0 {
		t.Fatalf("hooks ran for a failed issue: %v %d", e.issued, e.wakes)
	}
}

// Issue is for xmppctl: no limits, no recycling.
func TestIssue(t *testing.T) {
	e := newPasswordEnv(t)
	ctx := context.Background()
	const n = auth.Number("+821012345678")
	e.store.accounts[n] = auth.Account{Number: n, State: auth.StateActive, Created: t0.Add(-9000 * time.Hour), LastLogin: t0.Add(-9000 * time.Hour)}
	var passwords []string
	for range 10 {
		pw, err := e.p.Issue(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		passwords = append(passwords, pw)
	}
	a, _ := e.store.Account(ctx, n)
	if !a.Credentials.VerifyPassword(passwords[9]) || a.Generation != 10 || len(e.recycled) != 0 {
		t.Fatalf("after 10 issues: %+v, recycled %v", a, e.recycled)
	}
	sent := e.store.sent()
	plain, err := Open(testKey, sent[9].Body)
	if err != nil || string(plain) != PasswordText("chat.example", passwords[9]) {
		t.Fatalf("last SMS %q %v", plain, err)
	}
	if len(e.issued) != 10 || e.wakes != 10 {
		t.Fatalf("hooks: issued %d, wakes %d", len(e.issued), e.wakes)
	}
}

func TestThrottledError(t *testing.T) {
	err := error(&ThrottledError{RetryAfter: 90 * time.Second, Reason: ReasonInterval})
	if !strings.Contains(err.Error(), "interval") || !strings.Contains(err.Error(), "1m30s") {
		t.Errorf("Error() = %q", err)
	}
}
