package account

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/auth"
	"dialtone/offline"
	"dialtone/sms"
)

// fakeNotices plans nothing of its own: it hands write a fixed plan, as
// sms.Notices would after its decisions, and reports res.
type fakeNotices struct {
	plan sms.NoticePlan
	res  sms.NoticeResult
	err  error // before write, as a failed read of the receiver
	got  []sms.Incoming
}

func (f *fakeNotices) Notify(ctx context.Context, in sms.Incoming, write sms.NoticeWrite) (sms.NoticeResult, error) {
	f.got = append(f.got, in)
	if f.err != nil {
		return sms.NoticeResult{}, f.err
	}
	if err := write(ctx, f.plan); err != nil {
		return sms.NoticeResult{}, err
	}
	return f.res, nil
}

type fakeOfflineStore struct {
	err    error
	hang   bool
	id     int64
	limits offline.Limits
	plan   sms.NoticePlan
	stored []offline.Message
	// noticed are the owners of StoreNotice calls.
	noticed []string
}

func (s *fakeOfflineStore) StoreOffline(ctx context.Context, m offline.Message, limits offline.Limits, plan sms.NoticePlan) (int64, error) {
	if s.hang {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	s.limits, s.plan = limits, plan
	if s.err != nil {
		return 0, s.err
	}
	s.stored = append(s.stored, m)
	return s.id, nil
}

func (s *fakeOfflineStore) StoreNotice(ctx context.Context, owner string, plan sms.NoticePlan) error {
	s.plan = plan
	s.noticed = append(s.noticed, owner)
	return s.err
}

// Notice runs the notice rules with the plan Notify made and stores no
// message.
func TestNotice(t *testing.T) {
	const to = "+15550003333"
	from := jid.MustParse("+15550002222@example.net/r")
	plan := sms.NoticePlan{To: to, FirstNotice: true}
	notices := &fakeNotices{plan: plan}
	store := &fakeOfflineStore{id: 42}
	o := &Offline{Domain: "example.net", Store: store, Notices: notices}
	kept, err := o.Notice(context.Background(), Message{Message: offline.Message{Owner: to}, From: from, Body: "hello"})
	if err != nil || kept.ID != 0 || kept.Warning != nil {
		t.Fatalf("Notice = %+v, %v", kept, err)
	}
	if len(store.stored) != 0 || len(store.noticed) != 1 || store.noticed[0] != to || !store.plan.FirstNotice {
		t.Fatalf("stored %v, noticed %v, plan %+v", store.stored, store.noticed, store.plan)
	}
	if len(notices.got) != 1 || notices.got[0].Body != "hello" || notices.got[0].To != to {
		t.Fatalf("Notify got %+v", notices.got)
	}
}

func TestSenderOf(t *testing.T) {
	for _, tc := range []struct {
		from string
		want Sender
	}{
		{"+15550002222@example.net/phone", Sender{Name: "+15550002222", Counter: "+15550002222", Who: "you"}},
		// Another server: named by its bare JID, counted by its
		// registrable domain, so its subdomains share the caps.
		{"alice@chat.a.example.com/x", Sender{Name: "alice@chat.a.example.com", Counter: "example.com", Who: "senders from example.com"}},
		{"bob@example.com", Sender{Name: "bob@example.com", Counter: "example.com", Who: "senders from example.com"}},
		{"carol@127.0.0.1/r", Sender{Name: "carol@127.0.0.1", Counter: "127.0.0.1", Who: "senders from 127.0.0.1"}},
		// A JID of this domain without a localpart is no number here.
		{"example.net", Sender{Name: "example.net", Counter: "example.net", Who: "senders from example.net"}},
		// A subdomain of this server is another server.
		{"dave@sub.example.net", Sender{Name: "dave@sub.example.net", Counter: "example.net", Who: "senders from example.net"}},
	} {
		if got := SenderOf(jid.MustParse(tc.from), domain); got != tc.want {
			t.Errorf("SenderOf(%s) = %+v, want %+v", tc.from, got, tc.want)
		}
	}
}

// Remote senders are counted per registrable domain (public suffix list).
func TestRegistrableDomain(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":          "example.com",
		"a.example.com":        "example.com",
		"x.y.z.example.com":    "example.com",
		"chat.example.co.uk":   "example.co.uk",
		"a.example.test":       "example.test", // not listed: the default rule, one label
		"Foo.Example.COM.":     "example.com",
		"alice.github.io":      "alice.github.io", // a private suffix: each user is one
		"xmpp.alice.github.io": "alice.github.io",
		"localhost":            "localhost",
		"com":                  "com",
		"co.uk":                "co.uk",
		"127.0.0.1":            "127.0.0.1",
		"[2001:db8::1]":        "[2001:db8::1]",
	} {
		if got := RegistrableDomain(in); got != want {
			t.Errorf("RegistrableDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKeep(t *testing.T) {
	const to = "+15550003333"
	local := jid.MustParse("+15550002222@example.net/phone")
	remote := jid.MustParse("eve@a.example.com/x")
	for _, tc := range []struct {
		name     string
		from     jid.JID
		res      sms.NoticeResult
		storeErr error
		// what the sender is told
		wantID        int64
		wantCondition stanza.Condition // "": no warning
		wantText      string
		wantErr       error
		wantStored    bool
	}{
		{name: "notified", from: local, res: sms.NoticeResult{Notified: true}, wantID: 42, wantStored: true},
		{name: "counted_in_window", from: remote, res: sms.NoticeResult{Counted: true}, wantID: 42, wantStored: true},
		{name: "notice_cap_local", from: local, res: sms.NoticeResult{Refused: sms.ErrNewNumbersCap}, wantID: 42, wantStored: true,
			wantCondition: stanza.PolicyViolation,
			wantText:      "The message is stored for " + to + ", but no SMS was sent to tell them: you reached today's limit of new numbers notified. It will be delivered when they log in."},
		{name: "notice_cap_remote", from: remote, res: sms.NoticeResult{Refused: sms.ErrNewNumbersCap}, wantID: 42, wantStored: true,
			wantCondition: stanza.PolicyViolation,
			wantText:      "The message is stored for " + to + ", but no SMS was sent to tell them: senders from example.com reached today's limit of new numbers notified. It will be delivered when they log in."},
		{name: "landline", from: local, res: sms.NoticeResult{Refused: sms.ErrNoSMS}, wantID: 42, wantStored: true,
			wantCondition: stanza.RecipientUnavailable,
			wantText:      "The message is stored for " + to + ", but no SMS was sent to tell them: the number is a landline, which cannot receive SMS. It will be delivered when they log in."},
		// Not stored: a warning instead, not an error (no internal-server-error).
		{name: "store_cap_local", from: local, storeErr: sms.ErrTooManyNewNumbers,
			wantCondition: stanza.PolicyViolation,
			wantText:      "The message was not stored for " + to + ": you reached today's limit of new numbers written to (numbers that have not logged in here yet)."},
		{name: "store_cap_remote", from: remote, storeErr: sms.ErrTooManyNewNumbers,
			wantCondition: stanza.PolicyViolation,
			wantText:      "The message was not stored for " + to + ": senders from example.com reached today's limit of new numbers written to (numbers that have not logged in here yet)."},
		{name: "full", from: local, storeErr: offline.ErrFull, wantErr: offline.ErrFull},
		{name: "store_fails", from: local, storeErr: errBoom, wantErr: errBoom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := sms.NoticePlan{To: to, FirstNotice: true}
			notices := &fakeNotices{plan: plan, res: tc.res}
			store := &fakeOfflineStore{id: 42, err: tc.storeErr}
			o := &Offline{Domain: domain, Store: store, Notices: notices, Bytes: 1000}
			m := Message{Message: offline.Message{Owner: to, From: tc.from.String(), Stanza: []byte("<message/>")}, From: tc.from, Body: "hello"}
			kept, err := o.Keep(context.Background(), m, 7)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("Keep err = %v, want %v", err, tc.wantErr)
			}
			if kept.ID != tc.wantID {
				t.Errorf("ID = %d, want %d", kept.ID, tc.wantID)
			}
			var se stanza.Error
			switch {
			case tc.wantCondition == "" && kept.Warning != nil:
				t.Errorf("warning %v, want none", kept.Warning)
			case tc.wantCondition != "" && !errors.As(kept.Warning, &se):
				t.Errorf("warning %v, want a stanza error", kept.Warning)
			case tc.wantCondition != "" && (se.Condition != tc.wantCondition || se.Type != stanza.Cancel || se.Text[""] != tc.wantText):
				t.Errorf("warning %s/%s %q,\nwant cancel/%s %q", se.Type, se.Condition, se.Text[""], tc.wantCondition, tc.wantText)
			}
			if got := len(store.stored) == 1; got != tc.wantStored {
				t.Errorf("stored: %v, want %v", got, tc.wantStored)
			}
			// The store got the plan Notify made and both limits.
			if store.limits != (offline.Limits{Messages: 7, Bytes: 1000}) || store.plan.To != plan.To || !store.plan.FirstNotice {
				t.Errorf("store got limits %+v, plan %+v", store.limits, store.plan)
			}
			s := SenderOf(tc.from, domain)
			want := sms.Incoming{To: to, Sender: s.Name, Counter: s.Counter, Body: "hello"}
			if len(notices.got) != 1 || notices.got[0] != want {
				t.Errorf("Notify got %+v, want %+v", notices.got, want)
			}
		})
	}
	t.Run("notify_fails", func(t *testing.T) {
		store := &fakeOfflineStore{id: 42}
		o := &Offline{Domain: domain, Store: store, Notices: &fakeNotices{err: errBoom}}
		kept, err := o.Keep(context.Background(), Message{Message: offline.Message{Owner: to}, From: local}, 0)
		if !errors.Is(err, errBoom) || kept != (Kept{}) || len(store.stored) != 0 {
			t.Fatalf("Keep = %+v, %v; want nothing stored and %v", kept, err, errBoom)
		}
	})
}

// A store that hangs costs the sender StoreTimeout: Keep gives up then.
func TestKeepStoreTimeout(t *testing.T) {
	const timeout = 50 * time.Millisecond
	o := &Offline{Domain: domain, Store: &fakeOfflineStore{hang: true}, Notices: &fakeNotices{}, StoreTimeout: timeout}
	m := Message{Message: offline.Message{Owner: "+15550003333"}, From: jid.MustParse("+15550002222@example.net/r")}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := o.Keep(context.Background(), m, 0)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want DeadlineExceeded", err)
		}
		if d := time.Since(start); d < timeout {
			t.Errorf("gave up after %v, before the %v timeout", d, timeout)
		}
	case <-time.After(100 * timeout):
		t.Fatalf("no answer %v after a %v store timeout", 100*timeout, timeout)
	}
}

func TestIsOnline(t *testing.T) {
	var asked []string
	o := &Offline{Domain: domain, HasSession: func(bare jid.JID) bool {
		asked = append(asked, bare.String())
		return bare.Localpart() == "+15550002222"
	}}
	for n, want := range map[auth.Number]bool{
		"+15550002222": true,
		"+15550003333": false,
		"not a number": false, // never asked: no JID
	} {
		if got := o.IsOnline(n); got != want {
			t.Errorf("IsOnline(%s) = %v, want %v", n, got, want)
		}
	}
	if len(asked) != 2 || !strings.HasSuffix(asked[0], "@"+domain) {
		t.Errorf("asked about %v, want the two canonical JIDs", asked)
	}
	if (&Offline{Domain: domain}).IsOnline("+15550002222") {
		t.Errorf("IsOnline without HasSession = true, want false")
	}
}
