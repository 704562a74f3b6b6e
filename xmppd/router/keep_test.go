package router_test

import (
	"context"
	"sync/atomic"
	"testing"

	"dialtone/xmppd/router"
)

// countSink wraps a sink and counts what passes.
type countSink struct {
	router.Sink
	n atomic.Int32
}

func (c *countSink) Send(b []byte) bool { c.n.Add(1); return c.Sink.Send(b) }

// TestWrapSinkKeepAndStreamEnd: a wrapper sees what the session is sent;
// a kept session's stream end is the module's to decide, a session not
// kept is the stream's; Fire fires only Hibernated and Resumed;
// Undeliverable runs the Undelivered hooks.
func TestWrapSinkKeepAndStreamEnd(t *testing.T) {
	var ended, hibernated, resumed, closed, undelivered atomic.Int32
	keep := true
	r := newRouter(t, router.ModuleFunc(func(h *router.Hooks) error {
		h.OnStreamEnd(func(ctx context.Context, s *router.Session, stream router.Sink, dropped bool) bool {
			ended.Add(1)
			return keep && dropped
		})
		h.OnSession(router.Hibernated, 0, func(context.Context, *router.Session) { hibernated.Add(1) })
		h.OnSession(router.Resumed, 0, func(context.Context, *router.Session) { resumed.Add(1) })
		h.OnSession(router.Closed, 0, func(context.Context, *router.Session) { closed.Add(1) })
		h.Hook(router.Undelivered, router.Messages, 0, func(ctx context.Context, ev *router.Event) error {
			undelivered.Add(1)
			return router.ErrHandled
		})
		return nil
	}))
	sa, inner := bind(t, r, full(alice, "a"))
	sb, _ := bind(t, r, full(bob, "b"))
	var c *countSink
	sa.WrapSink(func(k router.Sink) router.Sink { c = &countSink{Sink: k}; return c })
	send(r, sb, message(full(alice, "a"), "1"))
	if c.n.Load() != 1 || len(inner.take()) != 1 {
		t.Fatalf("wrapper saw %d", c.n.Load())
	}
	if sa.Sink() != router.Sink(c) {
		t.Fatal("Sink is not the wrapper")
	}
	if r.StreamEnded(sa, inner, true) || ended.Load() != 0 {
		t.Fatal("a session not kept was kept")
	}
	sa.Keep()
	if !r.StreamEnded(sa, inner, true) || r.StreamEnded(sa, inner, false) || ended.Load() != 2 {
		t.Fatal("the module's decision was not followed")
	}
	r.Fire(context.Background(), router.Hibernated, sa)
	r.Fire(context.Background(), router.Resumed, sa)
	r.Fire(context.Background(), router.Closed, sa)
	if hibernated.Load() != 1 || resumed.Load() != 1 || closed.Load() != 0 {
		t.Fatalf("events: %d %d %d", hibernated.Load(), resumed.Load(), closed.Load())
	}
	st := message(full(alice, "a"), "2")
	st.SetFrom(sb.JID(), sb.String())
	r.Undeliverable(context.Background(), st)
	if undelivered.Load() != 1 {
		t.Fatal("Undeliverable did not run the hooks")
	}
	sa.CountIn()
	sa.CountIn()
	if sa.StanzasIn() != 2 {
		t.Fatalf("StanzasIn %d", sa.StanzasIn())
	}
}
