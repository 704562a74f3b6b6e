package auth

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTickets is an in-memory TicketStore.
type fakeTickets struct {
	mu      sync.Mutex
	tickets map[string]Ticket
	err     error
	used    []string
}

func (s *fakeTickets) add(t Ticket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tickets == nil {
		s.tickets = map[string]Ticket{}
	}
	s.tickets[t.ID] = t
}

func (s *fakeTickets) Tickets(ctx context.Context, n Number, now time.Time) ([]Ticket, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	var out []Ticket
	for _, t := range s.tickets {
		if t.Number == n && now.Before(t.Expires) {
			out = append(out, t)
		}
	}
	return out, nil
}

func (s *fakeTickets) UseTicket(ctx context.Context, n Number, id string, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	t, ok := s.tickets[id]
	if !ok || t.Number != n || !now.Before(t.Expires) {
		return ErrNotFound
	}
	delete(s.tickets, id)
	s.used = append(s.used, id)
	return nil
}

// TestSASLTicket: a ticket's secret logs in once, by every mechanism, as
// the account at the ticket's generation; a replay, an expired ticket, one
// of an older password and one for another number fail like a wrong
// password, and the password keeps working beside tickets.
func TestSASLTicket(t *testing.T) {
	for _, mech := range allMechs {
		t.Run(mech.Name, func(t *testing.T) {
			f := newSASLFixture(t, 5)
			store := &fakeTickets{}
			now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
			f.sasl.Tickets = store
			f.sasl.clock = func() time.Time { return now }
			acct := f.store.accounts[testUser]
			newTicket := func(a Account, ttl time.Duration) string {
				t.Helper()
				secret, tk, err := NewTicket(a, now.Add(ttl))
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(tk.ID, secret) || len(secret) < 22 {
					t.Fatalf("secret %q, id %q", secret, tk.ID)
				}
				store.add(tk)
				return secret
			}
			expectFail := func(what, password string, cond string) {
				t.Helper()
				if _, fail := login(t, f.sasl, mech, true, true, string(testUser), password, ""); fail == nil || fail.Condition != cond {
					t.Fatalf("%s: %v, want %s", what, fail, cond)
				}
			}

			secret := newTicket(acct, TicketTTL)
			// Another ticket beside it, so that the right one is found.
			other := newTicket(acct, TicketTTL)
			ex, fail := login(t, f.sasl, mech, true, true, "010-1234-5678", secret, "")
			if fail != nil || ex.Number() != testUser || ex.Generation() != acct.Generation {
				t.Fatalf("ticket login: %v, %s, generation %d", fail, ex.Number(), ex.Generation())
			}
			if len(store.used) != 1 {
				t.Fatalf("used %v, want one ticket", store.used)
			}
			expectFail("replay", secret, ConditionNotAuthorized)
			if _, fail := login(t, f.sasl, mech, true, true, string(testUser), other, ""); fail != nil {
				t.Fatalf("the other ticket: %v", fail)
			}
			if _, fail := login(t, f.sasl, mech, true, true, string(testUser), testPassword, ""); fail != nil {
				t.Fatalf("the password beside tickets: %v", fail)
			}

			expired := newTicket(acct, time.Second)
			now = now.Add(time.Second)
			expectFail("expired", expired, ConditionNotAuthorized)

			// Made before the password changed (generation 2): void.
			older := acct
			older.Generation--
			expectFail("older generation", newTicket(older, TicketTTL), ConditionNotAuthorized)

			// A ticket of another account does not log in to this one.
			otherCreds, _ := NewCredentials("An0therPassw0rd")
			stranger := Account{Number: "+821099990000", Credentials: otherCreds, Generation: acct.Generation}
			f.store.accounts[stranger.Number] = stranger
			expectFail("another number's ticket", newTicket(stranger, TicketTTL), ConditionNotAuthorized)

			// Used by a concurrent login between the check and the use.
			raced := newTicket(acct, TicketTTL)
			store.mu.Lock()
			for id, tk := range store.tickets {
				if tk.Number == testUser {
					delete(store.tickets, id)
				}
			}
			store.mu.Unlock()
			expectFail("used meanwhile", raced, ConditionNotAuthorized)

			if f.sasl.Lockout.Locked(testUser) != 0 {
				// 5 failures lock; the 4 above are counted, as failures.
				t.Fatal("locked early")
			}
			expectFail("wrong password", "wrong", ConditionNotAuthorized)
			if f.sasl.Lockout.Locked(testUser) == 0 {
				t.Fatal("ticket failures were not counted towards the lockout")
			}

			// The store failing: try again later.
			f.sasl.Lockout = nil
			store.err = errors.New("db down")
			expectFail("store down", secret, ConditionTemporaryAuthFailure)
		})
	}
}

// TestSASLTicketUnknownNumber: tickets are never asked for a number
// without an account, which fails exactly as before.
func TestSASLTicketUnknownNumber(t *testing.T) {
	f := newSASLFixture(t, 5)
	f.sasl.Tickets = &fakeTickets{err: errors.New("must not be called")}
	for _, mech := range allMechs {
		if _, fail := login(t, f.sasl, mech, true, true, string(latentUser), "whatever1", ""); fail == nil || fail.Condition != ConditionNotAuthorized {
			t.Errorf("%s: %v, want not-authorized", mech.Name, fail)
		}
	}
}

func TestNewTicketNeedsAPassword(t *testing.T) {
	if _, _, err := NewTicket(Account{Number: testUser}, time.Now()); err == nil {
		t.Fatal("a ticket for an account without credentials")
	}
}

func TestLinkToken(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		token, hash := NewLinkToken()
		if len(token) != LinkTokenLength || seen[token] {
			t.Fatalf("token %q", token)
		}
		seen[token] = true
		h, ok := LinkTokenHash(token)
		if !ok || h != hash || len(hash) != 64 || strings.Contains(hash, token) {
			t.Fatalf("LinkTokenHash(%q) = %q, %v; NewLinkToken said %q", token, h, ok, hash)
		}
	}
	token, _ := NewLinkToken()
	for _, bad := range []string{
		"", "short", token + "A", token[:21], strings.Repeat("=", 22),
		token[:21] + "+", token[:21] + "/", token[:21] + ".",
		"AAAAAAAAAAAAAAAAAAAAAB", // bits beyond the 128 set: not canonical
		"AAAAAAAAAAAAAAAAAAAA\x00A", "ÄAAAAAAAAAAAAAAAAAAAA",
	} {
		if h, ok := LinkTokenHash(bad); ok {
			t.Errorf("LinkTokenHash(%q) = %q, true", bad, h)
		}
	}
}

func TestLinkPassword(t *testing.T) {
	cur, _ := NewCredentials("Current1234")
	pending, _ := NewCredentialsLike("Pending1234", cur)
	later, _ := NewCredentials("Later123456")
	a := Account{Credentials: cur, Pending: pending}
	for _, tc := range []struct {
		what string
		tag  []byte
		want PasswordMatch
	}{
		{"current", PasswordTag(cur), CurrentPassword},
		{"pending", PasswordTag(pending), PendingPassword},
		{"another password", PasswordTag(later), NoMatch},
		{"no tag", nil, NoMatch},
	} {
		if got := a.LinkPassword(tc.tag); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.what, got, tc.want)
		}
	}
	if (Account{Credentials: cur}).LinkPassword(PasswordTag(Credentials{})) != NoMatch {
		t.Error("an empty pending password matched an empty tag")
	}
}
