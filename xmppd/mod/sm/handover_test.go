package sm_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd/internal/servertest"
	"dialtone/xmppd/mod/sm"
	"dialtone/xmppd/router"
)

// twoNodes starts servers a and b on one account store, b asking a for
// the sessions it does not know (as the nodes of a cluster do, through
// NATS); more are loaded on b.
func twoNodes(t *testing.T, ma, mb *sm.Module, more ...router.Module) (a, b *servertest.Server) {
	t.Helper()
	a = servertest.Start(t, servertest.With(ma))
	mb.Remote = func(_ context.Context, previd, owner string, h uint32) (sm.Handover, bool) {
		return ma.HandOver(previd, owner, h, nil)
	}
	b = servertest.Start(t, servertest.With(append([]router.Module{mb}, more...)...), func(c *servertest.Config) {
		c.SASL.Store, c.Accounts = a.Accounts, a.Accounts
	})
	return a, b
}

// resumeOn resumes old's session on ts, trying again while the server
// that has it has not yet seen its stream end (item-not-found), for at
// most 5 s.
func resumeOn(t *testing.T, ts *servertest.Server, user, pass string, old *smClient) *smClient {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		nc, e := resume(t, ts, user, pass, old)
		if e.XMLName.Local == "resumed" {
			return nc
		}
		if time.Now().After(deadline) {
			t.Fatalf("never resumed: %v", e)
		}
		nc.Conn.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

// tenOnA: alice, available with resumable stream management on a, is
// sent m0…m9 by bob and reads the first read of them; it returns both
// clients and alice's password.
func tenOnA(t *testing.T, a *servertest.Server, read int) (al *smClient, bo *xmpptest.Client, pa string) {
	t.Helper()
	pa, pb := a.Account(t, alice), a.Account(t, bob)
	al = enable(t, a, alice, pa, "phone")
	al.Send(`<presence/>`)
	al.sync()
	bo = xmpptest.Login(t, a.Addr, bob, pb, "b")
	send(t, bo, alice+"@localhost", 0, 10)
	for len(al.bodies) < read {
		al.next()
	}
	return al, bo, pa
}

// greeter sends a message to every session that becomes available (as
// offline messages are delivered at the session's presence).
type greeter struct{}

func (greeter) Register(h *router.Hooks) error {
	r := h.Router()
	h.OnSession(router.Available, 0, func(_ context.Context, s *router.Session) {
		r.Deliver(s.JID(), router.RawStanza([]byte(`<message to='`+s.JID().String()+`' from='localhost' id='hello'><body>hello</body></message>`)))
	})
	return nil
}

// TestResumeOnAnotherServerOnce: a session hibernating on a is resumed
// on b while b has something new for it (a message at its presence): the
// stanzas a kept come first, once each, then the new one, once; h agrees
// both ways.
func TestResumeOnAnotherServerOnce(t *testing.T) {
	a, b := twoNodes(t, &sm.Module{ResumeTimeout: time.Minute}, &sm.Module{ResumeTimeout: time.Minute}, greeter{})
	al, bo, pa := tenOnA(t, a, 6)
	al.Conn.Close()
	send(t, bo, alice+"@localhost", 10, 5)

	na := resumeOn(t, b, alice, pa, al)
	na.expect("hello", func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "<body>hello</body>") })
	na.sync()
	want := "m0 m1 m2 m3 m4 m5 m6 m7 m8 m9 m10 m11 m12 m13 m14 hello"
	if got := strings.Join(na.bodies, " "); got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	na.Send(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, na.h))
	na.Send(`<r xmlns='urn:xmpp:sm:3'/>`)
	if ack := na.expect("a", named("a")); ack.Attr("h") != "3" { // presence, sync, sync
		t.Fatalf("server h: %v", ack)
	}
}

// TestShutdownHandsOver: a server stopping with ShutdownGrace ends its
// streams with system-shutdown but keeps their sessions until another
// server resumed them: nothing is lost nor sent twice, and the shutdown
// does not wait out the grace once none is left.
func TestShutdownHandsOver(t *testing.T) {
	const grace = 20 * time.Second
	a, b := twoNodes(t, &sm.Module{ResumeTimeout: time.Minute, ShutdownGrace: grace}, &sm.Module{ResumeTimeout: time.Minute})
	al, _, pa := tenOnA(t, a, 4)
	start := time.Now()
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*grace)
		defer cancel()
		stopped <- a.Shutdown(ctx)
	}()
	// Alice reads on until the end of the stream, as a client does, and
	// reconnects.
	for i := 0; i < 100; i++ {
		e, err := al.TryNext(5 * time.Second)
		if err != nil {
			t.Fatalf("no system-shutdown: %v", err)
		}
		if e.XMLName.Local == "error" {
			if !strings.Contains(e.Inner, "system-shutdown") {
				t.Fatalf("stream error: %v", e)
			}
			break
		}
		al.note(e)
	}
	al.Conn.Close()
	na := resumeOn(t, b, alice, pa, al)
	na.sync()
	if got, want := strings.Join(na.bodies, " "), "m0 m1 m2 m3 m4 m5 m6 m7 m8 m9"; got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	na.Send(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, na.h))
	na.sync()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(grace / 2):
		t.Fatal("the shutdown waited for the grace with no session left to hand over")
	}
	t.Logf("a stopped %v after the shutdown began", time.Since(start).Round(time.Millisecond))
}

// TestHeldWhileResumingElsewhere: a message comes for an account while
// its session is being resumed on b from a, before it is bound on b (in a
// cluster: the other nodes already heard that a let it go): it waits for
// the resumption and reaches the resumed session once, after what a
// kept; it is neither bounced nor stored offline.
func TestHeldWhileResumingElsewhere(t *testing.T) {
	const carol = "+821055556666"
	ma, mb := &sm.Module{ResumeTimeout: time.Minute}, &sm.Module{ResumeTimeout: time.Minute}
	asking, proceed := make(chan struct{}), make(chan struct{})
	a := servertest.Start(t, servertest.With(ma))
	mb.Remote = func(_ context.Context, previd, owner string, h uint32) (sm.Handover, bool) {
		close(asking)
		<-proceed
		return ma.HandOver(previd, owner, h, nil)
	}
	b := servertest.Start(t, servertest.With(mb), func(c *servertest.Config) {
		c.SASL.Store, c.Accounts = a.Accounts, a.Accounts
	})
	al, _, pa := tenOnA(t, a, 10)
	pc := a.Account(t, carol)
	al.Conn.Close()
	ca := xmpptest.Login(t, b.Addr, carol, pc, "c")

	resumed := make(chan *smClient, 1)
	go func() {
		nc, e := resume(t, b, alice, pa, al)
		if e.XMLName.Local != "resumed" {
			t.Errorf("resumption: %v", e)
		}
		resumed <- nc
	}()
	select {
	case <-asking:
	case <-time.After(10 * time.Second):
		t.Fatal("b never asked a for the session")
	}
	// Routed on b while the resumption waits for a's answer (the ping's
	// answer comes after the message was routed).
	ca.Send(`<message to='` + alice + `@localhost' type='chat' id='held'><body>held</body></message>`)
	ca.Sync()
	close(proceed)
	var na *smClient
	select {
	case na = <-resumed:
	case <-time.After(10 * time.Second):
		t.Fatal("the resumption never ended")
	}
	if na == nil || t.Failed() {
		t.FailNow()
	}
	na.sync()
	if got := strings.Join(na.bodies, " "); !strings.HasSuffix(got, "m9 held") || strings.Count(got, "held") != 1 {
		t.Fatalf("bodies %q, want ... m9 held (held once, last)", got)
	}
	// No error came back to carol.
	ca.Send(`<iq type='get' id='last' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	for i := 0; i < 20; i++ {
		e := ca.Next()
		if e.XMLName.Local == "message" && e.Attr("type") == "error" {
			t.Fatalf("carol got an error for the held message: %v", e)
		}
		if e.Attr("id") == "last" {
			break
		}
	}
}
