package sms

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
)

// memNoticeStore is an in-memory NoticeStore that applies plans the way
// the real store does, and keeps the stored messages and queued SMS.
type memNoticeStore struct {
	mu       sync.Mutex
	accounts map[auth.Number]*Receiver
	windows  map[string]NoticeWindow
	outbox   []Pending
	log      map[string][]time.Time // notices queued per number
	noticed  map[string]map[string]time.Time
	written  map[string]map[string]time.Time // NoticePlan.NewNumber
	messages map[auth.Number]int
	creds    map[auth.Number]auth.Credentials // the last password a plan set
}

func newMemNoticeStore() *memNoticeStore {
	return &memNoticeStore{accounts: map[auth.Number]*Receiver{}, windows: map[string]NoticeWindow{},
		log: map[string][]time.Time{}, noticed: map[string]map[string]time.Time{},
		written: map[string]map[string]time.Time{}, messages: map[auth.Number]int{},
		creds: map[auth.Number]auth.Credentials{}}
}

func (s *memNoticeStore) NoticeReceiver(_ context.Context, n auth.Number) (Receiver, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.accounts[n]; ok {
		return *r, nil
	}
	return Receiver{}, nil
}

func (s *memNoticeStore) NoticeWindow(_ context.Context, to string) (NoticeWindow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.windows[to]; ok {
		return w, nil
	}
	return NoticeWindow{}, auth.ErrNotFound
}

func (s *memNoticeStore) DueNoticeWindows(_ context.Context, now time.Time, limit int) ([]NoticeWindow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []NoticeWindow
	for _, w := range s.windows {
		if !w.Closes.After(now) {
			due = append(due, w)
		}
	}
	slices.SortFunc(due, func(a, b NoticeWindow) int { return a.Closes.Compare(b.Closes) })
	return due[:min(limit, len(due))], nil
}

func (s *memNoticeStore) enqueue(p Pending) {
	s.outbox = append(s.outbox, p)
	s.log[p.To] = append(s.log[p.To], p.Created)
}

func (s *memNoticeStore) CloseNoticeWindow(_ context.Context, w NoticeWindow, p *Pending) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.windows[w.To]
	if !ok || !cur.Opened.Equal(w.Opened) {
		return false, nil
	}
	delete(s.windows, w.To)
	if p != nil {
		s.enqueue(*p)
	}
	return true, nil
}

func (s *memNoticeStore) DropNoticeWindow(_ context.Context, to string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.windows, to)
	return nil
}

func (s *memNoticeStore) QueuedTimes(_ context.Context, to, purpose string, since time.Time) ([]time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Time
	for _, t := range s.log[to] {
		if t.After(since) {
			out = append(out, t)
		}
	}
	return out, nil
}

func (s *memNoticeStore) NoticedNumbers(_ context.Context, sender string, since time.Time) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n, t := range s.noticed[sender] {
		if t.After(since) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (s *memNoticeStore) PruneNoticedNumbers(context.Context, time.Time) error { return nil }

// write stores one message with plan, as storage.StoreOffline does.
func (s *memNoticeStore) write(_ context.Context, p NoticePlan) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := p.NewNumber; c != nil {
		others := 0
		for n, t := range s.written[c.Sender] {
			if n != string(p.To) && t.After(c.Since) {
				others++
			}
		}
		if c.Limit > 0 && others >= c.Limit {
			return ErrTooManyNewNumbers
		}
		if s.written[c.Sender] == nil {
			s.written[c.Sender] = map[string]time.Time{}
		}
		s.written[c.Sender][string(p.To)] = p.At
	}
	r, ok := s.accounts[p.To]
	switch {
	case p.Create:
		if ok {
			return ErrStale
		}
		r = &Receiver{Exists: true}
		s.accounts[p.To] = r
	case p.Credentials != nil && (!ok || r.Claimed):
		return ErrStale
	}
	if p.Credentials != nil {
		s.creds[p.To] = *p.Credentials
	}
	r.FirstNoticed = r.FirstNoticed || p.FirstNotice
	r.PasswordDelivered = r.PasswordDelivered || p.PasswordDelivered
	s.messages[p.To]++
	for _, m := range p.SMS {
		s.enqueue(m)
	}
	if p.DropWindow {
		delete(s.windows, string(p.To))
	}
	if p.Window != nil {
		s.windows[string(p.To)] = *p.Window
	}
	if p.CountFor != "" {
		if s.noticed[p.CountFor] == nil {
			s.noticed[p.CountFor] = map[string]time.Time{}
		}
		s.noticed[p.CountFor][string(p.To)] = p.At
	}
	return nil
}

// texts returns the texts queued for to (sealed ones opened with key).
func (s *memNoticeStore) texts(t *testing.T, to string) []string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, p := range s.outbox {
		if p.To != to {
			continue
		}
		b := p.Body
		if p.Sealed {
			var err error
			if b, err = Open(testKey, b); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, string(b))
	}
	return out
}

// noticeEnv is Notices over a memory store and a test clock.
type noticeEnv struct {
	n      *Notices
	store  *memNoticeStore
	clock  *clock
	online map[auth.Number]bool
	wakes  int
	mu     sync.Mutex
}

func newNoticeEnv(t *testing.T) *noticeEnv {
	parser, err := auth.NewNumberParser("KR", nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &noticeEnv{store: newMemNoticeStore(), clock: &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)},
		online: map[auth.Number]bool{}}
	e.n = &Notices{
		Domain: "example.org", Store: e.store, Parser: parser, Key: testKey, Preview: true,
		Window: 10 * time.Minute, PerDay: 10, NewNumbersPerSenderDay: 20,
		IsOnline: func(n auth.Number) bool { e.mu.Lock(); defer e.mu.Unlock(); return e.online[n] },
		Wake:     func() { e.mu.Lock(); e.wakes++; e.mu.Unlock() },
		Now:      e.clock.now,
	}
	return e
}

const (
	alice = "+821011110000"
	bob   = auth.Number("+821022220000")
)

// active makes n an account that has logged in.
func (e *noticeEnv) active(n auth.Number) {
	e.store.accounts[n] = &Receiver{Exists: true, Claimed: true}
}

func (e *noticeEnv) send(t *testing.T, from string, to auth.Number, body string) NoticeResult {
	t.Helper()
	res, err := e.n.Notify(context.Background(), Incoming{To: to, Sender: from, Counter: from, Body: body}, e.store.write)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (e *noticeEnv) closeDue(t *testing.T) time.Time {
	t.Helper()
	next, err := e.n.CloseDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return next
}

func wantTexts(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("texts\n got %q\nwant %q", got, want)
	}
}

func TestNoticeFirstMessageToLatentNumber(t *testing.T) {
	e := newNoticeEnv(t)
	res := e.send(t, alice, bob, "hi")
	if !res.Notified || res.Refused != nil {
		t.Fatalf("result %+v", res)
	}
	got := e.store.texts(t, string(bob))
	re := regexp.MustCompile(`^New message from \+821011110000 on example\.org: "hi"\. Log in with your phone number and password [A-Za-z0-9]{12}\.$`)
	if len(got) != 1 || !re.MatchString(got[0]) {
		t.Fatalf("first notice %q", got)
	}
	if p := e.store.outbox[0]; !p.Sealed || p.Purpose != PurposeNotice || p.Voice {
		t.Errorf("the password notice %+v: want sealed, purpose notice", p)
	}
	if r := e.store.accounts[bob]; r == nil || r.Claimed || !r.FirstNoticed || !r.PasswordDelivered {
		t.Errorf("account %+v", r)
	}
	if e.wakes != 1 {
		t.Errorf("%d wakes, want 1", e.wakes)
	}
	// the window opened: the next ones are counted, and no password again
	e.clock.add(time.Minute)
	if res := e.send(t, alice, bob, "again"); !res.Counted || res.Notified {
		t.Errorf("second message %+v", res)
	}
	e.clock.add(9 * time.Minute)
	e.closeDue(t)
	got = e.store.texts(t, string(bob))
	wantTexts(t, got[1:], "1 new message from +821011110000 on example.org.")
	e.clock.add(time.Minute)
	e.send(t, alice, bob, "later")
	got = e.store.texts(t, string(bob))
	wantTexts(t, got[2:], `New message from +821011110000 on example.org: "later".`)
}

func TestNoticeWindowFolds(t *testing.T) {
	e := newNoticeEnv(t)
	e.active(bob)
	const carol = "+821033330000"
	e.send(t, alice, bob, "one")
	e.clock.add(time.Minute)
	e.send(t, alice, bob, "two")
	e.send(t, carol, bob, "three")
	e.send(t, alice, bob, "four")
	// not yet: the window counts from the first notice
	e.clock.add(8*time.Minute + 59*time.Second)
	if next := e.closeDue(t); !next.Equal(e.clock.now().Add(time.Second)) {
		t.Errorf("next closing %v, want in a second", next)
	}
	wantTexts(t, e.store.texts(t, string(bob)), `New message from +821011110000 on example.org: "one".`)
	e.clock.add(time.Second)
	if next := e.closeDue(t); !next.IsZero() {
		t.Errorf("next closing %v with no window open", next)
	}
	wantTexts(t, e.store.texts(t, string(bob)), `New message from +821011110000 on example.org: "one".`,
		"3 new messages on example.org.")
}

func TestNoticeWindowNothingToFold(t *testing.T) {
	e := newNoticeEnv(t)
	e.active(bob)
	e.send(t, alice, bob, "one")
	e.clock.add(10 * time.Minute)
	e.closeDue(t)
	if got := e.store.texts(t, string(bob)); len(got) != 1 {
		t.Errorf("a window without further messages sent %q", got)
	}
	if len(e.store.windows) != 0 {
		t.Errorf("windows left %+v", e.store.windows)
	}
}

func TestNoticeReceiverCameOnline(t *testing.T) {
	e := newNoticeEnv(t)
	e.active(bob)
	e.send(t, alice, bob, "one")
	e.send(t, alice, bob, "two")
	e.n.CameOnline(context.Background(), bob)
	e.clock.add(10 * time.Minute)
	e.closeDue(t)
	if got := e.store.texts(t, string(bob)); len(got) != 1 {
		t.Errorf("a receiver who came online got %q", got)
	}
	// online now: nothing at all, not even counted
	e.online[bob] = true
	if res := e.send(t, alice, bob, "three"); res.Notified || res.Counted {
		t.Errorf("to an online receiver: %+v", res)
	}
	// online at the window's close: no folded notice
	e.online[bob] = false
	e.send(t, alice, bob, "four")
	e.send(t, alice, bob, "five")
	e.online[bob] = true
	e.clock.add(10 * time.Minute)
	e.closeDue(t)
	if got := e.store.texts(t, string(bob)); len(got) != 2 {
		t.Errorf("folded notice to an online receiver: %q", got)
	}
}

func TestNoticeOverdueWindowClosedByNextMessage(t *testing.T) {
	e := newNoticeEnv(t)
	e.active(bob)
	e.send(t, alice, bob, "one")
	e.send(t, alice, bob, "two")
	e.clock.add(time.Hour) // the scheduler did not run
	e.send(t, alice, bob, "three")
	wantTexts(t, e.store.texts(t, string(bob)), `New message from +821011110000 on example.org: "one".`,
		"1 new message from +821011110000 on example.org.", `New message from +821011110000 on example.org: "three".`)
	if w := e.store.windows[string(bob)]; !w.Opened.Equal(e.clock.now()) || w.Count != 0 {
		t.Errorf("new window %+v", w)
	}
}

func TestNoticePerDay(t *testing.T) {
	e := newNoticeEnv(t)
	e.active(bob)
	e.n.PerDay = 2
	e.send(t, alice, bob, "1")
	e.send(t, alice, bob, "2")
	e.clock.add(10 * time.Minute)
	e.closeDue(t) // the second notice: the fold
	e.clock.add(time.Minute)
	if res := e.send(t, alice, bob, "3"); res.Notified || res.Counted || res.Refused != nil {
		t.Errorf("over the daily cap: %+v", res)
	}
	if len(e.store.windows) != 0 {
		t.Errorf("a window opened without a notice")
	}
	// 24 hours after the first, one more may go
	e.clock.add(day - 11*time.Minute + time.Second)
	if res := e.send(t, alice, bob, "4"); !res.Notified {
		t.Errorf("after a day: %+v", res)
	}
	if got := e.store.texts(t, string(bob)); len(got) != 3 {
		t.Errorf("texts %q", got)
	}
}

func TestNoticeNoWindow(t *testing.T) {
	e := newNoticeEnv(t)
	e.active(bob)
	e.n.Window = 0 // every message is notified
	for _, body := range []string{"a", "b", "c"} {
		if res := e.send(t, alice, bob, body); !res.Notified {
			t.Errorf("%s: %+v", body, res)
		}
	}
	if len(e.store.windows) != 0 || len(e.store.texts(t, string(bob))) != 3 {
		t.Errorf("windows %v, texts %q", e.store.windows, e.store.texts(t, string(bob)))
	}
}

func TestNoticeNewNumbersCap(t *testing.T) {
	e := newNoticeEnv(t)
	e.n.NewNumbersPerSenderDay = 2
	n1, n2, n3 := auth.Number("+821040000001"), auth.Number("+821040000002"), auth.Number("+821040000003")
	e.send(t, alice, n1, "x")
	e.send(t, alice, n2, "x")
	if res := e.send(t, alice, n1, "x"); res.Refused != nil {
		t.Errorf("a number already counted was refused: %+v", res)
	}
	res := e.send(t, alice, n3, "x")
	if !errors.Is(res.Refused, ErrNewNumbersCap) || res.Notified {
		t.Errorf("third new number: %+v", res)
	}
	if e.store.messages[n3] != 1 || !e.store.accounts[n3].Exists {
		t.Errorf("the message over the cap was not stored with its account")
	}
	if got := e.store.texts(t, string(n3)); len(got) != 0 {
		t.Errorf("SMS over the cap %q", got)
	}
	// another sender is not capped; an active receiver is no new number
	if res := e.send(t, "+821055550000", n3, "x"); !res.Notified {
		t.Errorf("other sender: %+v", res)
	}
	e.active(bob)
	if res := e.send(t, alice, bob, "x"); !res.Notified {
		t.Errorf("active receiver: %+v", res)
	}
	// a day later the count starts afresh
	e.clock.add(day + time.Second)
	if res := e.send(t, alice, auth.Number("+821040000004"), "x"); !res.Notified {
		t.Errorf("a day later: %+v", res)
	}
}

func TestNoticeLandline(t *testing.T) {
	const landline = auth.Number("+82231234567")
	e := newNoticeEnv(t)
	res := e.send(t, alice, landline, "ring")
	if !errors.Is(res.Refused, ErrNoSMS) || res.Notified || e.store.messages[landline] != 1 {
		t.Errorf("landline without voice: %+v", res)
	}
	if len(e.store.outbox) != 0 {
		t.Errorf("queued %+v", e.store.outbox)
	}
	e.n.Voice = true
	res = e.send(t, alice, landline, "ring")
	if !res.Notified || len(e.store.outbox) != 1 || !e.store.outbox[0].Voice {
		t.Errorf("landline with voice: %+v %+v", res, e.store.outbox)
	}
	e.send(t, alice, landline, "again")
	e.clock.add(10 * time.Minute)
	e.closeDue(t)
	if len(e.store.outbox) != 2 || !e.store.outbox[1].Voice {
		t.Errorf("folded call %+v", e.store.outbox)
	}
}

func TestNoticePasswordOnlyInFirstNoticeToUnclaimed(t *testing.T) {
	e := newNoticeEnv(t)
	e.store.accounts[bob] = &Receiver{Exists: true} // unclaimed, e.g. imported
	e.n.Window = 0
	e.n.Preview = false
	e.send(t, alice, bob, "secret")
	e.send(t, alice, bob, "secret")
	got := e.store.texts(t, string(bob))
	re := regexp.MustCompile(`^New message from \+821011110000 on example\.org\. Log in with your phone number and password [A-Za-z0-9]+\.$`)
	if len(got) != 2 || !re.MatchString(got[0]) || got[1] != "New message from +821011110000 on example.org." {
		t.Errorf("texts %q", got)
	}
}

func TestNoticeReplansWhenStale(t *testing.T) {
	e := newNoticeEnv(t)
	calls := 0
	write := func(ctx context.Context, p NoticePlan) error {
		calls++
		if calls == 1 {
			// someone made the account meanwhile, and logged in
			e.active(bob)
			return ErrStale
		}
		return e.store.write(ctx, p)
	}
	res, err := e.n.Notify(context.Background(), Incoming{To: bob, Sender: alice, Counter: alice, Body: "hi"}, write)
	if err != nil || !res.Notified || calls != 2 {
		t.Fatalf("res %+v err %v calls %d", res, err, calls)
	}
	wantTexts(t, e.store.texts(t, string(bob)), `New message from +821011110000 on example.org: "hi".`)
}

func TestNoticesRunClosesWindows(t *testing.T) {
	e := newNoticeEnv(t)
	e.active(bob)
	e.n.Now = nil // real time
	e.n.Window = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.n.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	e.twoInAWindow(t, "Run did not close the window")
}

// twoInAWindow sends bob two messages and waits (5 s) for the window's
// closing to text the second.
func (e *noticeEnv) twoInAWindow(t *testing.T, failure string) {
	t.Helper()
	e.send(t, alice, bob, "one")
	e.send(t, alice, bob, "two")
	deadline := time.Now().Add(5 * time.Second)
	for len(e.store.texts(t, string(bob))) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q", failure, e.store.texts(t, string(bob)))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNoticesOpenedWakesOtherNode: in a cluster the windows are closed
// by the one node that runs Run; a window opened on another node wakes it
// (Opened there, Poke here), so the window closes on time rather than at
// Run's next look, up to a minute later.
func TestNoticesOpenedWakesOtherNode(t *testing.T) {
	e := newNoticeEnv(t)
	e.active(bob)
	e.n.Now = nil // real time
	e.n.Window = 50 * time.Millisecond
	// The node that runs the scheduler: the same store, another Notices.
	looked := make(chan struct{}, 1)
	closer := &Notices{Domain: e.n.Domain, Store: lookingStore{e.store, looked}, Parser: e.n.Parser, Key: e.n.Key, Preview: true,
		Window: e.n.Window, PerDay: e.n.PerDay, NewNumbersPerSenderDay: e.n.NewNumbersPerSenderDay, IsOnline: e.n.IsOnline}
	e.n.Opened = closer.Poke
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { closer.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	<-looked // its first look found nothing: it sleeps for a minute
	e.twoInAWindow(t, "the other node did not close the window")
}

// lookingStore tells looked (without blocking) each time the windows due
// are read.
type lookingStore struct {
	*memNoticeStore
	looked chan struct{}
}

func (s lookingStore) DueNoticeWindows(ctx context.Context, now time.Time, limit int) ([]NoticeWindow, error) {
	select {
	case s.looked <- struct{}{}:
	default:
	}
	return s.memNoticeStore.DueNoticeWindows(ctx, now, limit)
}

// A password handed out already (texted, printed by xmppctl) is never
// replaced: the first notice says how to log in instead, without one, and
// later ones are plain (SPEC.md "SMS texts").
func TestNoticeKeepsDeliveredPassword(t *testing.T) {
	for _, preview := range []bool{true, false} {
		e := newNoticeEnv(t)
		e.store.accounts[bob] = &Receiver{Exists: true, PasswordDelivered: true}
		e.n.Window, e.n.Preview = 0, preview
		var plans []NoticePlan
		write := func(ctx context.Context, p NoticePlan) error {
			plans = append(plans, p)
			return e.store.write(ctx, p)
		}
		for range 2 {
			if _, err := e.n.Notify(context.Background(), Incoming{To: bob, Sender: alice, Counter: alice, Body: "hi"}, write); err != nil {
				t.Fatal(err)
			}
		}
		first := `New message from +821011110000 on example.org: "hi". Log in with your phone number and password.`
		later := `New message from +821011110000 on example.org: "hi".`
		if !preview {
			first = `New message from +821011110000 on example.org. Log in with your phone number and password.`
			later = `New message from +821011110000 on example.org.`
		}
		wantTexts(t, e.store.texts(t, string(bob)), first, later)
		for i, p := range plans {
			if p.Credentials != nil || p.PasswordDelivered || p.FirstNotice != (i == 0) {
				t.Errorf("plan %d %+v: want no credentials, first notice marked only once", i, p)
			}
		}
		if e.store.outbox[0].Sealed {
			t.Error("a notice without a password is sealed")
		}
	}
}

// XMPPD_NEW_NUMBERS_PER_SENDER_DAY: a sender leaves messages for at most
// so many never-logged-in numbers a day; beyond, nothing is stored (the
// store refuses the plan), and numbers over the notice cap count too.
func TestNoticeStoredNewNumbersCap(t *testing.T) {
	e := newNoticeEnv(t)
	e.n.NewNumbersPerSenderDay, e.n.StoredNewNumbersPerSenderDay = 1, 2
	n1, n2, n3 := auth.Number("+821040000001"), auth.Number("+821040000002"), auth.Number("+821040000003")
	if res := e.send(t, alice, n1, "x"); !res.Notified {
		t.Fatalf("first new number %+v", res)
	}
	if res := e.send(t, alice, n2, "x"); !errors.Is(res.Refused, ErrNewNumbersCap) || e.store.messages[n2] != 1 {
		t.Fatalf("second new number, over the notice cap: %+v", res)
	}
	_, err := e.n.Notify(context.Background(), Incoming{To: n3, Sender: alice, Counter: alice, Body: "x"}, e.store.write)
	if !errors.Is(err, ErrTooManyNewNumbers) {
		t.Fatalf("third new number: %v, want ErrTooManyNewNumbers", err)
	}
	if e.store.messages[n3] != 0 || e.store.accounts[n3] != nil || len(e.store.texts(t, string(n3))) != 0 {
		t.Fatal("something was written for the number over the cap")
	}
	e.send(t, alice, n1, "again") // not a new number
	e.active(bob)                 // has logged in: no new number
	if res := e.send(t, alice, bob, "x"); !res.Notified {
		t.Errorf("active receiver %+v", res)
	}
	if res := e.send(t, "+821055550000", n3, "x"); !res.Notified {
		t.Errorf("another sender %+v", res)
	}
	e.clock.add(day + time.Second)
	if _, err := e.n.Notify(context.Background(), Incoming{To: "+821040000004", Sender: alice, Counter: alice, Body: "x"}, e.store.write); err != nil {
		t.Errorf("a day later: %v", err)
	}
}

// A store that hangs holds the receiver's lock for as long as the call
// that hangs: another message to the receiver waits for it only until
// its own context ends, and the lock is whole again afterwards.
func TestNoticeLockWaitEndsWithContext(t *testing.T) {
	e := newNoticeEnv(t)
	e.active(bob)
	inWrite, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := e.n.Notify(context.Background(), Incoming{To: bob, Sender: alice, Counter: alice, Body: "1"},
			func(ctx context.Context, p NoticePlan) error {
				close(inWrite)
				<-release // a store that hangs
				return e.store.write(ctx, p)
			})
		first <- err
	}()
	<-inWrite
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := e.n.Notify(ctx, Incoming{To: bob, Sender: "+821033330000", Counter: "+821033330000", Body: "2"}, e.store.write)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("second Notify: %v after %v, want DeadlineExceeded at its deadline", err, time.Since(start))
	}
	// The same for the receiver coming online (its presence waits on it).
	e.n.StoreTimeout = 50 * time.Millisecond
	start = time.Now()
	e.n.CameOnline(context.Background(), bob)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("CameOnline returned after %v", d)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	e.send(t, alice, bob, "3") // would hang on a stripe left taken
	if e.store.messages[bob] != 2 {
		t.Errorf("%d messages stored, want 2", e.store.messages[bob])
	}
}

// hangingDrop is a store whose DropNoticeWindow hangs until its context ends.
type hangingDrop struct {
	*memNoticeStore
	calls chan error
}

func (s hangingDrop) DropNoticeWindow(ctx context.Context, to string) error {
	<-ctx.Done()
	s.calls <- ctx.Err()
	return ctx.Err()
}

// CameOnline runs for a client's presence: a store that hangs costs it
// StoreTimeout.

// CameOnline writes nothing when no window is open (a read, not the
// database's write lock, for most logins), and drops one that is.
func TestNoticeCameOnlineWritesOnlyAWindow(t *testing.T) {
	e := newNoticeEnv(t)
	store := hangingDrop{e.store, make(chan error, 1)}
	e.n.Store, e.n.StoreTimeout = store, 5*time.Second
	e.n.CameOnline(t.Context(), bob)
	select {
	case err := <-store.calls:
		t.Fatalf("CameOnline dropped a window that was not there (%v)", err)
	default:
	}
	e.n.Store = e.store
	e.send(t, alice, bob, "hi")
	e.n.CameOnline(t.Context(), bob)
	if _, err := e.store.NoticeWindow(t.Context(), string(bob)); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("window after CameOnline: %v, want none", err)
	}
}
func TestNoticeCameOnlineStoreTimeout(t *testing.T) {
	e := newNoticeEnv(t)
	e.send(t, alice, bob, "hi") // a window for CameOnline to drop
	if _, err := e.store.NoticeWindow(t.Context(), string(bob)); err != nil {
		t.Fatalf("no window open: %v", err)
	}
	store := hangingDrop{e.store, make(chan error, 1)}
	e.n.Store, e.n.StoreTimeout = store, 50*time.Millisecond
	done := make(chan struct{})
	go func() { e.n.CameOnline(context.Background(), bob); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("CameOnline still waits for a store that hangs")
	}
	if err := <-store.calls; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("store call ended with %v, want DeadlineExceeded", err)
	}
}

// The password of an account made by a first message comes from the
// Minter, not from PBKDF2 on the sender's goroutine: with the Minter not
// running the message waits for it (until its context ends) and nothing is
// written; with it running, the texted password logs in.
func TestNoticeNewAccountPasswordFromMinter(t *testing.T) {
	e := newNoticeEnv(t)
	e.n.Minter = auth.NewMinter(12, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := e.n.Notify(ctx, Incoming{To: bob, Sender: alice, Counter: alice, Body: "hi"}, e.store.write)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Notify with no minted password: %v, want the deadline", err)
	}
	if e.store.accounts[bob] != nil || len(e.store.outbox) != 0 {
		t.Fatalf("written without a password: account %+v, outbox %d", e.store.accounts[bob], len(e.store.outbox))
	}
	rctx, stop := context.WithCancel(context.Background())
	defer stop()
	go e.n.Minter.Run(rctx)
	e.send(t, alice, bob, "hi")
	got := e.store.texts(t, string(bob))
	m := regexp.MustCompile(`password ([A-Za-z0-9]{12})\.$`).FindStringSubmatch(got[0])
	if m == nil {
		t.Fatalf("notice %q", got)
	}
	if c := e.store.creds[bob]; !c.VerifyPassword(m[1]) {
		t.Fatal("the stored credentials do not verify the texted password")
	}
}
