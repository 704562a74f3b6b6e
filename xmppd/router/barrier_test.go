package router_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"dialtone/xmppd/router"
)

// An iq answer from the server waits for the work held for what the same
// session sent before it, and is written right after that is released;
// a session with nothing held is answered at once.
func TestIQAnswerWaitsForHeldWork(t *testing.T) {
	r := newRouter(t, router.ModuleFunc(func(h *router.Hooks) error {
		h.HandleIQ(router.ScopeServer, router.IQGet, pingName, nop)
		return nil
	}))
	var released atomic.Bool
	as := &orderSink{released: &released}
	a := router.NewSession(context.Background(), alice, as)
	if err := r.Bind(a, full(alice, "a"), nil); err != nil {
		t.Fatal(err)
	}
	ping := func(id string) *router.Stanza {
		return &router.Stanza{Kind: router.KindIQ, Type: "get", ID: id, To: jid.MustParse(domain),
			Payload: pingName, Inner: []byte(`<ping xmlns='urn:xmpp:ping'/>`)}
	}
	send(r, a, ping("p0"))
	if got := as.take(); len(got) != 1 || !strings.Contains(got[0], `type="result"`) {
		t.Fatalf("nothing held: %q", got)
	}

	release1, release2 := a.Hold(), a.Hold()
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		send(r, a, ping("p1"))
	}()
	release1()
	release1() // a second release does nothing: one hold is still taken
	released.Store(true)
	release2()
	select {
	case <-answered:
	case <-time.After(5 * time.Second):
		t.Fatal("not answered after every hold was released")
	}
	if got := as.take(); len(got) != 1 || !strings.Contains(got[0], `id="p1"`) || !strings.Contains(got[0], `type="result"`) {
		t.Fatalf("after release: %q", got)
	}
	if as.early.Load() {
		t.Fatal("the answer was written before the last hold was released")
	}
}

// orderSink records whether anything was written before released.
type orderSink struct {
	sink
	released *atomic.Bool
	early    atomic.Bool
}

func (s *orderSink) Send(b []byte) bool {
	if !s.released.Load() && strings.Contains(string(b), `id="p1"`) {
		s.early.Store(true)
	}
	return s.sink.Send(b)
}

// Settle ends with its context when a hold is never released.
func TestSettleBounded(t *testing.T) {
	r := newRouter(t)
	a, _ := bind(t, r, full(alice, "a"))
	release := a.Hold()
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := a.Settle(ctx); err == nil {
		t.Fatal("Settle returned with a hold taken")
	}
	release()
	if err := a.Settle(context.Background()); err != nil {
		t.Fatalf("Settle after release: %v", err)
	}
}
