package im

import (
	"context"
	"encoding/xml"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/xmppd/router"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

const domain = "example.net"

// Local accounts of the tests and one remote contact.
var (
	alice  = jid.MustParse("+821011111111@" + domain)
	bob    = jid.MustParse("+821022222222@" + domain)
	carol  = jid.MustParse("+821033333333@" + domain)
	juliet = jid.MustParse("juliet@capulet.example")
)

func full(bare jid.JID, res string) jid.JID {
	j, err := bare.WithResource(res)
	if err != nil {
		panic(err)
	}
	return j
}

// fakeStore is an in-memory Store.
type fakeStore struct {
	mu      sync.Mutex
	items   map[string]map[string]Item
	version map[string]int64
	fail    error    // returned by every call when set
	calls   []string // "Method owner" of every call, in order
}

func newFakeStore() *fakeStore {
	return &fakeStore{items: map[string]map[string]Item{}, version: map[string]int64{}}
}

func cloneItem(it Item) Item {
	it.Groups = slices.Clone(it.Groups)
	return it
}

func (s *fakeStore) Roster(ctx context.Context, owner string) ([]Item, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "Roster "+owner)
	if s.fail != nil {
		return nil, 0, s.fail
	}
	var out []Item
	for _, k := range slices.Sorted(maps.Keys(s.items[owner])) {
		out = append(out, cloneItem(s.items[owner][k]))
	}
	return out, s.version[owner], nil
}

func (s *fakeStore) RosterItem(ctx context.Context, owner, contact string) (Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "RosterItem "+owner)
	if s.fail != nil {
		return Item{}, s.fail
	}
	it, ok := s.items[owner][contact]
	if !ok {
		return Item{}, auth.ErrNotFound
	}
	return cloneItem(it), nil
}

func (s *fakeStore) PutRosterItem(ctx context.Context, owner string, it Item) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "write "+owner)
	if s.fail != nil {
		return 0, s.fail
	}
	if s.items[owner] == nil {
		s.items[owner] = map[string]Item{}
	}
	s.items[owner][it.Contact] = cloneItem(it)
	s.version[owner]++
	return s.version[owner], nil
}

func (s *fakeStore) DeleteRosterItem(ctx context.Context, owner, contact string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "write "+owner)
	if s.fail != nil {
		return 0, s.fail
	}
	if _, ok := s.items[owner][contact]; !ok {
		return s.version[owner], nil // like storage: nothing changes
	}
	delete(s.items[owner], contact)
	s.version[owner]++
	return s.version[owner], nil
}

func (s *fakeStore) RosterCount(ctx context.Context, owner string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, "RosterCount "+owner)
	if s.fail != nil {
		return 0, s.fail
	}
	return len(s.items[owner]), nil
}

// takeCalls returns the calls recorded since the last takeCalls.
func (s *fakeStore) takeCalls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

// item returns a stored item and whether it exists.
func (s *fakeStore) item(owner, contact jid.JID) (Item, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.items[owner.Localpart()][contact.String()]
	return it, ok
}

// put seeds an item without going through the module.
func (s *fakeStore) put(owner jid.JID, it Item) {
	if _, err := s.PutRosterItem(context.Background(), owner.Localpart(), it); err != nil {
		panic(err)
	}
}

// sent is one Deliver or Route call.
type sent struct {
	to jid.JID // the session written to (Deliver) or s.To (Route)
	s  *router.Stanza
}

// fakeRouter is the core as far as the module sees it: sessions and their
// presence, Deliver recorded per session, Route recorded and, for presence
// to local accounts, handed back to the module's InboundPresence the way
// the core does.
type fakeRouter struct {
	mu        sync.Mutex
	m         *Module
	accounts  map[string]bool
	sessions  map[string][]*router.Session // bare → sessions in bind order
	delivered []sent
	routed    []sent
}

var _ router.Routing = (*fakeRouter)(nil)

func newFakeRouter(accounts ...jid.JID) *fakeRouter {
	r := &fakeRouter{accounts: map[string]bool{}, sessions: map[string][]*router.Session{}}
	for _, a := range accounts {
		r.accounts[a.String()] = true
	}
	return r
}

func (r *fakeRouter) Domain() string { return domain }

func (r *fakeRouter) Route(ctx context.Context, s *router.Stanza) {
	if s.From.Equal(jid.JID{}) {
		panic("Route without from")
	}
	r.mu.Lock()
	r.routed = append(r.routed, sent{s.To, s})
	// Like the core: presence to any address of the local domain (latent
	// numbers included) goes to InboundPresence.
	local := s.Kind == router.KindPresence && s.To.Domainpart() == domain && s.To.Localpart() != ""
	r.mu.Unlock()
	if local {
		r.m.InboundPresence(ctx, s)
	}
}

func (r *fakeRouter) Deliver(to jid.JID, s *router.Stanza) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.find(to) == nil {
		return false
	}
	r.delivered = append(r.delivered, sent{to, s})
	return true
}

func (r *fakeRouter) find(full jid.JID) *router.Session {
	for _, s := range r.sessions[full.Bare().String()] {
		if s.JID().Equal(full) {
			return s
		}
	}
	return nil
}

func (r *fakeRouter) Session(full jid.JID) *router.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.find(full)
}

func (r *fakeRouter) Sessions(bare jid.JID) []*router.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sessions[bare.String()])
}

func (r *fakeRouter) SetPresence(ctx context.Context, sess *router.Session, p *router.Stanza) {
	sess.SetPresence(p)
}

func (r *fakeRouter) StoreContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Minute)
}

func (r *fakeRouter) IsLocal(ctx context.Context, bare jid.JID) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accounts[bare.Bare().String()], nil
}

// Normalize accepts +<digits> and the Korean national forms 010-1234-5678
// and 01012345678 for the local domain.
func (r *fakeRouter) Normalize(j jid.JID) (jid.JID, error) {
	if j.Domainpart() != domain {
		return j, nil
	}
	local := strings.ReplaceAll(strings.ReplaceAll(j.Localpart(), "-", ""), " ", "")
	digits := strings.TrimPrefix(local, "+")
	if len(digits) < 8 || len(digits) > 15 || strings.Trim(digits, "0123456789") != "" {
		return jid.JID{}, stanza.Error{Type: stanza.Cancel, Condition: stanza.ItemNotFound}
	}
	switch {
	case strings.HasPrefix(local, "+"):
	case strings.HasPrefix(local, "0"):
		local = "+82" + local[1:]
	default:
		return jid.JID{}, stanza.Error{Type: stanza.Cancel, Condition: stanza.ItemNotFound}
	}
	return jid.New(local, domain, j.Resourcepart())
}

// bind adds a session (not available, not interested).
func (r *fakeRouter) bind(full jid.JID) *router.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := full.Bare().String()
	sess := router.NewSession(context.Background(), full, nil)
	r.sessions[b] = append(r.sessions[b], sess)
	return sess
}

// unbind removes a session and returns it with its last state.
func (r *fakeRouter) unbind(full jid.JID) *router.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := full.Bare().String()
	for i, s := range r.sessions[b] {
		if s.JID().Equal(full) {
			r.sessions[b] = slices.Delete(r.sessions[b], i, i+1)
			return s
		}
	}
	panic("unbind: no session " + full.String())
}

// reset forgets recorded traffic.
func (r *fakeRouter) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delivered, r.routed = nil, nil
}

// deliveredTo returns what was delivered to one session, in order.
func (r *fakeRouter) deliveredTo(full jid.JID) []*router.Stanza {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*router.Stanza
	for _, d := range r.delivered {
		if d.to.Equal(full) {
			out = append(out, d.s)
		}
	}
	return out
}

// routedTo returns what was routed to an address (compared exactly).
func (r *fakeRouter) routedTo(to jid.JID) []*router.Stanza {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*router.Stanza
	for _, d := range r.routed {
		if d.to.Equal(to) {
			out = append(out, d.s)
		}
	}
	return out
}

// env is a module wired to a fake router and store.
type env struct {
	t     *testing.T
	m     *Module
	r     *fakeRouter
	store *fakeStore
}

func newEnv(t *testing.T) *env {
	t.Helper()
	r := newFakeRouter(alice, bob, carol)
	st := newFakeStore()
	m := New(st, r, nil)
	r.m = m
	return &env{t: t, m: m, r: r, store: st}
}

// presence makes a presence stanza the way the core hands it over.
func presence(typ string, from, to jid.JID, inner string) *router.Stanza {
	return &router.Stanza{Kind: router.KindPresence, Type: typ, From: from, To: to, Inner: []byte(inner)}
}

// send hands an outbound presence of the session from to the module (a
// session the fake router does not know when from is not bound).
func (e *env) send(typ string, from, to jid.JID, inner string) {
	sess := e.r.Session(from)
	if sess == nil {
		sess = router.NewSession(context.Background(), from, nil)
	}
	e.m.OutboundPresence(context.Background(), sess, presence(typ, from, to, inner))
}

// login binds a session, requests the roster and sends initial presence.
func (e *env) login(f jid.JID) {
	e.t.Helper()
	e.r.bind(f)
	if _, err := e.iq("get", f, jid.JID{}, `<query xmlns="jabber:iq:roster"/>`); err != nil {
		e.t.Fatalf("roster get for %s: %v", f, err)
	}
	e.send("", f, jid.JID{}, "<priority>1</priority>")
}

// iq calls the roster handler with an iq built as the core builds it: no
// 'to' becomes the sender's bare JID with ToAbsent.
func (e *env) iq(typ string, from, to jid.JID, inner string) ([]byte, error) {
	s := &router.Stanza{Kind: router.KindIQ, Type: typ, ID: "q1", From: from, To: to, Inner: []byte(inner),
		Payload: xml.Name{Space: NSRoster, Local: "query"}}
	if to.Equal(jid.JID{}) {
		s.To, s.ToAbsent = from.Bare(), true
	}
	return e.m.handleRoster(context.Background(), s)
}

// state returns "sub[+out][+in][+approved][ hidden]" of a stored item,
// "absent" when there is none.
func (e *env) state(owner, contact jid.JID) string {
	it, ok := e.store.item(owner, contact)
	if !ok {
		return "absent"
	}
	s := it.Subscription
	if it.PendingOut {
		s += "+out"
	}
	if it.PendingIn {
		s += "+in"
	}
	if it.Approved {
		s += "+approved"
	}
	if !it.InRoster {
		s += " hidden"
	}
	return s
}

func condition(err error) string {
	var se stanza.Error
	if errors.As(err, &se) {
		return string(se.Condition)
	}
	if err == nil {
		return ""
	}
	return "non-stanza error: " + err.Error()
}
