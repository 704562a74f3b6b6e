package offline

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/auth"
	"dialtone/offline"
	"dialtone/xmppd/mod/internal/modtest"
	"dialtone/xmppd/router"
)

const domain = modtest.Domain

// Numbers the router's parser (KR) takes.
var (
	alice = jid.MustParse("+821011112222@" + domain)
	bob   = jid.MustParse("+821033334444@" + domain + "/pc")
)

// store is an in-memory offline.Store.
type store struct {
	mu   sync.Mutex
	msgs []offline.Message
	next int64
	err  error
}

func (s *store) PushOffline(_ context.Context, m offline.Message, limit int) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	if limit > 0 && len(s.msgs) >= limit {
		return 0, offline.ErrFull
	}
	s.next++
	m.ID = s.next
	s.msgs = append(s.msgs, m)
	return m.ID, nil
}

func (s *store) OfflineMessages(_ context.Context, owner string, max int) ([]offline.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	var out []offline.Message
	for _, m := range s.msgs {
		if m.Owner == owner && len(out) < max {
			out = append(out, m)
		}
	}
	return out, nil
}

func (s *store) DeleteOffline(_ context.Context, owner string, ids []int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = slices.DeleteFunc(s.msgs, func(m offline.Message) bool { return m.Owner == owner && slices.Contains(ids, m.ID) })
	return nil
}

func (s *store) CountOffline(_ context.Context, owner string) (int, error) {
	msgs, err := s.OfflineMessages(context.Background(), owner, 1<<30)
	return len(msgs), err
}

func (s *store) count() int {
	n, _ := s.CountOffline(context.Background(), alice.Localpart())
	return n
}

// accounts knows alice only.
type accounts struct{}

func (accounts) Account(_ context.Context, n auth.Number) (auth.Account, error) {
	if string(n) == alice.Localpart() {
		return auth.Account{Number: n}, nil
	}
	return auth.Account{}, auth.ErrNotFound
}

// server is the router as the queue sees it: a session that answers the
// queue's pings (or not), deliveries recorded, goroutines waited for.
type server struct {
	mu        sync.Mutex
	delivered []string // ids of the messages written, in order
	bound     bool
	answer    bool // answer the pings
	queries   int
	bounced   []string
	wg        sync.WaitGroup
}

func (s *server) Domain() string { return domain }

func (s *server) Deliver(full jid.JID, st *router.Stanza) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.bound {
		return false
	}
	b := string(st.Bytes())
	i := strings.Index(b, `id="`)
	s.delivered = append(s.delivered, b[i+4:i+4+strings.IndexByte(b[i+4:], '"')])
	return true
}

func (s *server) QuerySession(ctx context.Context, full jid.JID, typ string, payload []byte) (*router.Stanza, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries++
	if !s.bound || !s.answer {
		return nil, router.ErrSessionClosed
	}
	return &router.Stanza{Kind: router.KindIQ, Type: "result"}, nil
}

func (s *server) Go(f func(ctx context.Context)) bool {
	s.wg.Go(func() { f(context.Background()) })
	return true
}

func (s *server) StoreContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Minute)
}

// Bounce records the bounces: "id condition".
func (s *server) Bounce(st *router.Stanza, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var se stanza.Error
	errors.As(err, &se)
	s.bounced = append(s.bounced, st.ID+" "+string(se.Condition))
}

func message(typ, id, inner string) *router.Stanza {
	return &router.Stanza{Kind: router.KindMessage, Type: typ, ID: id, From: bob, To: alice, Inner: []byte(inner)}
}

// What is stored: chat and normal messages with a body, stamped with a
// delay; what is not, without a word to the sender: other types, and
// messages without a body. What fails answers the sender.
func TestStore(t *testing.T) {
	st := &store{}
	srv := &server{}
	now := time.Date(2026, 1, 2, 3, 4, 5, 600e6, time.UTC)
	q := &Queue{Store: st, Accounts: accounts{}, Server: srv, Limit: 3, Now: func() time.Time { return now }}
	for _, m := range []*router.Stanza{
		message("headline", "h", "<body>news</body>"),
		message("groupchat", "g", "<body>room</body>"),
		message("error", "e", "<body>x</body>"),
		message("chat", "state", `<composing xmlns="http://jabber.org/protocol/chatstates"/>`),
	} {
		if err := q.store(context.Background(), m); err != nil || st.count() != 0 {
			t.Fatalf("%s: %v, %d stored", m.ID, err, st.count())
		}
	}
	if err := q.store(context.Background(), message("chat", "c1", "<body>hi &amp; bye</body>")); err != nil {
		t.Fatal(err)
	}
	m := st.msgs[0]
	if m.Owner != alice.Localpart() || m.From != bob.String() || !m.Stamp.Equal(now) ||
		!strings.Contains(string(m.Stanza), `<body>hi &amp; bye</body><delay xmlns="urn:xmpp:delay" from="dialtone.im" stamp="2026-01-02T03:04:05.600Z"/>`) {
		t.Fatalf("stored %+v %s", m, m.Stanza)
	}
	if err := q.store(context.Background(), message("", "n1", "<body>normal</body>")); err != nil {
		t.Fatal(err)
	}
	q.store(context.Background(), message("chat", "c2", "<body>third</body>"))
	err := q.store(context.Background(), message("chat", "c3", "<body>one too many</body>"))
	if modtest.Condition(t, err) != stanza.ResourceConstraint {
		t.Fatalf("over the limit: %v", err)
	}
	st.err = errors.New("disk on fire")
	if err := q.store(context.Background(), message("chat", "c4", "<body>x</body>")); modtest.Condition(t, err) != stanza.InternalServerError {
		t.Fatalf("store down: %v", err)
	}
	st.err = nil
	nobody := message("chat", "c5", "<body>x</body>")
	nobody.To = jid.MustParse("+15559999999@" + domain)
	if err := q.store(context.Background(), nobody); modtest.Condition(t, err) != stanza.ServiceUnavailable {
		t.Fatalf("no such account: %v", err)
	}
}

// With Keep, the message goes there with what its notice needs, and a
// warning comes back to the sender as it is.
func TestStoreKeep(t *testing.T) {
	warning := router.NewError(stanza.Cancel, stanza.PolicyViolation, "no SMS")
	var got offline.Stored
	q := &Queue{Server: &server{}, Keep: func(_ context.Context, m offline.Message, s offline.Stored, limit int) (offline.Kept, error) {
		got = s
		return offline.Kept{ID: 7, Warning: warning}, nil
	}}
	to := message("chat", "k", "<body>to a latent number</body>")
	to.To = jid.MustParse("+15559999999@" + domain)
	err := q.store(context.Background(), to)
	if modtest.Condition(t, err) != stanza.PolicyViolation || got.Owner != "+15559999999" || !got.From.Equal(bob) || got.Body != "to a latent number" {
		t.Fatalf("err %v, stored %+v", err, got)
	}
}

// Stored messages are delivered at availability in chunks, each removed
// once the client answered the ping after it, until none is left; a
// client that does not answer keeps what it did not confirm.
func TestDeliver(t *testing.T) {
	big := strings.Repeat("x", offline.ChunkBytes/3) // two a chunk
	for _, answer := range []bool{true, false} {
		st := &store{}
		srv := &server{bound: true, answer: answer}
		q := &Queue{Store: st, Accounts: accounts{}, Server: srv}
		for _, id := range []string{"m1", "m2", "m3", "m4", "m5"} {
			if err := q.store(context.Background(), message("chat", id, "<body>"+big+"</body>")); err != nil {
				t.Fatal(err)
			}
		}
		q.deliver(context.Background(), alice)
		srv.wg.Wait()
		switch {
		case answer && (!slices.Equal(srv.delivered, []string{"m1", "m2", "m3", "m4", "m5"}) || st.count() != 0 || srv.queries != 3):
			t.Fatalf("delivered %v in %d chunks, %d left", srv.delivered, srv.queries, st.count())
		case !answer && (!slices.Equal(srv.delivered, []string{"m1", "m2"}) || st.count() != 5):
			t.Fatalf("unanswered: delivered %v, %d left", srv.delivered, st.count())
		}
	}
}

// The hooks: a message that no session takes is stored (and not
// bounced), and a session that becomes available gets what waited.
func TestHooks(t *testing.T) {
	parser, err := auth.NewNumberParser("KR", nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := router.New(router.Config{Domain: domain, Parser: parser, Accounts: accounts{}})
	if err != nil {
		t.Fatal(err)
	}
	st := &store{}
	q := &Queue{Store: st, Accounts: accounts{}, Server: r}
	if err := r.Load(q); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(r.Hooks().DiscoFeatures(router.ScopeServer), "msgoffline") {
		t.Error("msgoffline not advertised")
	}
	sink := &recorder{more: make(chan struct{}, 1)}
	sender := router.NewSession(context.Background(), bob.Bare(), sink)
	if err := r.Bind(sender, bob, nil); err != nil {
		t.Fatal(err)
	}
	m := message("chat", "h1", "<body>while away</body>")
	r.FromSession(context.Background(), sender, m)
	if st.count() != 1 || len(sink.got) != 0 {
		t.Fatalf("stored %d, the sender got %q", st.count(), sink.got)
	}
	a := router.NewSession(context.Background(), alice, sink)
	full, _ := alice.WithResource("phone")
	if err := r.Bind(a, full, nil); err != nil {
		t.Fatal(err)
	}
	r.SetPresence(context.Background(), a, &router.Stanza{Kind: router.KindPresence})
	// The ping after the chunk comes from the delivery's goroutine.
	if got := sink.wait(t, 2); !strings.Contains(got[0], `id="h1"`) || !strings.Contains(got[1], "urn:xmpp:ping") {
		t.Fatalf("the available session got %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.Close("", "")
	r.Unregister(a)
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st.count() != 1 {
		t.Fatal("a message the client never confirmed was removed")
	}
}

type recorder struct {
	mu   sync.Mutex
	got  []string
	more chan struct{} // signalled on each Send
}

func (r *recorder) Send(b []byte) bool {
	r.mu.Lock()
	r.got = append(r.got, string(b))
	more := r.more
	r.mu.Unlock()
	if more != nil {
		select {
		case more <- struct{}{}:
		default:
		}
	}
	return true
}

// wait returns what was sent once it is n elements, failing after 10s.
func (r *recorder) wait(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		got := slices.Clone(r.got)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("got %q, want %d elements", got, n)
		}
	}
}

func (r *recorder) Close(string, string) {}

// The fast path of bodyOf agrees with decoding, and declines what it
// cannot read exactly.
func TestPlainBody(t *testing.T) {
	for _, inner := range []string{
		`<body>hello</body>`,
		` <body>hello there</body><request xmlns='urn:xmpp:receipts'/>`,
		`<body></body>`,
		`<body>a &amp; b</body>`,
		`<body>a&#13;b</body>`,
		"<body>a\r\nb</body>",
		`<body><![CDATA[x]]></body>`,
		`<active xmlns='http://jabber.org/protocol/chatstates'/><body>later</body>`,
		`<body xml:lang='en'>tagged</body>`,
		`<body xmlns='urn:other'>not the client's</body><body>real</body>`,
		`<x xmlns='y'><body>nested</body></x>`,
	} {
		st := message("chat", "p", inner)
		// Text before the first child keeps the fast path out: decoded.
		want, wantOK := bodyOf(message("chat", "p", "x"+inner))
		got, ok := bodyOf(st)
		if got != want || ok != wantOK {
			t.Errorf("%q: fast %q %v, decoded %q %v", inner, got, ok, want, wantOK)
		}
		if s, fastOK := plainBody([]byte(inner)); fastOK && (s != want || !wantOK) {
			t.Errorf("%q: plainBody took it as %q", inner, s)
		}
	}
}
