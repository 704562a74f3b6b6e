package blocking

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"dialtone/xmppd/mod/internal/modtest"
	"dialtone/xmppd/router"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

const (
	domain = modtest.Domain
	alice  = modtest.Alice
	bob    = modtest.Bob
)

func aliceFull() string { return alice + "@" + domain + "/phone" }

const blockNS = "urn:xmpp:blocking"

type blockPayload struct {
	XMLName xml.Name
	Items   []struct {
		JID string `xml:"jid,attr"`
	} `xml:"urn:xmpp:blocking item"`
}

func (p blockPayload) jids() []string {
	var s []string
	for _, i := range p.Items {
		s = append(s, i.JID)
	}
	return s
}

type blockSetup struct {
	r  *modtest.Router
	st *modtest.Block
	b  *Module
}

func newBlockSetup() blockSetup {
	r := modtest.NewRouter(domain, alice+"@"+domain, bob+"@"+domain)
	st := modtest.NewBlock()
	return blockSetup{r: r, st: st, b: New(r, st)}
}

func (s blockSetup) do(t *testing.T, from, typ, inner string) ([]byte, error) {
	t.Helper()
	q := modtest.IQ(t, from, "", typ, inner)
	switch q.Payload.Local {
	case "blocklist":
		return s.b.getIQ(context.Background(), q)
	case "block":
		return s.b.blockIQ(context.Background(), q)
	default:
		return s.b.unblockIQ(context.Background(), q)
	}
}

func TestBlockingGet(t *testing.T) {
	tests := []struct {
		name   string
		stored []string
		to     string
		typ    string
		cond   stanza.Condition
		want   []string
	}{
		{name: "empty", typ: "get"},
		{name: "items", stored: []string{"b@x.example", "a@x.example"}, typ: "get", want: []string{"a@x.example", "b@x.example"}},
		{name: "set", typ: "set", cond: stanza.BadRequest},
		{name: "other account", to: bob + "@" + domain, typ: "get", cond: stanza.Forbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newBlockSetup()
			s.st.Set(alice, tt.stored...)
			b, err := s.b.getIQ(context.Background(), modtest.IQ(t, aliceFull(), tt.to, tt.typ, `<blocklist xmlns="urn:xmpp:blocking"/>`))
			if got := modtest.Condition(t, err); got != tt.cond {
				t.Fatalf("condition %q, want %q", got, tt.cond)
			}
			if tt.cond != "" {
				return
			}
			var p blockPayload
			modtest.Unmarshal(t, b, &p)
			if p.XMLName != (xml.Name{Space: blockNS, Local: "blocklist"}) || !slices.Equal(p.jids(), tt.want) {
				t.Errorf("result %s, want items %v", b, tt.want)
			}
		})
	}
}

func TestBlockingBlock(t *testing.T) {
	aliceBare := alice + "@" + domain
	tests := []struct {
		name      string
		stored    []string
		inner     string
		cond      stanza.Condition
		wantStore []string
		wantPush  []string // items of the push
		presence  []string // 'to' of unavailable presences sent
	}{
		{name: "one", inner: `<block xmlns="urn:xmpp:blocking"><item jid="` + bob + `@` + domain + `"/></block>`,
			wantStore: []string{bob + "@" + domain}, wantPush: []string{bob + "@" + domain},
			presence: []string{bob + "@" + domain, bob + "@" + domain}},
		{name: "normalised and deduplicated", inner: `<block xmlns="urn:xmpp:blocking"><item jid="1-555-000-3333@` + domain + `"/><item jid="+15550003333@` + domain + `"/><item jid="spam.example"/></block>`,
			wantStore: []string{"+15550003333@" + domain, "spam.example"}, wantPush: []string{"+15550003333@" + domain, "spam.example"},
			presence: []string{"+15550003333@" + domain, "+15550003333@" + domain}},
		{name: "already blocked gets no presence", stored: []string{"x@remote.example"}, inner: `<block xmlns="urn:xmpp:blocking"><item jid="x@remote.example"/></block>`,
			wantStore: []string{"x@remote.example"}, wantPush: []string{"x@remote.example"}},
		{name: "no items", inner: `<block xmlns="urn:xmpp:blocking"/>`, cond: stanza.BadRequest},
		{name: "item without jid", inner: `<block xmlns="urn:xmpp:blocking"><item/></block>`, cond: stanza.BadRequest},
		{name: "malformed jid", inner: `<block xmlns="urn:xmpp:blocking"><item jid="@@"/></block>`, cond: stanza.JIDMalformed},
		{name: "not a number", inner: `<block xmlns="urn:xmpp:blocking"><item jid="bob@` + domain + `"/></block>`, cond: stanza.ItemNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newBlockSetup()
			s.st.Set(alice, tt.stored...)
			s.r.BindAvailable(jid.MustParse(aliceFull()), "<show>away</show>")
			s.r.BindAvailable(jid.MustParse(aliceBare+"/laptop"), "<show>away</show>")
			s.r.Bind(jid.MustParse(aliceBare + "/idle"))
			// Only the phone asks for the blocklist.
			if _, err := s.do(t, aliceFull(), "get", `<blocklist xmlns="urn:xmpp:blocking"/>`); err != nil {
				t.Fatal(err)
			}
			b, err := s.do(t, aliceFull(), "set", tt.inner)
			if got := modtest.Condition(t, err); got != tt.cond {
				t.Fatalf("condition %q, want %q", got, tt.cond)
			}
			if b != nil {
				t.Errorf("result payload %s", b)
			}
			pushes := s.r.TakeDelivered()
			presences := s.r.TakeRouted()
			if tt.cond != "" {
				if len(pushes)+len(presences) > 0 || !slices.Equal(s.st.List(alice), tt.stored) {
					t.Errorf("failed block changed something: %v %v %v", pushes, presences, s.st.List(alice))
				}
				return
			}
			if got := slices.Sorted(slices.Values(s.st.List(alice))); !slices.Equal(got, tt.wantStore) {
				t.Errorf("stored %v, want %v", got, tt.wantStore)
			}
			if len(pushes) != 1 {
				t.Fatalf("%d pushes, want 1", len(pushes))
			}
			push := pushes[0]
			if push.To.String() != aliceFull() || push.Type != "set" || push.Kind != router.KindIQ || push.ID == "" || push.From.String() != aliceBare {
				t.Errorf("push %s", push.Bytes())
			}
			var p blockPayload
			if err := push.DecodePayload(&p); err != nil {
				t.Fatal(err)
			}
			if p.XMLName != (xml.Name{Space: blockNS, Local: "block"}) || !slices.Equal(p.jids(), tt.wantPush) {
				t.Errorf("push payload %s", push.Inner)
			}
			var to []string
			froms := map[string]bool{}
			for _, pr := range presences {
				if pr.Kind != router.KindPresence || pr.Type != "unavailable" {
					t.Errorf("routed %s", pr.Bytes())
				}
				to = append(to, pr.To.String())
				froms[pr.From.String()] = true
			}
			if !slices.Equal(to, tt.presence) {
				t.Errorf("unavailable presence to %v, want %v", to, tt.presence)
			}
			if len(to) > 0 && (!froms[aliceFull()] || !froms[aliceBare+"/laptop"] || froms[aliceBare+"/idle"]) {
				t.Errorf("unavailable presence from %v, want the available resources", froms)
			}
			// The cache follows the store.
			blocked, err := s.b.Blocked(context.Background(), jid.MustParse(aliceBare), jid.MustParse(tt.wantStore[0]))
			if err != nil || !blocked {
				t.Errorf("Blocked(%s) = %v, %v", tt.wantStore[0], blocked, err)
			}
		})
	}
}

func TestBlockingUnblock(t *testing.T) {
	aliceBare := alice + "@" + domain
	stored := []string{"a@x.example", "b@x.example", bob + "@" + domain}
	tests := []struct {
		name      string
		inner     string
		allowed   bool
		wantStore []string
		wantPush  []string
		presence  []string
	}{
		{name: "one", inner: `<unblock xmlns="urn:xmpp:blocking"><item jid="b@x.example"/></unblock>`,
			wantStore: []string{bob + "@" + domain, "a@x.example"}, wantPush: []string{"b@x.example"}},
		{name: "all", inner: `<unblock xmlns="urn:xmpp:blocking"/>`},
		{name: "presence to allowed contact", allowed: true, inner: `<unblock xmlns="urn:xmpp:blocking"><item jid="` + bob + `@` + domain + `"/></unblock>`,
			wantStore: []string{"a@x.example", "b@x.example"}, wantPush: []string{bob + "@" + domain}, presence: []string{bob + "@" + domain}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newBlockSetup()
			s.st.Set(alice, stored...)
			if tt.allowed {
				s.b.PresenceAllowed = func(_ context.Context, user, contact jid.JID) bool {
					return user.String() == aliceBare && contact.String() == bob+"@"+domain
				}
			}
			s.r.BindAvailable(jid.MustParse(aliceFull()), "<show>away</show>")
			if _, err := s.do(t, aliceFull(), "get", `<blocklist xmlns="urn:xmpp:blocking"/>`); err != nil {
				t.Fatal(err)
			}
			if _, err := s.do(t, aliceFull(), "set", tt.inner); err != nil {
				t.Fatal(err)
			}
			if got := slices.Sorted(slices.Values(s.st.List(alice))); !slices.Equal(got, tt.wantStore) {
				t.Errorf("stored %v, want %v", got, tt.wantStore)
			}
			pushes := s.r.TakeDelivered()
			if len(pushes) != 1 {
				t.Fatalf("%d pushes", len(pushes))
			}
			var p blockPayload
			if err := pushes[0].DecodePayload(&p); err != nil {
				t.Fatal(err)
			}
			if p.XMLName != (xml.Name{Space: blockNS, Local: "unblock"}) || !slices.Equal(p.jids(), tt.wantPush) {
				t.Errorf("push %s", pushes[0].Bytes())
			}
			var to []string
			for _, pr := range s.r.TakeRouted() {
				if pr.Type != "" || string(pr.Inner) != "<show>away</show>" || pr.From.String() != aliceFull() {
					t.Errorf("presence %s", pr.Bytes())
				}
				to = append(to, pr.To.String())
			}
			if !slices.Equal(to, tt.presence) {
				t.Errorf("presence to %v, want %v", to, tt.presence)
			}
			got, err := s.do(t, aliceFull(), "get", `<blocklist xmlns="urn:xmpp:blocking"/>`)
			if err != nil {
				t.Fatal(err)
			}
			var list blockPayload
			modtest.Unmarshal(t, got, &list)
			if !slices.Equal(list.jids(), tt.wantStore) {
				t.Errorf("cached list %v, want %v", list.jids(), tt.wantStore)
			}
		})
	}
}

func TestBlockingLimit(t *testing.T) {
	s := newBlockSetup()
	s.b.MaxItems = 2
	s.st.Set(alice, []string{"a@x.example"}...)
	_, err := s.do(t, aliceFull(), "set", `<block xmlns="urn:xmpp:blocking"><item jid="b@x.example"/><item jid="c@x.example"/></block>`)
	if got := modtest.Condition(t, err); got != stanza.PolicyViolation {
		t.Errorf("condition %q", got)
	}
	if len(s.st.List(alice)) != 1 {
		t.Errorf("stored %v", s.st.List(alice))
	}
}

// errorPayload decodes an error stanza.
type errorStanza struct {
	XMLName xml.Name
	Type    string `xml:"type,attr"`
	From    string `xml:"from,attr"`
	To      string `xml:"to,attr"`
	Error   struct {
		Type          string    `xml:"type,attr"`
		NotAcceptable *struct{} `xml:"urn:ietf:params:xml:ns:xmpp-stanzas not-acceptable"`
		Blocked       *struct{} `xml:"urn:xmpp:blocking:errors blocked"`
	} `xml:"error"`
}

func TestBlockingFilter(t *testing.T) {
	aliceBare := alice + "@" + domain
	stored := []string{
		"full@a.example/res", // only that resource
		"bare@b.example",     // any resource
		"c.example/res",      // the domain's resource
		"d.example",          // the domain, its users and subdomains
		bob + "@" + domain,
	}
	msg := func(from, to, typ string) *router.Stanza {
		return &router.Stanza{Kind: router.KindMessage, From: jid.MustParse(from), To: jid.MustParse(to), Type: typ, Inner: []byte("<body>hi</body>")}
	}
	pres := func(from, to, typ string) *router.Stanza {
		return &router.Stanza{Kind: router.KindPresence, From: jid.MustParse(from), To: jid.MustParse(to), Type: typ}
	}
	iqs := func(from, to, typ string) *router.Stanza {
		return &router.Stanza{Kind: router.KindIQ, From: jid.MustParse(from), To: jid.MustParse(to), ID: "q", Type: typ, Inner: []byte(`<ping xmlns="urn:xmpp:ping"/>`)}
	}
	tests := []struct {
		name     string
		s        *router.Stanza
		inbound  bool
		drop     bool
		cond     stanza.Condition
		errReply bool // a not-acceptable + blocked error is delivered
	}{
		{name: "in: full match", s: msg("full@a.example/res", aliceFull(), "chat"), inbound: true, drop: true, cond: stanza.ServiceUnavailable},
		{name: "in: other resource of full entry", s: msg("full@a.example/other", aliceFull(), "chat"), inbound: true},
		{name: "in: bare entry, any resource", s: msg("bare@b.example/x", aliceFull(), ""), inbound: true, drop: true, cond: stanza.ServiceUnavailable},
		{name: "in: bare entry, bare from", s: msg("bare@b.example", aliceBare, ""), inbound: true, drop: true, cond: stanza.ServiceUnavailable},
		{name: "in: domain/resource entry", s: msg("c.example/res", aliceBare, ""), inbound: true, drop: true, cond: stanza.ServiceUnavailable},
		{name: "in: domain/resource entry, user", s: msg("u@c.example/res", aliceBare, ""), inbound: true, drop: true, cond: stanza.ServiceUnavailable},
		{name: "in: domain/resource entry, other resource", s: msg("c.example/x", aliceBare, ""), inbound: true},
		{name: "in: domain entry, user", s: msg("u@d.example/r", aliceBare, ""), inbound: true, drop: true, cond: stanza.ServiceUnavailable},
		{name: "in: domain entry, subdomain", s: msg("muc.d.example", aliceBare, ""), inbound: true, drop: true, cond: stanza.ServiceUnavailable},
		{name: "in: look-alike domain", s: msg("xd.example", aliceBare, ""), inbound: true},
		{name: "in: presence dropped silently", s: pres(bob+"@"+domain+"/x", aliceBare, "subscribe"), inbound: true, drop: true},
		{name: "in: iq get", s: iqs(bob+"@"+domain+"/x", aliceFull(), "get"), inbound: true, drop: true, cond: stanza.ServiceUnavailable},
		{name: "in: iq result silently", s: iqs(bob+"@"+domain+"/x", aliceFull(), "result"), inbound: true, drop: true},
		{name: "in: message error silently", s: msg(bob+"@"+domain+"/x", aliceFull(), "error"), inbound: true, drop: true},
		{name: "in: not blocked", s: msg("friend@e.example/x", aliceFull(), "chat"), inbound: true},
		{name: "in: own resource", s: msg(aliceBare+"/laptop", aliceFull(), "chat"), inbound: true},
		{name: "out: message", s: msg(aliceFull(), bob+"@"+domain, "chat"), drop: true, errReply: true},
		{name: "out: iq set", s: iqs(aliceFull(), "u@d.example/r", "set"), drop: true, errReply: true},
		{name: "out: presence silently", s: pres(aliceFull(), bob+"@"+domain, ""), drop: true},
		{name: "out: iq result silently", s: iqs(aliceFull(), bob+"@"+domain+"/x", "result"), drop: true},
		{name: "out: not blocked", s: msg(aliceFull(), "friend@e.example", "chat")},
		{name: "out: own server always", s: iqs(aliceFull(), domain, "get")},
		{name: "other account's list", s: msg(bob+"@"+domain+"/x", "+15550003333@"+domain, "chat"), inbound: true},
		// what the server sends on alice's behalf to a local account she blocks
		{name: "in: presence from a local sender that blocks", s: pres(aliceFull(), bob+"@"+domain, ""), inbound: true, drop: true},
		{name: "in: message from a local sender that blocks", s: msg(aliceFull(), bob+"@"+domain, "chat"), inbound: true, drop: true, errReply: true},
		{name: "in: local sender that blocks others", s: pres(aliceFull(), "+15550003333@"+domain, ""), inbound: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newBlockSetup()
			s.st.Set(alice, stored...)
			s.r.Bind(jid.MustParse(aliceFull())) // the sender, told it is blocked
			drop, err := s.b.Filter(context.Background(), tt.s, tt.inbound)
			if drop != tt.drop {
				t.Errorf("drop %v, want %v", drop, tt.drop)
			}
			if got := modtest.Condition(t, err); got != tt.cond {
				t.Errorf("condition %q, want %q", got, tt.cond)
			}
			delivered := s.r.TakeDelivered()
			if !tt.errReply {
				if len(delivered) != 0 {
					t.Errorf("delivered %s", delivered[0].Bytes())
				}
				return
			}
			if len(delivered) != 1 {
				t.Fatalf("%d delivered, want the error", len(delivered))
			}
			var e errorStanza
			if err := delivered[0].Decode(&e); err != nil {
				t.Fatal(err)
			}
			if e.XMLName.Local != tt.s.Kind.String() || e.Type != "error" || e.To != tt.s.From.String() || e.From != tt.s.To.String() ||
				e.Error.Type != "cancel" || e.Error.NotAcceptable == nil || e.Error.Blocked == nil {
				t.Errorf("error reply %s", delivered[0].Bytes())
			}
		})
	}
}

func TestBlockingCache(t *testing.T) {
	s := newBlockSetup()
	now := time.Unix(1000, 0)
	s.b.now = func() time.Time { return now }
	s.st.Set(alice, []string{"spam@x.example"}...)
	aliceBare := jid.MustParse(alice + "@" + domain)
	spam := &router.Stanza{Kind: router.KindMessage, From: jid.MustParse("spam@x.example/r"), To: aliceBare}
	ctx := context.Background()
	for range 10 {
		if drop, _ := s.b.Filter(ctx, spam, true); !drop {
			t.Fatal("not dropped")
		}
	}
	if n := s.st.Loads(); n != 1 {
		t.Errorf("%d loads for 10 stanzas, want 1", n)
	}
	// A change through the store behind our back is not seen: the cache is
	// the hot path's truth until evicted.
	s.st.Set(alice)
	if drop, _ := s.b.Filter(ctx, spam, true); !drop {
		t.Error("cache was bypassed")
	}
	// Not idle long enough.
	now = now.Add(DefaultIdleExpiry / 2)
	s.b.Sweep()
	if s.b.count.Load() != 1 {
		t.Fatal("evicted too early")
	}
	// Idle, but has a session.
	now = now.Add(DefaultIdleExpiry)
	s.r.BindAvailable(jid.MustParse(aliceFull()), "<show>away</show>")
	s.b.Sweep()
	if s.b.count.Load() != 1 {
		t.Fatal("evicted with a session")
	}
	s.r.UnbindAll()
	s.b.Sweep()
	if s.b.count.Load() != 0 {
		t.Fatal("not evicted")
	}
	if drop, _ := s.b.Filter(ctx, spam, true); drop {
		t.Error("stale list after eviction")
	}
	if n := s.st.Loads(); n != 2 {
		t.Errorf("%d loads, want 2", n)
	}
	// Forget drops at once.
	s.b.Forget(aliceBare)
	if s.b.count.Load() != 0 {
		t.Error("Forget kept the list")
	}
}

func TestBlockingStoreFailure(t *testing.T) {
	s := newBlockSetup()
	s.st.SetErr(errors.New("db down"))
	aliceBare := jid.MustParse(alice + "@" + domain)
	m := &router.Stanza{Kind: router.KindMessage, From: jid.MustParse("x@y.example/r"), To: aliceBare}
	drop, err := s.b.Filter(context.Background(), m, true)
	if !drop || modtest.Condition(t, err) != stanza.InternalServerError {
		t.Errorf("drop %v err %v, want fail closed", drop, err)
	}
	p := &router.Stanza{Kind: router.KindPresence, From: jid.MustParse("x@y.example/r"), To: aliceBare}
	if drop, err := s.b.Filter(context.Background(), p, true); !drop || err != nil {
		t.Errorf("presence: drop %v err %v", drop, err)
	}
	s.st.SetErr(nil)
	if drop, err := s.b.Filter(context.Background(), m, true); drop || err != nil {
		t.Errorf("after recovery: drop %v err %v", drop, err)
	}
	if _, err := s.do(t, aliceFull(), "get", `<blocklist xmlns="urn:xmpp:blocking"/>`); err != nil {
		t.Error(err)
	}
	s.st.SetErr(errors.New("db down"))
	_, err = s.do(t, aliceFull(), "set", `<block xmlns="urn:xmpp:blocking"><item jid="a@b.example"/></block>`)
	if err == nil || !errors.Is(err, s.st.Err()) {
		t.Errorf("block with store down: %v", err)
	}
	if blocked, _ := s.b.Blocked(context.Background(), aliceBare, jid.MustParse("a@b.example")); blocked {
		t.Error("cache changed although the store failed")
	}
}

func TestBlockingConcurrent(t *testing.T) {
	s := newBlockSetup()
	s.b.IdleExpiry = time.Millisecond
	s.b.now = time.Now
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.b.Run(ctx)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				owner := fmt.Sprintf("+1555000%04d@%s", (w*7+i)%13, domain)
				m := &router.Stanza{Kind: router.KindMessage, From: jid.MustParse("x@y.example/r"), To: jid.MustParse(owner)}
				if _, err := s.b.Filter(ctx, m, true); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					s.b.Sweep()
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 50 {
			inner := `<block xmlns="urn:xmpp:blocking"><item jid="x@y.example"/></block>`
			if i%2 == 1 {
				inner = `<unblock xmlns="urn:xmpp:blocking"/>`
			}
			q := modtest.IQ(t, aliceFull(), "", "set", inner)
			var err error
			if i%2 == 0 {
				_, err = s.b.blockIQ(ctx, q)
			} else {
				_, err = s.b.unblockIQ(ctx, q)
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()
	wg.Wait()
	// The last operation was an unblock: store and cache agree.
	if blocked, _ := s.b.Blocked(ctx, jid.MustParse(alice+"@"+domain), jid.MustParse("x@y.example")); blocked || len(s.st.List(alice)) != 0 {
		t.Errorf("cache %v, store %v", blocked, s.st.List(alice))
	}
}
