// Package modtest is what the modules' unit tests share: a fake router
// that records what a module routes and delivers, in-memory stores, and
// helpers to build iqs and read answers.
package modtest

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/auth"
	"dialtone/xmppd/mod/internal/payload"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

// Sent is one Deliver or Route call.
type Sent struct {
	To jid.JID // the session written to (Deliver) or the stanza's To (Route)
	St *router.Stanza
}

// Router is the router as far as a module sees it: bound sessions and
// their presence, accounts, the address rules of the local domain, and a
// record of what was routed and delivered.
type Router struct {
	// Name is the local domain.
	Name string
	// OnRoute, when set, gets every routed stanza after it is recorded
	// (a test hands presence to local accounts back to a module, as the
	// router does).
	OnRoute func(ctx context.Context, st *router.Stanza)
	// Normalizer, when set, replaces the local address rules.
	Normalizer func(j jid.JID) (jid.JID, error)

	mu        sync.Mutex
	accounts  map[string]bool
	sessions  map[string][]*router.Session // bare → sessions in bind order
	delivered []Sent
	routed    []Sent
}

var _ router.Routing = (*Router)(nil)

// NewRouter returns a fake router of domain with the given accounts (bare
// JIDs).
func NewRouter(domain string, accounts ...string) *Router {
	r := &Router{Name: domain, accounts: map[string]bool{}, sessions: map[string][]*router.Session{}}
	for _, a := range accounts {
		r.accounts[a] = true
	}
	return r
}

// Domain implements router.Routing.
func (r *Router) Domain() string { return r.Name }

// Route implements router.Routing: recorded, then OnRoute.
func (r *Router) Route(ctx context.Context, st *router.Stanza) {
	if st.From.Equal(jid.JID{}) {
		panic("Route without from")
	}
	r.mu.Lock()
	r.routed = append(r.routed, Sent{st.To, st})
	on := r.OnRoute
	r.mu.Unlock()
	if on != nil {
		on(ctx, st)
	}
}

// Deliver implements router.Routing: recorded when the session is bound.
func (r *Router) Deliver(full jid.JID, st *router.Stanza) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.find(full) == nil {
		return false
	}
	r.delivered = append(r.delivered, Sent{full, st})
	return true
}

func (r *Router) find(full jid.JID) *router.Session {
	for _, s := range r.sessions[full.Bare().String()] {
		if s.JID().Equal(full) {
			return s
		}
	}
	return nil
}

// Session implements router.Routing.
func (r *Router) Session(full jid.JID) *router.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.find(full)
}

// Sessions implements router.Routing.
func (r *Router) Sessions(bare jid.JID) []*router.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sessions[bare.Bare().String()])
}

// SetPresence implements router.Routing (no session events).
func (r *Router) SetPresence(_ context.Context, sess *router.Session, p *router.Stanza) {
	sess.SetPresence(p)
}

// StoreContext implements router.Routing.
func (r *Router) StoreContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Minute)
}

// IsLocal implements router.Routing.
func (r *Router) IsLocal(_ context.Context, bare jid.JID) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accounts[bare.Bare().String()], nil
}

// Normalize implements router.Routing: for the local domain it accepts
// +<digits> (8 to 15 of them), <digits> and the Korean national form
// 010-1234-5678 (spaces and dashes dropped) and gives +<digits>.
func (r *Router) Normalize(j jid.JID) (jid.JID, error) {
	if r.Normalizer != nil {
		return r.Normalizer(j)
	}
	if j.Domainpart() != r.Name || j.Localpart() == "" {
		return j, nil
	}
	local := strings.NewReplacer(" ", "", "-", "").Replace(j.Localpart())
	digits := strings.TrimPrefix(local, "+")
	if len(digits) < 6 || len(digits) > 15 || strings.Trim(digits, "0123456789") != "" {
		return jid.JID{}, stanza.Error{Type: stanza.Cancel, Condition: stanza.ItemNotFound}
	}
	if !strings.HasPrefix(local, "+") && strings.HasPrefix(local, "0") {
		digits = "82" + digits[1:]
	}
	return jid.New("+"+digits, r.Name, j.Resourcepart())
}

// Bind adds a session of full (not available); it returns it.
func (r *Router) Bind(full jid.JID) *router.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := full.Bare().String()
	sess := router.NewSession(context.Background(), full, nil)
	r.sessions[b] = append(r.sessions[b], sess)
	return sess
}

// BindAvailable adds a session of full that sent presence with inner.
func (r *Router) BindAvailable(full jid.JID, inner string) *router.Session {
	sess := r.Bind(full)
	sess.SetPresence(&router.Stanza{Kind: router.KindPresence, From: full, Inner: []byte(inner)})
	return sess
}

// Unbind removes a session and returns it, with its last state.
func (r *Router) Unbind(full jid.JID) *router.Session {
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

// UnbindAll removes every session.
func (r *Router) UnbindAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sessions = map[string][]*router.Session{}
}

// Reset forgets the recorded traffic.
func (r *Router) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delivered, r.routed = nil, nil
}

// Routed returns every routed stanza, in order.
func (r *Router) Routed() []Sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.routed)
}

// TakeRouted returns what was routed since the last call.
func (r *Router) TakeRouted() []*router.Stanza {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*router.Stanza
	for _, s := range r.routed {
		out = append(out, s.St)
	}
	r.routed = nil
	return out
}

// TakeDelivered returns what was delivered since the last call.
func (r *Router) TakeDelivered() []*router.Stanza {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*router.Stanza
	for _, s := range r.delivered {
		out = append(out, s.St)
	}
	r.delivered = nil
	return out
}

// DeliveredTo returns what was delivered to one session, in order.
func (r *Router) DeliveredTo(full jid.JID) []*router.Stanza {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*router.Stanza
	for _, d := range r.delivered {
		if d.To.Equal(full) {
			out = append(out, d.St)
		}
	}
	return out
}

// RoutedTo returns what was routed to an address (compared exactly).
func (r *Router) RoutedTo(to jid.JID) []*router.Stanza {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*router.Stanza
	for _, d := range r.routed {
		if d.To.Equal(to) {
			out = append(out, d.St)
		}
	}
	return out
}

// IQ builds an iq as the router hands it to a handler: from a full JID,
// to a bare JID or the domain (to "" means no 'to': the sender's account).
func IQ(t testing.TB, from, to, typ, inner string) *router.Stanza {
	t.Helper()
	s := &router.Stanza{Kind: router.KindIQ, From: jid.MustParse(from), ID: "id1", Type: typ, Inner: []byte(inner)}
	if to == "" {
		s.To = s.From.Bare()
		s.ToAbsent = true
	} else {
		s.To = jid.MustParse(to)
	}
	d := xml.NewDecoder(bytes.NewReader(wire.NewBuilder(nil).StartNS("x", router.NSClient).Raw([]byte(inner)).Bytes()))
	for {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("payload %q: %v", inner, err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local != "x" {
			s.Payload = se.Name
			return s
		}
	}
}

// Condition returns the stanza error condition of err, "" for nil, and
// fails for other errors.
func Condition(t testing.TB, err error) stanza.Condition {
	t.Helper()
	if err == nil {
		return ""
	}
	var se stanza.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v is not a stanza error", err)
	}
	return se.Condition
}

// Unmarshal parses b into v, failing the test when it is not well-formed.
func Unmarshal(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := xml.Unmarshal(b, v); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
}

// Canonical re-serialises XML so that documents can be compared.
func Canonical(t testing.TB, b []byte) string {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	start, ok, err := payload.NextChild(d)
	if err != nil || !ok {
		t.Fatalf("canonical %s: %v", b, err)
	}
	out, err := payload.Copy(d, start, 0)
	if err != nil {
		t.Fatalf("canonical %s: %v", b, err)
	}
	return string(out)
}

// Private is an in-memory store of per-account XML (vCards, private data).
type Private struct {
	mu   sync.Mutex
	data map[string][]byte // owner + "\x00" + key
	err  error             // every call's, when set
}

// NewPrivate returns an empty store.
func NewPrivate() *Private { return &Private{data: map[string][]byte{}} }

// Private returns the stored XML of key, or auth.ErrNotFound.
func (m *Private) Private(_ context.Context, owner, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	b, ok := m.data[owner+"\x00"+key]
	if !ok {
		return nil, auth.ErrNotFound
	}
	return append([]byte(nil), b...), nil
}

// PutPrivate stores data under key; empty data deletes it.
func (m *Private) PutPrivate(_ context.Context, owner, key string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	if len(data) == 0 {
		delete(m.data, owner+"\x00"+key)
		return nil
	}
	m.data[owner+"\x00"+key] = append([]byte(nil), data...)
	return nil
}

// SetErr makes every call fail with err (nil: none).
func (m *Private) SetErr(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
}

// Err is the error every call fails with.
func (m *Private) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Get returns what is stored under key, past the error.
func (m *Private) Get(owner, key string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.data[owner+"\x00"+key]
	return b, ok
}

// Block is an in-memory blocklist store counting list loads.
type Block struct {
	mu    sync.Mutex
	lists map[string][]string
	loads int
	err   error // every call's, when set
}

// NewBlock returns an empty store.
func NewBlock() *Block { return &Block{lists: map[string][]string{}} }

// BlockList returns owner's blocked JIDs.
func (m *Block) BlockList(_ context.Context, owner string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loads++
	if m.err != nil {
		return nil, m.err
	}
	return append([]string(nil), m.lists[owner]...), nil
}

// Block adds JIDs, each once.
func (m *Block) Block(_ context.Context, owner string, jids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	for _, j := range jids {
		if !slices.Contains(m.lists[owner], j) {
			m.lists[owner] = append(m.lists[owner], j)
		}
	}
	return nil
}

// Unblock removes JIDs; none removes all.
func (m *Block) Unblock(_ context.Context, owner string, jids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	if len(jids) == 0 {
		delete(m.lists, owner)
		return nil
	}
	var keep []string
	for _, o := range m.lists[owner] {
		if !slices.Contains(jids, o) {
			keep = append(keep, o)
		}
	}
	m.lists[owner] = keep
	return nil
}

// SetErr makes every call fail with err (nil: none).
func (m *Block) SetErr(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
}

// Err is the error every call fails with.
func (m *Block) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Set replaces owner's list.
func (m *Block) Set(owner string, jids ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lists[owner] = jids
}

// List returns owner's list.
func (m *Block) List(owner string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.lists[owner])
}

// Loads is how many lists were loaded.
func (m *Block) Loads() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loads
}

// Domain is the local domain of the modules' tests.
const Domain = "dialtone.im"

// Elem decodes any element, for assertions.
type Elem struct {
	XMLName  xml.Name
	Attrs    []xml.Attr `xml:",any,attr"`
	Text     string     `xml:",chardata"`
	Children []Elem     `xml:",any"`
}

// Numbers of the modules' tests.
const (
	Alice = "+15550001111"
	Bob   = "+15550002222"
)

// Delivered returns every delivered stanza, in order.
func (r *Router) Delivered() []Sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.delivered)
}
