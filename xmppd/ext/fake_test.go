package ext

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"dialtone/auth"
	"dialtone/xmppd/router"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

const domain = "dialtone.im"

// fakeRouter records what modules send and answers from fixed tables.
type fakeRouter struct {
	mu        sync.Mutex
	local     map[string]bool // bare JID → stored account
	sessions  map[string][]*router.Session
	routed    []*router.Stanza
	delivered []*router.Stanza
}

var _ router.Routing = (*fakeRouter)(nil)

func newFakeRouter(local ...string) *fakeRouter {
	r := &fakeRouter{local: map[string]bool{}, sessions: map[string][]*router.Session{}}
	for _, l := range local {
		r.local[l] = true
	}
	return r
}

func (r *fakeRouter) Domain() string { return domain }

func (r *fakeRouter) Route(_ context.Context, s *router.Stanza) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routed = append(r.routed, s)
}

func (r *fakeRouter) Deliver(full jid.JID, s *router.Stanza) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !s.To.Equal(full) {
		panic("Deliver: stanza To " + s.To.String() + " differs from " + full.String())
	}
	r.delivered = append(r.delivered, s)
	return true
}

func (r *fakeRouter) Sessions(bare jid.JID) []*router.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*router.Session(nil), r.sessions[bare.String()]...)
}

func (r *fakeRouter) Session(full jid.JID) *router.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sessions[full.Bare().String()] {
		if s.JID().Equal(full) {
			return s
		}
	}
	return nil
}

func (r *fakeRouter) addSession(full string, available bool) {
	j := jid.MustParse(full)
	sess := router.NewSession(context.Background(), j, nil)
	if available {
		sess.SetPresence(&router.Stanza{Kind: router.KindPresence, From: j, Inner: []byte("<show>away</show>")})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sessions[j.Bare().String()] = append(r.sessions[j.Bare().String()], sess)
}

func (r *fakeRouter) SetPresence(ctx context.Context, sess *router.Session, p *router.Stanza) {
	sess.SetPresence(p)
}

func (r *fakeRouter) StoreContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Minute)
}

func (r *fakeRouter) IsLocal(_ context.Context, bare jid.JID) (bool, error) {
	return r.local[bare.String()], nil
}

// Normalize accepts "+<digits>" and "<digits>" localparts of the local
// domain, with spaces and dashes, and gives "+<digits>".
func (r *fakeRouter) Normalize(j jid.JID) (jid.JID, error) {
	if j.Domainpart() != domain || j.Localpart() == "" {
		return j, nil
	}
	l := strings.NewReplacer(" ", "", "-", "").Replace(j.Localpart())
	l = strings.TrimPrefix(l, "+")
	if len(l) < 6 || len(l) > 15 || strings.Trim(l, "0123456789") != "" {
		return jid.JID{}, stanza.Error{Type: stanza.Cancel, Condition: stanza.ItemNotFound}
	}
	return jid.New("+"+l, domain, j.Resourcepart())
}

func (r *fakeRouter) takeRouted() []*router.Stanza {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.routed
	r.routed = nil
	return s
}

func (r *fakeRouter) takeDelivered() []*router.Stanza {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.delivered
	r.delivered = nil
	return s
}

// memPrivate is an in-memory PrivateStore.
type memPrivate struct {
	mu   sync.Mutex
	data map[string][]byte // owner + "\x00" + key
	err  error
}

func newMemPrivate() *memPrivate { return &memPrivate{data: map[string][]byte{}} }

func (m *memPrivate) Private(_ context.Context, owner, key string) ([]byte, error) {
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

func (m *memPrivate) PutPrivate(_ context.Context, owner, key string, data []byte) error {
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

func (m *memPrivate) get(owner, key string) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.data[owner+"\x00"+key]
	return b, ok
}

// memBlock is an in-memory BlockStore counting list loads.
type memBlock struct {
	mu    sync.Mutex
	lists map[string][]string
	loads int
	err   error
}

func newMemBlock() *memBlock { return &memBlock{lists: map[string][]string{}} }

func (m *memBlock) BlockList(_ context.Context, owner string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loads++
	if m.err != nil {
		return nil, m.err
	}
	return append([]string(nil), m.lists[owner]...), nil
}

func (m *memBlock) Block(_ context.Context, owner string, jids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	for _, j := range jids {
		dup := false
		for _, o := range m.lists[owner] {
			dup = dup || o == j
		}
		if !dup {
			m.lists[owner] = append(m.lists[owner], j)
		}
	}
	return nil
}

func (m *memBlock) Unblock(_ context.Context, owner string, jids []string) error {
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
		drop := false
		for _, j := range jids {
			drop = drop || o == j
		}
		if !drop {
			keep = append(keep, o)
		}
	}
	m.lists[owner] = keep
	return nil
}

func (m *memBlock) loadCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loads
}

// iq builds an iq as the core hands it to a handler: from a full JID, to
// a bare JID or the domain (to "" means no 'to': the sender's account).
func iq(t testing.TB, from, to, typ, inner string) *router.Stanza {
	t.Helper()
	s := &router.Stanza{Kind: router.KindIQ, From: jid.MustParse(from), ID: "id1", Type: typ, Inner: []byte(inner)}
	if to == "" {
		s.To = s.From.Bare()
		s.ToAbsent = true
	} else {
		s.To = jid.MustParse(to)
	}
	d := xml.NewDecoder(strings.NewReader(`<x xmlns="jabber:client">` + inner + `</x>`))
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

// condition returns the stanza error condition of err, "" for nil, and
// fails for other errors.
func condition(t testing.TB, err error) stanza.Condition {
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

// unmarshal parses b into v, failing the test when it is not well-formed.
func unmarshal(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := xml.Unmarshal(b, v); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
}

// canonical re-serialises XML so that documents can be compared.
func canonical(t testing.TB, b []byte) string {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	start, ok, err := nextChild(d)
	if err != nil || !ok {
		t.Fatalf("canonical %s: %v", b, err)
	}
	out, err := copyElement(d, start, 0)
	if err != nil {
		t.Fatalf("canonical %s: %v", b, err)
	}
	return string(out)
}

// genericElem decodes any element for assertions.
type genericElem struct {
	XMLName  xml.Name
	Attrs    []xml.Attr    `xml:",any,attr"`
	Text     string        `xml:",chardata"`
	Children []genericElem `xml:",any"`
}
