package account

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/auth"
)

const (
	domain = "example.net"
	number = auth.Number("+15550001111")
)

var errBoom = errors.New("boom")

// events records what the fakes were asked, in order, so a test sees
// both what happened and in which order.
type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.log = append(e.log, s)
}

func (e *events) got() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.log)
}

type fakeStore struct {
	ev       *events
	err      error // of every call
	promoted bool
	gen      int64
	creds    auth.Credentials
	// hang makes every call wait for its context, as a hung database does.
	hang bool
}

func (s *fakeStore) wait(ctx context.Context) error {
	if !s.hang {
		return s.err
	}
	<-ctx.Done()
	return ctx.Err()
}

func (s *fakeStore) SetCredentials(ctx context.Context, n auth.Number, c auth.Credentials) (bool, error) {
	s.ev.add("set " + string(n))
	s.creds = c
	return false, s.wait(ctx)
}

func (s *fakeStore) PromotePending(ctx context.Context, n auth.Number, pending auth.Credentials) (int64, bool, error) {
	s.ev.add("promote " + string(n))
	if err := s.wait(ctx); err != nil {
		return 0, false, err
	}
	return s.gen, s.promoted, nil
}

func (s *fakeStore) WipeAccountData(ctx context.Context, n auth.Number) error {
	s.ev.add("wipe " + string(n))
	return s.wait(ctx)
}

type fakeSessions struct {
	ev  *events
	err error
}

func (f *fakeSessions) Kick(_ context.Context, n, condition string) (int, error) {
	f.ev.add("kick " + n + " " + condition)
	return 1, f.err
}

func (f *fakeSessions) KickExcept(_ context.Context, n string, keep jid.JID, condition string) (int, error) {
	f.ev.add("kick " + n + " except " + keep.String() + " " + condition)
	return 1, f.err
}

type fakeRoster struct {
	ev  *events
	err error
}

func (f *fakeRoster) Reset(_ context.Context, owner jid.JID) error {
	f.ev.add("reset " + owner.String())
	return f.err
}

type fakeBlocks struct{ ev *events }

func (f *fakeBlocks) Forget(bare jid.JID) { f.ev.add("forget " + bare.String()) }

// fakes are a Lifecycle's collaborators, recording into one log.
type fakes struct {
	ev       *events
	store    *fakeStore
	sessions *fakeSessions
	roster   *fakeRoster
}

func newLifecycle() (*Lifecycle, *fakes) {
	ev := &events{}
	f := &fakes{ev: ev, store: &fakeStore{ev: ev}, sessions: &fakeSessions{ev: ev}, roster: &fakeRoster{ev: ev}}
	return &Lifecycle{Domain: domain, Store: f.store, Sessions: f.sessions, Roster: f.roster, Blocks: &fakeBlocks{ev}}, f
}

func wantEvents(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("calls:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

const bare = "+15550001111@example.net"

func TestRecycle(t *testing.T) {
	for _, tc := range []struct {
		name      string
		number    auth.Number
		rosterErr error
		storeErr  error
		wantErr   bool
		want      []string
	}{
		// The contacts are told before the roster goes, and the cached
		// block list goes last, so it cannot be read back in between.
		{name: "ok", number: number, want: []string{"reset " + bare, "wipe " + string(number), "forget " + bare}},
		{name: "roster_fails", number: number, rosterErr: errBoom, wantErr: true, want: []string{"reset " + bare}},
		{name: "wipe_fails", number: number, storeErr: errBoom, wantErr: true, want: []string{"reset " + bare, "wipe " + string(number)}},
		{name: "not_canonical", number: "5550001111", wantErr: true, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, f := newLifecycle()
			f.roster.err, f.store.err = tc.rosterErr, tc.storeErr
			err := l.Recycle(context.Background(), tc.number)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Recycle = %v, want error %v", err, tc.wantErr)
			}
			wantEvents(t, f.ev.got(), tc.want)
		})
	}
	t.Run("no_modules", func(t *testing.T) {
		l, f := newLifecycle()
		l.Roster, l.Blocks = nil, nil
		if err := l.Recycle(context.Background(), number); err != nil {
			t.Fatal(err)
		}
		wantEvents(t, f.ev.got(), []string{"wipe " + string(number)})
	})
}

func TestChangePassword(t *testing.T) {
	session := jid.MustParse(bare + "/phone")
	for _, tc := range []struct {
		name     string
		storeErr error
		kickErr  error
		wantErr  bool
		want     []string
	}{
		// The session that changed it stays; the others logged in with
		// the old password.
		{name: "ok", want: []string{"set " + string(number), "kick " + string(number) + " except " + bare + "/phone not-authorized"}},
		{name: "store_fails", storeErr: errBoom, wantErr: true, want: []string{"set " + string(number)}},
		// The password changed all the same: the change succeeds.
		{name: "kick_fails", kickErr: errBoom, want: []string{"set " + string(number), "kick " + string(number) + " except " + bare + "/phone not-authorized"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, f := newLifecycle()
			f.store.err, f.sessions.err = tc.storeErr, tc.kickErr
			err := l.ChangePassword(context.Background(), number, session, "new secret")
			if (err != nil) != tc.wantErr {
				t.Fatalf("ChangePassword = %v, want error %v", err, tc.wantErr)
			}
			wantEvents(t, f.ev.got(), tc.want)
			if !f.store.creds.VerifyPassword("new secret") {
				t.Errorf("stored credentials do not verify the new password")
			}
		})
	}
}

func TestSetPassword(t *testing.T) {
	creds, err := auth.NewCredentials("typed on the web")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("ok", func(t *testing.T) {
		l, f := newLifecycle()
		if err := l.SetPassword(context.Background(), number, creds); err != nil {
			t.Fatal(err)
		}
		// No session made the change: all of them close.
		wantEvents(t, f.ev.got(), []string{"set " + string(number), "kick " + string(number) + " not-authorized"})
	})
	t.Run("store_fails", func(t *testing.T) {
		l, f := newLifecycle()
		f.store.err = errBoom
		if err := l.SetPassword(context.Background(), number, creds); !errors.Is(err, errBoom) {
			t.Fatalf("SetPassword = %v, want %v", err, errBoom)
		}
		wantEvents(t, f.ev.got(), []string{"set " + string(number)})
	})
}

func TestPromotePending(t *testing.T) {
	for _, tc := range []struct {
		name     string
		promoted bool
		storeErr error
		wantGen  int64
		want     []string
	}{
		// Sessions of the older password close; the login that used the
		// pending one binds only afterwards.
		{name: "promoted", promoted: true, wantGen: 7, want: []string{"promote " + string(number), "kick " + string(number) + " not-authorized"}},
		{name: "already_current", wantGen: 7, want: []string{"promote " + string(number)}},
		{name: "store_fails", storeErr: errBoom, want: []string{"promote " + string(number)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, f := newLifecycle()
			f.store.promoted, f.store.gen, f.store.err = tc.promoted, 7, tc.storeErr
			gen, err := l.PromotePending(context.Background(), number, auth.Credentials{})
			if !errors.Is(err, tc.storeErr) || gen != tc.wantGen {
				t.Fatalf("PromotePending = %d, %v; want %d, %v", gen, err, tc.wantGen, tc.storeErr)
			}
			wantEvents(t, f.ev.got(), tc.want)
		})
	}
}

func TestForget(t *testing.T) {
	l, f := newLifecycle()
	l.Forget(context.Background(), number)
	wantEvents(t, f.ev.got(), []string{"kick " + string(number) + " not-authorized", "forget " + bare})
}

// A store that hangs costs a request StoreTimeout, not forever.
func TestLifecycleStoreTimeout(t *testing.T) {
	const timeout = 50 * time.Millisecond
	creds, err := auth.NewCredentials("x")
	if err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func(*Lifecycle) error{
		"SetPassword": func(l *Lifecycle) error { return l.SetPassword(context.Background(), number, creds) },
		"ChangePassword": func(l *Lifecycle) error {
			return l.ChangePassword(context.Background(), number, jid.MustParse(bare+"/r"), "x")
		},
		"PromotePending": func(l *Lifecycle) error {
			_, err := l.PromotePending(context.Background(), number, creds)
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			l, f := newLifecycle()
			f.store.hang, l.StoreTimeout = true, timeout
			done := make(chan error, 1)
			go func() { done <- call(l) }()
			select {
			case err := <-done:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v, want DeadlineExceeded", err)
				}
			case <-time.After(100 * timeout):
				t.Fatalf("no answer %v after a %v store timeout", 100*timeout, timeout)
			}
		})
	}
}
