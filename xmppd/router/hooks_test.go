package router_test

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"dialtone/auth"
	"dialtone/xmppd/router"
	"dialtone/xmppd/wire"
)

const domain = "example.net"

var (
	alice = jid.MustParse("+821011111111@" + domain)
	bob   = jid.MustParse("+821022222222@" + domain)
)

// noAccounts: every number is latent.
type noAccounts struct{}

func (noAccounts) Account(context.Context, auth.Number) (auth.Account, error) {
	return auth.Account{}, auth.ErrNotFound
}

// sink records what is sent to a session.
type sink struct {
	mu     sync.Mutex
	got    []string
	closed string
}

func (s *sink) Send(b []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, string(b))
	return true
}

func (s *sink) Close(cond, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = cond
}

func (s *sink) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.got
	s.got = nil
	return g
}

func newRouter(t *testing.T, mods ...router.Module) *router.Router {
	t.Helper()
	parser, err := auth.NewNumberParser("KR", nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := router.New(router.Config{Domain: domain, Parser: parser, Accounts: noAccounts{}, StoreTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Load(mods...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

// bind makes a bound session of full with a recording sink.
func bind(t *testing.T, r *router.Router, full jid.JID) (*router.Session, *sink) {
	t.Helper()
	s := &sink{}
	sess := router.NewSession(context.Background(), full.Bare(), s)
	if err := r.Bind(sess, full, nil); err != nil {
		t.Fatal(err)
	}
	return sess, s
}

func full(bare jid.JID, res string) jid.JID {
	j, err := bare.WithResource(res)
	if err != nil {
		panic(err)
	}
	return j
}

// send hands a stanza to the router as the session's reader does.
func send(r *router.Router, from *router.Session, st *router.Stanza) {
	st.SetFrom(from.JID(), from.String())
	r.FromSession(context.Background(), from, st)
}

func message(to jid.JID, id string) *router.Stanza {
	return &router.Stanza{Kind: router.KindMessage, Type: "chat", ID: id, To: to, Inner: []byte("<body>hi</body>")}
}

var pingName = xml.Name{Space: "urn:xmpp:ping", Local: "ping"}

func nop(context.Context, *router.Stanza) ([]byte, error) { return nil, nil }

// A namespace with two owners stops the start; the same namespace for
// other iq types or other scopes does not.
func TestDuplicateIQHandlerFailsLoad(t *testing.T) {
	parser, _ := auth.NewNumberParser("KR", nil)
	r, err := router.New(router.Config{Domain: domain, Parser: parser, Accounts: noAccounts{}})
	if err != nil {
		t.Fatal(err)
	}
	ok := router.ModuleFunc(func(h *router.Hooks) error {
		h.HandleIQ(router.ScopeServer, router.IQGet, pingName, nop)
		h.HandleIQ(router.ScopeServer, router.IQSet, pingName, nop)
		h.HandleIQ(router.ScopeAccount, router.IQGet, pingName, nop)
		return nil
	})
	if err := r.Load(ok); err != nil {
		t.Fatalf("disjoint registrations: %v", err)
	}
	dup := router.ModuleFunc(func(h *router.Hooks) error {
		h.HandleIQ(router.ScopeServer|router.ScopeAccount, router.IQGet, pingName, nop)
		return nil
	})
	err = r.Load(dup)
	if err == nil || !strings.Contains(err.Error(), "two handlers") {
		t.Fatalf("duplicate registration: %v", err)
	}
	failing := router.ModuleFunc(func(h *router.Hooks) error { return errors.New("no store") })
	if err := r.Load(failing); err == nil || !strings.Contains(err.Error(), "no store") {
		t.Fatalf("a module's own error: %v", err)
	}
	r.Serving()
	if err := r.Load(ok); err == nil {
		t.Fatal("modules loaded while serving")
	}
}

// Hooks run by priority, higher first, then in registration order; a hook
// that returns ErrHandled stops the stanza, one that returns a
// stanza.Error bounces it to its sender.
func TestHookOrderAndStops(t *testing.T) {
	var calls []string
	var stopAt atomic.Value // the hook that stops, and how
	stopAt.Store([2]string{})
	hook := func(name string) router.StanzaHook {
		return func(ctx context.Context, ev *router.Event) error {
			calls = append(calls, name)
			switch s := stopAt.Load().([2]string); {
			case s[0] != name:
				return nil
			case s[1] == "handled":
				return router.ErrHandled
			default:
				return router.NewError(stanza.Cancel, stanza.NotAllowed, "")
			}
		}
	}
	mod := router.ModuleFunc(func(h *router.Hooks) error {
		h.Hook(router.PreRoute, router.Messages, 0, hook("low"))
		h.Hook(router.PreRoute, router.Messages, 10, hook("high1"))
		h.Hook(router.PreRoute, router.Messages, 10, hook("high2"))
		h.Hook(router.PreRoute, router.Presences, 99, hook("presence only"))
		return nil
	})
	r := newRouter(t, mod)
	a, as := bind(t, r, full(alice, "a"))
	_, bs := bind(t, r, full(bob, "b"))

	send(r, a, message(full(bob, "b"), "m1"))
	if want := []string{"high1", "high2", "low"}; !slices.Equal(calls, want) {
		t.Fatalf("order %v, want %v", calls, want)
	}
	if got := bs.take(); len(got) != 1 || !strings.Contains(got[0], `id="m1"`) {
		t.Fatalf("bob got %q", got)
	}

	calls = nil
	stopAt.Store([2]string{"high2", "handled"})
	send(r, a, message(full(bob, "b"), "m2"))
	if want := []string{"high1", "high2"}; !slices.Equal(calls, want) {
		t.Fatalf("after ErrHandled: %v, want %v", calls, want)
	}
	if got := bs.take(); len(got) != 0 {
		t.Fatalf("a stopped message was delivered: %q", got)
	}
	if got := as.take(); len(got) != 0 {
		t.Fatalf("ErrHandled answered the sender: %q", got)
	}

	calls = nil
	stopAt.Store([2]string{"high1", "error"})
	send(r, a, message(full(bob, "b"), "m3"))
	if got := as.take(); len(got) != 1 || !strings.Contains(got[0], `type="error"`) || !strings.Contains(got[0], "not-allowed") {
		t.Fatalf("the sender got %q, want its message bounced with not-allowed", got)
	}
	if got := bs.take(); len(got) != 0 {
		t.Fatalf("a bounced message was delivered: %q", got)
	}
}

// Delivered lists who got a message; Undelivered gets the messages no
// session took, and when no hook takes one the sender is answered
// service-unavailable.
func TestDeliveredAndUndelivered(t *testing.T) {
	var delivered []string
	var take atomic.Bool
	var undelivered []string
	mod := router.ModuleFunc(func(h *router.Hooks) error {
		h.Hook(router.Delivered, router.Messages, 0, func(ctx context.Context, ev *router.Event) error {
			for _, s := range ev.Delivered {
				delivered = append(delivered, s.Resource())
			}
			return nil
		})
		h.Hook(router.Undelivered, router.Messages, 0, func(ctx context.Context, ev *router.Event) error {
			undelivered = append(undelivered, ev.Stanza.ID)
			if take.Load() {
				return router.ErrHandled
			}
			return nil
		})
		return nil
	})
	r := newRouter(t, mod)
	a, as := bind(t, r, full(alice, "a"))
	b1, _ := bind(t, r, full(bob, "b1"))
	b2, _ := bind(t, r, full(bob, "b2"))

	send(r, a, message(bob, "none-available"))
	if len(undelivered) != 1 {
		t.Fatalf("undelivered: %v", undelivered)
	}
	if got := as.take(); len(got) != 1 || !strings.Contains(got[0], "service-unavailable") {
		t.Fatalf("sender got %q, want service-unavailable", got)
	}
	take.Store(true)
	send(r, a, message(bob, "stored"))
	if got := as.take(); len(got) != 0 {
		t.Fatalf("a message a hook took was bounced: %q", got)
	}

	presence := &router.Stanza{Kind: router.KindPresence}
	r.SetPresence(context.Background(), b1, presence)
	r.SetPresence(context.Background(), b2, presence)
	send(r, a, message(bob, "to-both"))
	slices.Sort(delivered)
	if !slices.Equal(delivered, []string{"b1", "b2"}) {
		t.Fatalf("delivered to %v", delivered)
	}
	delivered = nil
	send(r, a, message(full(bob, "b2"), "to-one"))
	if !slices.Equal(delivered, []string{"b2"}) {
		t.Fatalf("delivered to %v", delivered)
	}
}

// Session events fire once each, in priority order, and the Closed hooks
// still see the last presence.
func TestSessionEvents(t *testing.T) {
	var events []string
	var mu sync.Mutex
	on := func(name string) router.SessionHook {
		return func(ctx context.Context, s *router.Session) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, name+" "+s.String())
			if name == "closed" && s.Presence() == nil {
				events = append(events, "closed without presence")
			}
		}
	}
	mod := router.ModuleFunc(func(h *router.Hooks) error {
		h.OnSession(router.Authenticated, 0, on("authenticated"))
		h.OnSession(router.Bound, 0, on("bound"))
		h.OnSession(router.Available, 0, on("available"))
		h.OnSession(router.Unavailable, 0, on("unavailable"))
		h.OnSession(router.Closed, 0, on("closed"))
		h.OnSession(router.Closed, 5, on("closed first"))
		return nil
	})
	r := newRouter(t, mod)
	s := &sink{}
	sess := router.NewSession(context.Background(), alice, s)
	r.Authenticated(sess)
	if err := r.Bind(sess, full(alice, "x"), nil); err != nil {
		t.Fatal(err)
	}
	p := &router.Stanza{Kind: router.KindPresence, Inner: []byte("<priority>1</priority>")}
	r.SetPresence(context.Background(), sess, p)
	r.SetPresence(context.Background(), sess, p) // a change, not a second first presence
	r.SetPresence(context.Background(), sess, nil)
	r.SetPresence(context.Background(), sess, p)
	r.Closed(sess)
	a, ax := alice.String(), full(alice, "x").String()
	want := []string{"authenticated " + a, "bound " + ax, "available " + ax, "unavailable " + ax, "available " + ax,
		"unavailable " + ax, "closed first " + ax, "closed " + ax}
	if !slices.Equal(events, want) {
		t.Fatalf("events\n%q\nwant\n%q", events, want)
	}
	if sess.Context().Err() == nil {
		t.Fatal("the session's context lives on after it closed")
	}
	if r.Session(full(alice, "x")) != nil {
		t.Fatal("a closed session is still in the table")
	}

	// A negative priority: available to presence, not to messages, and no
	// Available event (offline messages wait for a session that takes them).
	events = nil
	neg, _ := bind(t, r, full(alice, "neg"))
	r.SetPresence(context.Background(), neg, &router.Stanza{Kind: router.KindPresence, Inner: []byte("<priority>-1</priority>")})
	if !neg.Available() || len(events) != 1 || !strings.HasPrefix(events[0], "bound") {
		t.Fatalf("negative priority: available %v, events %q", neg.Available(), events)
	}
}

// A refused bind leaves nothing bound and fires nothing.
func TestBindConfirm(t *testing.T) {
	var bound atomic.Int32
	r := newRouter(t, router.ModuleFunc(func(h *router.Hooks) error {
		h.OnSession(router.Bound, 0, func(context.Context, *router.Session) { bound.Add(1) })
		return nil
	}))
	sess := router.NewSession(context.Background(), alice, &sink{})
	stale := errors.New("stale")
	if err := r.Bind(sess, full(alice, "x"), func() error { return stale }); !errors.Is(err, stale) {
		t.Fatalf("Bind = %v", err)
	}
	if r.Session(full(alice, "x")) != nil || bound.Load() != 0 {
		t.Fatalf("refused session: in table %v, Bound fired %d times", r.Session(full(alice, "x")) != nil, bound.Load())
	}
}

var (
	counter = router.NewKey[atomic.Int64]()
	label   = router.NewKey[string]()
)

// Per-session state: one value per session and key, made on first use,
// shared by everyone who asks.
func TestKey(t *testing.T) {
	a := router.NewSession(context.Background(), full(alice, "a"), nil)
	b := router.NewSession(context.Background(), full(alice, "b"), nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				counter.Get(a).Add(1)
			}
		})
	}
	wg.Wait()
	if got := counter.Get(a).Load(); got != 800 {
		t.Fatalf("counter of a = %d, want 800", got)
	}
	if got := counter.Get(b).Load(); got != 0 {
		t.Fatalf("counter of b = %d", got)
	}
	*label.Get(b) = "b"
	if *label.Get(a) != "" || *label.Get(b) != "b" {
		t.Fatalf("labels %q %q", *label.Get(a), *label.Get(b))
	}
}

// A component host gets its own scope for iqs; messages to it go to the
// ToServer hooks.
func TestHost(t *testing.T) {
	var host router.Scope
	var toServer []string
	mod := router.ModuleFunc(func(h *router.Hooks) error {
		host = h.AddHost("upload." + domain)
		h.HandleIQ(host, router.IQGet, xml.Name{Space: "urn:xmpp:http:upload:0", Local: "request"},
			func(ctx context.Context, iq *router.Stanza) ([]byte, error) {
				return []byte(`<slot xmlns="urn:xmpp:http:upload:0"/>`), nil
			})
		h.Hook(router.ToServer, router.Messages, 0, func(ctx context.Context, ev *router.Event) error {
			toServer = append(toServer, ev.Stanza.To.String())
			return router.ErrHandled
		})
		return nil
	})
	r := newRouter(t, mod)
	a, as := bind(t, r, full(alice, "a"))
	up := jid.MustParse("upload." + domain)
	send(r, a, &router.Stanza{Kind: router.KindIQ, Type: "get", ID: "u1", To: up, Payload: xml.Name{Space: "urn:xmpp:http:upload:0", Local: "request"}})
	if got := as.take(); len(got) != 1 || !strings.Contains(got[0], `type="result"`) || !strings.Contains(got[0], "<slot") {
		t.Fatalf("iq to the host: %q", got)
	}
	send(r, a, message(up, "hm"))
	if !slices.Equal(toServer, []string{up.String()}) {
		t.Fatalf("ToServer saw %v", toServer)
	}
	// An iq to the domain is not the host's.
	send(r, a, &router.Stanza{Kind: router.KindIQ, Type: "get", ID: "u2", To: jid.MustParse(domain), Payload: xml.Name{Space: "urn:xmpp:http:upload:0", Local: "request"}})
	if got := as.take(); len(got) != 1 || !strings.Contains(got[0], "service-unavailable") {
		t.Fatalf("iq to the domain: %q", got)
	}
	h := router.NewHooks()
	h.HandleIQ(router.Scope(1<<20), router.IQGet, pingName, nop)
	if h.Err() == nil {
		t.Fatal("a handler in a scope no host has was accepted")
	}
}

// ToHost sees every stanza to a component host first, iqs included; one
// it takes goes no further, the others reach the host's handlers.
func TestToHost(t *testing.T) {
	var seen []string
	served := 0
	mod := router.ModuleFunc(func(h *router.Hooks) error {
		host := h.AddHost("groups." + domain)
		h.HandleIQ(host, router.IQGet, pingName, func(context.Context, *router.Stanza) ([]byte, error) {
			served++
			return nil, nil
		})
		h.Hook(router.ToHost, router.Messages|router.Presences|router.IQs, 0, func(ctx context.Context, ev *router.Event) error {
			seen = append(seen, ev.Stanza.Kind.String()+" "+ev.Stanza.To.String())
			if ev.Stanza.To.Localpart() == "elsewhere" {
				return router.ErrHandled
			}
			return nil
		})
		h.Hook(router.ToServer, router.Messages, 0, func(context.Context, *router.Event) error { return router.ErrHandled })
		return nil
	})
	r := newRouter(t, mod)
	a, as := bind(t, r, full(alice, "a"))
	here, away := jid.MustParse("room@groups."+domain), jid.MustParse("elsewhere@groups."+domain)
	send(r, a, &router.Stanza{Kind: router.KindIQ, Type: "get", ID: "p1", To: here, Payload: pingName})
	send(r, a, &router.Stanza{Kind: router.KindIQ, Type: "get", ID: "p2", To: away, Payload: pingName})
	send(r, a, message(away, "hm"))
	if served != 1 {
		t.Fatalf("handler served %d iqs, want 1 (the other was taken)", served)
	}
	if got := as.take(); len(got) != 1 || !strings.Contains(got[0], `id="p1"`) {
		t.Fatalf("answers: %q", got)
	}
	want := []string{"iq " + here.String(), "iq " + away.String(), "message " + away.String()}
	if !slices.Equal(seen, want) {
		t.Fatalf("ToHost saw %v, want %v", seen, want)
	}
	// Stanzas to the domain do not meet it.
	send(r, a, message(jid.MustParse(domain), "hm"))
	if len(seen) != 3 {
		t.Fatalf("ToHost saw a stanza to the domain: %v", seen)
	}
}

// A payload name without a local part takes its whole namespace, after the
// exact names.
func TestIQNamespaceHandler(t *testing.T) {
	mod := router.ModuleFunc(func(h *router.Hooks) error {
		h.HandleIQ(router.ScopeServer, router.IQGet|router.IQSet, xml.Name{Space: "urn:x"}, func(ctx context.Context, iq *router.Stanza) ([]byte, error) {
			return []byte(`<any xmlns="urn:x"/>`), nil
		})
		h.HandleIQ(router.ScopeServer, router.IQGet, xml.Name{Space: "urn:x", Local: "exact"}, func(ctx context.Context, iq *router.Stanza) ([]byte, error) {
			return []byte(`<exact xmlns="urn:x"/>`), nil
		})
		return nil
	})
	r := newRouter(t, mod)
	a, as := bind(t, r, full(alice, "a"))
	for _, tc := range []struct{ local, typ, want string }{{"exact", "get", "<exact"}, {"exact", "set", "<any"}, {"other", "get", "<any"}} {
		send(r, a, &router.Stanza{Kind: router.KindIQ, Type: tc.typ, ID: "x", To: jid.MustParse(domain), Payload: xml.Name{Space: "urn:x", Local: tc.local}})
		if got := as.take(); len(got) != 1 || !strings.Contains(got[0], tc.want) {
			t.Errorf("%s %s: %q, want %s", tc.typ, tc.local, got, tc.want)
		}
	}
}

// StoreContext carries the configured store timeout.
func TestStoreContext(t *testing.T) {
	r := newRouter(t)
	ctx, cancel := r.StoreContext(context.Background())
	defer cancel()
	dl, ok := ctx.Deadline()
	if left := time.Until(dl); !ok || left > 3*time.Second || left < 2*time.Second {
		t.Fatalf("deadline in %v (set %v), want about 3s", left, ok)
	}
}

// The modules' goroutines end when the router closes, and none starts after.
func TestGo(t *testing.T) {
	r := newRouter(t)
	stopped := make(chan struct{})
	r.Go(func(ctx context.Context) {
		<-ctx.Done()
		close(stopped)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("Close returned before the goroutine ended")
	}
	if r.Go(func(context.Context) {}) {
		t.Fatal("a goroutine started after Close")
	}
}

// An AppError goes back with its defined condition, its text and its
// application condition after them (RFC 6120 §8.3.3.4), wrapped or not.
func TestAppError(t *testing.T) {
	name := xml.Name{Space: "urn:x", Local: "q"}
	mod := router.ModuleFunc(func(h *router.Hooks) error {
		h.HandleIQ(router.ScopeServer, router.IQGet|router.IQSet, name, func(ctx context.Context, iq *router.Stanza) ([]byte, error) {
			e := router.NewAppError(stanza.Modify, stanza.NotAcceptable, "urn:x:errors", "too-big")
			if iq.Type == "set" {
				return nil, fmt.Errorf("wrapped: %w", e)
			}
			return nil, e
		})
		return nil
	})
	r := newRouter(t, mod)
	a, as := bind(t, r, full(alice, "a"))
	for _, typ := range []string{"get", "set"} {
		send(r, a, &router.Stanza{Kind: router.KindIQ, Type: typ, ID: "e", To: jid.MustParse(domain), Payload: name})
		want := `<error type="modify" code="406"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><too-big xmlns="urn:x:errors"/></error>`
		if got := as.take(); len(got) != 1 || !strings.Contains(got[0], `type="error"`) || !strings.Contains(got[0], want) {
			t.Fatalf("%s: %q, want %s", typ, got, want)
		}
	}
}

// TestHandleInline: inline handlers are found by namespace in their
// place, announced in registration order, and one namespace twice in one
// place is refused.
func TestHandleInline(t *testing.T) {
	h := router.NewHooks()
	called := ""
	fn := func(ns string) router.NonzaHandler {
		return func(context.Context, router.ConnInfo, wire.Element) ([]byte, error) { called = ns; return nil, nil }
	}
	h.HandleInline(router.InlineBind, xml.Name{Space: "urn:a"}, fn("a"))
	h.HandleInline(router.InlineBind, xml.Name{Space: "urn:b"}, fn("b"))
	h.HandleInline(router.InlineAuth, xml.Name{Space: "urn:a", Local: "x"}, fn("auth-a"))
	if err := h.Err(); err != nil {
		t.Fatal(err)
	}
	if got := h.InlineAdverts(router.InlineBind); len(got) != 2 || got[0].Space != "urn:a" || got[1].Space != "urn:b" {
		t.Fatalf("adverts %v", got)
	}
	h.InlineHandler(router.InlineAuth, "urn:a")(context.Background(), router.ConnInfo{}, wire.Element{})
	if called != "auth-a" || h.InlineHandler(router.InlineAuth, "urn:b") != nil {
		t.Fatalf("lookup: called %q", called)
	}
	h.HandleInline(router.InlineBind, xml.Name{Space: "urn:a"}, fn("again"))
	if h.Err() == nil {
		t.Fatal("a namespace registered twice in one place was accepted")
	}
}

// Errors carry the XEP-0086 code of their condition (clients such as
// profanity read only it); a condition without one gets none.
func TestLegacyErrorCode(t *testing.T) {
	for cond, want := range map[stanza.Condition]string{
		stanza.ItemNotFound: ` code="404"`, stanza.ServiceUnavailable: ` code="503"`, stanza.PolicyViolation: ``,
	} {
		got := string(router.AppendError(nil, router.NewError(stanza.Cancel, cond, "")))
		if !strings.HasPrefix(got, `<error type="cancel"`+want+`><`+string(cond)+` `) {
			t.Errorf("%s: %s", cond, got)
		}
	}
}
