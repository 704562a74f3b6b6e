package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/storage"
)

// loginLinkTests are the contract of one-tap links and web client tickets
// (schema migration 5); Run runs them.
var loginLinkTests = []struct {
	name string
	fn   func(t *testing.T, db *storage.DB)
}{
	{"LoginLinks", testLoginLinks},
	{"LoginLinkUsedOnce", testLoginLinkUsedOnce},
	{"Tickets", testTickets},
	{"TicketUsedOnce", testTicketUsedOnce},
	{"LinksAndTicketsGoWithTheAccount", testLinksGoWithTheAccount},
}

func link(n auth.Number, created time.Time, ttl time.Duration) (token string, l auth.LoginLink) {
	token, hash := auth.NewLinkToken()
	return token, auth.LoginLink{Hash: hash, Number: n, PasswordTag: []byte("tag of " + string(n)),
		Created: created, Expires: created.Add(ttl)}
}

// A link is found by its hash, used once while unexpired, and forgotten a
// week after it expired.
func testLoginLinks(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550005001")
	at := time.Now().UTC().Truncate(time.Millisecond)
	_, l := link(n, at, time.Hour)
	must(t, db.CreateLoginLink(ctx, l))
	if err := db.CreateLoginLink(ctx, l); err == nil {
		t.Fatal("a second link under the same hash was stored")
	}
	got, err := db.LoginLink(ctx, l.Hash)
	must(t, err)
	if !reflect.DeepEqual(got, l) {
		t.Fatalf("LoginLink = %+v, want %+v", got, l)
	}
	if _, err := db.LoginLink(ctx, "no such hash"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("unknown link: %v, want ErrNotFound", err)
	}

	// Expired: not usable, still known.
	if _, err := db.UseLoginLink(ctx, l.Hash, l.Expires); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("using an expired link: %v, want ErrNotFound", err)
	}
	used := at.Add(time.Minute)
	got, err = db.UseLoginLink(ctx, l.Hash, used)
	must(t, err)
	if got.Number != n || !got.Used.Equal(used) || string(got.PasswordTag) != string(l.PasswordTag) {
		t.Fatalf("UseLoginLink = %+v", got)
	}
	if _, err := db.UseLoginLink(ctx, l.Hash, used); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("using a link twice: %v, want ErrNotFound", err)
	}
	if got, err := db.LoginLink(ctx, l.Hash); err != nil || !got.Used.Equal(used) {
		t.Fatalf("a used link reads %+v %v", got, err)
	}

	// A week after it expired, a new link's creation forgets it.
	_, later := link(n, l.Expires.Add(7*24*time.Hour-time.Second), time.Hour)
	must(t, db.CreateLoginLink(ctx, later))
	if _, err := db.LoginLink(ctx, l.Hash); err != nil {
		t.Fatalf("forgotten before a week past its expiry: %v", err)
	}
	_, latest := link(n, l.Expires.Add(7*24*time.Hour+time.Second), time.Hour)
	must(t, db.CreateLoginLink(ctx, latest))
	if _, err := db.LoginLink(ctx, l.Hash); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("kept over a week past its expiry: %v", err)
	}
}

// Of concurrent uses of one link, exactly one succeeds.
func testLoginLinkUsedOnce(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	at := time.Now().UTC()
	_, l := link("+15550005002", at, time.Hour)
	must(t, db.CreateLoginLink(ctx, l))
	const racers = 8
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i := range racers {
		wg.Go(func() { _, errs[i] = db.UseLoginLink(ctx, l.Hash, at) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, auth.ErrNotFound):
			t.Fatal(err)
		}
	}
	if won != 1 {
		t.Fatalf("%d uses succeeded, want 1", won)
	}
}

func ticket(n auth.Number, gen int64, id string, expires time.Time, seed byte) auth.Ticket {
	k := creds(seed)
	for _, s := range []*auth.ScramKeys{&k.SHA1, &k.SHA256} {
		s.Salt, s.Iterations = nil, 0 // the account's are used
	}
	return auth.Ticket{ID: id, Number: n, Generation: gen, Keys: k, Expires: expires}
}

// Tickets round-trip without salts, only unexpired ones are listed and
// used, at most auth.MaxTickets are kept per account, and expired ones are
// forgotten.
func testTickets(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n, other = auth.Number("+15550005003"), auth.Number("+15550005004")
	at := time.Now().UTC().Truncate(time.Millisecond)
	a := ticket(n, 3, "a", at.Add(time.Minute), 1)
	must(t, db.AddTicket(ctx, a, at))
	must(t, db.AddTicket(ctx, ticket(other, 1, "o", at.Add(time.Minute), 2), at))
	list, err := db.Tickets(ctx, n, at)
	must(t, err)
	if len(list) != 1 || !reflect.DeepEqual(list[0], a) {
		t.Fatalf("Tickets = %+v, want [%+v]", list, a)
	}
	if list, err := db.Tickets(ctx, n, a.Expires); err != nil || len(list) != 0 {
		t.Fatalf("expired tickets listed: %+v %v", list, err)
	}
	if err := db.UseTicket(ctx, other, "a", at); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("another account used the ticket: %v", err)
	}
	if err := db.UseTicket(ctx, n, "a", a.Expires); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("an expired ticket was used: %v", err)
	}
	must(t, db.UseTicket(ctx, n, "a", at))
	if err := db.UseTicket(ctx, n, "a", at); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("a ticket used twice: %v", err)
	}

	// The newest MaxTickets stay.
	for i := range auth.MaxTickets + 3 {
		must(t, db.AddTicket(ctx, ticket(n, 3, fmt.Sprintf("t%02d", i), at.Add(time.Duration(i+1)*time.Second), byte(i)), at))
	}
	list, err = db.Tickets(ctx, n, at)
	must(t, err)
	if len(list) != auth.MaxTickets || list[0].ID != fmt.Sprintf("t%02d", auth.MaxTickets+2) || list[len(list)-1].ID != "t03" {
		ids := []string{}
		for _, x := range list {
			ids = append(ids, x.ID)
		}
		t.Fatalf("kept %v, want the newest %d, newest first", ids, auth.MaxTickets)
	}
	if err := db.UseTicket(ctx, n, "t00", at); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("an old ticket beyond the cap still works: %v", err)
	}
	// Adding one later forgets every expired ticket, of any account.
	must(t, db.AddTicket(ctx, ticket(n, 3, "late", at.Add(time.Hour), 9), at.Add(time.Minute)))
	if err := db.UseTicket(ctx, other, "o", at); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("an expired ticket was not forgotten: %v", err)
	}
}

// Of concurrent uses of one ticket, exactly one succeeds.
func testTicketUsedOnce(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n = auth.Number("+15550005005")
	at := time.Now().UTC()
	must(t, db.AddTicket(ctx, ticket(n, 1, "x", at.Add(time.Minute), 1), at))
	const racers = 8
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i := range racers {
		wg.Go(func() { errs[i] = db.UseTicket(ctx, n, "x", at) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, auth.ErrNotFound):
			t.Fatal(err)
		}
	}
	if won != 1 {
		t.Fatalf("%d uses succeeded, want 1", won)
	}
}

// Deleting or recycling an account removes its links and tickets.
func testLinksGoWithTheAccount(t *testing.T, db *storage.DB) {
	ctx := t.Context()
	const n, keep = auth.Number("+15550005006"), auth.Number("+15550005007")
	at := time.Now().UTC()
	for _, who := range []auth.Number{n, keep} {
		_, err := db.SetCredentials(ctx, who, creds(1))
		must(t, err)
	}
	_, l := link(n, at, time.Hour)
	_, k := link(keep, at, time.Hour)
	must(t, db.CreateLoginLink(ctx, l))
	must(t, db.CreateLoginLink(ctx, k))
	must(t, db.AddTicket(ctx, ticket(n, 1, "n1", at.Add(time.Minute), 1), at))
	must(t, db.AddTicket(ctx, ticket(keep, 1, "k1", at.Add(time.Minute), 1), at))

	must(t, db.WipeAccountData(ctx, n))
	if _, err := db.LoginLink(ctx, l.Hash); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("a recycled account's link survived: %v", err)
	}
	if list, err := db.Tickets(ctx, n, at); err != nil || len(list) != 0 {
		t.Errorf("a recycled account's tickets survived: %v %v", list, err)
	}
	_, l = link(n, at, time.Hour)
	must(t, db.CreateLoginLink(ctx, l))
	must(t, db.DeleteAccount(ctx, n))
	if _, err := db.LoginLink(ctx, l.Hash); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("a deleted account's link survived: %v", err)
	}
	if _, err := db.LoginLink(ctx, k.Hash); err != nil {
		t.Errorf("another account's link went too: %v", err)
	}
	if list, err := db.Tickets(ctx, keep, at); err != nil || len(list) != 1 {
		t.Errorf("another account's tickets went too: %v %v", list, err)
	}
}
