package sm_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd/internal/servertest"
	"dialtone/xmppd/mod/sm"
	"dialtone/xmppd/router"
)

const (
	alice = "+821012345678"
	bob   = "+821087654321"
)

// smClient is a test client that counts the stanzas it received (its h)
// since it enabled stream management.
type smClient struct {
	*xmpptest.Client
	h      int
	id     string
	bodies []string // of the messages it got, in order
}

func isStanza(e xmpptest.Elem) bool {
	switch e.XMLName.Local {
	case "message", "presence", "iq":
		return e.XMLName.Space == "jabber:client"
	}
	return false
}

// next reads the next element, counting stanzas and noting bodies.
func (c *smClient) next() xmpptest.Elem {
	c.T.Helper()
	e := c.Next()
	c.note(e)
	return e
}

func (c *smClient) note(e xmpptest.Elem) {
	if !isStanza(e) {
		return
	}
	c.h++
	if e.XMLName.Local == "message" {
		if i := strings.Index(e.Inner, "<body>"); i >= 0 {
			j := strings.Index(e.Inner, "</body>")
			c.bodies = append(c.bodies, e.Inner[i+6:j])
		}
	}
}

// expect reads until f, counting what it skips (at most 200 elements).
func (c *smClient) expect(what string, f func(xmpptest.Elem) bool) xmpptest.Elem {
	c.T.Helper()
	for i := 0; i < 200; i++ {
		if e := c.next(); f(e) {
			return e
		}
	}
	c.T.Fatalf("never got %s", what)
	return xmpptest.Elem{}
}

// sync is a ping round trip, counted.
func (c *smClient) sync() {
	c.T.Helper()
	c.Send(`<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	c.expect("sync", func(e xmpptest.Elem) bool { return e.Attr("id") == "sync" })
}

func named(local string) func(xmpptest.Elem) bool {
	return func(e xmpptest.Elem) bool { return e.XMLName.Local == local }
}

// enable logs in and enables resumable stream management.
func enable(t testing.TB, ts *servertest.Server, user, pass, res string) *smClient {
	t.Helper()
	c := &smClient{Client: xmpptest.Login(t, ts.Addr, user, pass, res)}
	c.Send(`<enable xmlns='urn:xmpp:sm:3' resume='true'/>`)
	e := c.expect("enabled", named("enabled"))
	if e.Attr("resume") != "true" || e.Attr("id") == "" || e.Attr("max") == "" {
		t.Fatalf("enabled: %v", e)
	}
	c.id = e.Attr("id")
	return c
}

// authenticate opens a new connection and authenticates it, unbound; it
// returns the features offered after authentication.
func authenticate(t testing.TB, ts *servertest.Server, user, pass string) (*xmpptest.Client, xmpptest.Elem) {
	t.Helper()
	c := xmpptest.Dial(t, ts.Addr)
	return c, c.Authenticate(user, pass)
}

// resume resumes old's session on a new connection and returns the new
// client and <resumed/> (or <failed/>).
func resume(t testing.TB, ts *servertest.Server, user, pass string, old *smClient) (*smClient, xmpptest.Elem) {
	t.Helper()
	c, _ := authenticate(t, ts, user, pass)
	c.Send(fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>`, old.id, old.h))
	e := c.Expect("resumed", func(e xmpptest.Elem) bool { return e.XMLName.Local == "resumed" || e.XMLName.Local == "failed" })
	nc := &smClient{Client: c, h: old.h, id: old.id, bodies: old.bodies}
	return nc, e
}

func send(t *testing.T, from *xmpptest.Client, to string, from0, n int) {
	t.Helper()
	for i := from0; i < from0+n; i++ {
		from.Send(fmt.Sprintf(`<message to='%s' type='chat' id='m%d'><body>m%d</body></message>`, to, i, i))
	}
	from.Sync()
}

func TestFeatureAfterAuth(t *testing.T) {
	ts := servertest.Start(t, servertest.With(sm.New()))
	pa := ts.Account(t, alice)
	_, f := authenticate(t, ts, alice, pa)
	if !strings.Contains(f.Inner, sm.NS) {
		t.Fatalf("no sm feature: %v", f)
	}
}

// TestResumeNoLossNoDuplicates kills the TCP connection mid-flow: what
// the client did not count comes again on the resumed stream, once, then
// what came while it hibernated; h is right both ways.
func TestResumeNoLossNoDuplicates(t *testing.T) {
	ts := servertest.Start(t, servertest.With(&sm.Module{ResumeTimeout: time.Minute}))
	pa, pb := ts.Account(t, alice), ts.Account(t, bob)
	a := enable(t, ts, alice, pa, "phone")
	a.Send(`<presence/>`) // stanza 1 from the client
	a.sync()              // stanza 2
	b := xmpptest.Login(t, ts.Addr, bob, pb, "b")
	send(t, b, alice+"@localhost", 0, 30)
	// Alice reads 15 of them and acknowledges 10 of what she counted.
	for len(a.bodies) < 15 {
		a.next()
	}
	a.Send(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, a.h-5))
	a.Conn.Close() // the network goes away
	send(t, b, alice+"@localhost", 30, 10)

	na, e := resume(t, ts, alice, pa, a)
	if e.XMLName.Local != "resumed" || e.Attr("previd") != a.id || e.Attr("h") != "2" {
		t.Fatalf("resume: %v (want h=2)", e)
	}
	// Everything up to m39, then a sync: nothing more may come.
	na.expect("m39", func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "<body>m39</body>") })
	na.sync()
	if len(na.bodies) != 40 {
		t.Fatalf("got %d messages: %v", len(na.bodies), na.bodies)
	}
	for i, body := range na.bodies {
		if body != "m"+strconv.Itoa(i) {
			t.Fatalf("message %d is %s: %v", i, body, na.bodies)
		}
	}
	// The server's h counts the client's stanzas on both streams.
	na.Send(`<r xmlns='urn:xmpp:sm:3'/>`)
	ack := na.expect("a", named("a"))
	if ack.Attr("h") != "3" { // presence, sync, sync
		t.Fatalf("server h: %v", ack)
	}
	// The client's h: ask the server, answer, and the server is content.
	na.Send(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, na.h))
	na.sync()
}

// TestResumeUnknownAndExpired: an unknown id fails without h, an expired
// one with its last h.
func TestResumeUnknownAndExpired(t *testing.T) {
	watch, closed := closedSessions()
	ts := servertest.Start(t, servertest.With(&sm.Module{ResumeTimeout: 200 * time.Millisecond}, watch))
	pa := ts.Account(t, alice)
	c, _ := authenticate(t, ts, alice, pa)
	c.Send(`<resume xmlns='urn:xmpp:sm:3' previd='nope' h='0'/>`)
	e := c.Expect("failed", named("failed"))
	if !strings.Contains(e.Inner, "item-not-found") || e.Attr("h") != "" {
		t.Fatalf("unknown id: %v", e)
	}

	a := enable(t, ts, alice, pa, "phone")
	a.Send(`<presence/>`)
	a.sync()
	a.Conn.Close()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the session never expired")
	}
	c, _ = authenticate(t, ts, alice, pa)
	c.Send(fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>`, a.id, a.h))
	e = c.Expect("failed", named("failed"))
	if !strings.Contains(e.Inner, "item-not-found") || e.Attr("h") != "2" {
		t.Fatalf("expired id: %v", e)
	}
	// Another account does not learn h.
	pb := ts.Account(t, bob)
	c, _ = authenticate(t, ts, bob, pb)
	c.Send(fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='0'/>`, a.id))
	if e = c.Expect("failed", named("failed")); e.Attr("h") != "" {
		t.Fatalf("h to another account: %v", e)
	}
}

// closedSessions signals each session of a bound JID that ends.
func closedSessions() (router.Module, chan string) {
	ch := make(chan string, 16)
	return router.ModuleFunc(func(h *router.Hooks) error {
		h.OnSession(router.Closed, 0, func(ctx context.Context, s *router.Session) {
			if s.Resource() != "" {
				ch <- s.String()
			}
		})
		return nil
	}), ch
}

// TestResumeWhileConnected: the old stream, still up, is closed and the
// new one takes the session over.
func TestResumeWhileConnected(t *testing.T) {
	ts := servertest.Start(t, servertest.With(&sm.Module{ResumeTimeout: time.Minute}))
	pa, pb := ts.Account(t, alice), ts.Account(t, bob)
	a := enable(t, ts, alice, pa, "phone")
	a.Send(`<presence/>`)
	a.sync()
	b := xmpptest.Login(t, ts.Addr, bob, pb, "b")
	send(t, b, alice+"@localhost", 0, 3)
	na, e := resume(t, ts, alice, pa, a)
	if e.XMLName.Local != "resumed" {
		t.Fatalf("resume: %v", e)
	}
	if cond := a.ExpectStreamError(); cond != "conflict" {
		t.Fatalf("old stream: %s", cond)
	}
	send(t, b, alice+"@localhost", 3, 1)
	na.expect("m3", func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "<body>m3</body>") })
	if len(na.bodies) != 4 {
		t.Fatalf("got %v", na.bodies)
	}
	// The full JID is the same: a message to it arrives.
	b.Send(`<message to='` + alice + `@localhost/phone' type='chat' id='full'><body>full</body></message>`)
	na.expect("full", func(e xmpptest.Elem) bool { return e.Attr("id") == "full" })
}

// TestServerRequestsAcks: after RequestAfter stanzas the server asks.
func TestServerRequestsAcks(t *testing.T) {
	ts := servertest.Start(t, servertest.With(&sm.Module{RequestAfter: 3, RequestEvery: time.Hour}))
	pa, pb := ts.Account(t, alice), ts.Account(t, bob)
	a := enable(t, ts, alice, pa, "phone")
	a.Send(`<presence/>`)
	a.sync() // stanza 1 to the client
	b := xmpptest.Login(t, ts.Addr, bob, pb, "b")
	send(t, b, alice+"@localhost", 0, 2) // 2, 3: then <r/>
	r := a.expect("r", named("r"))
	if r.XMLName.Space != sm.NS || a.h != 3 {
		t.Fatalf("r after %d stanzas: %v", a.h, r)
	}
}

// TestServerRequestsAcksInTime: an unacknowledged stanza gets an <r/>
// after RequestEvery.
func TestServerRequestsAcksInTime(t *testing.T) {
	ts := servertest.Start(t, servertest.With(&sm.Module{RequestEvery: 100 * time.Millisecond}))
	pa := ts.Account(t, alice)
	a := enable(t, ts, alice, pa, "phone")
	a.sync()
	start := time.Now()
	a.expect("r", named("r"))
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("r after %v", d)
	}
}

// TestQueueLimit: a session with more unacknowledged stanzas than the
// limit is closed with policy-violation.
func TestQueueLimit(t *testing.T) {
	ts := servertest.Start(t, servertest.With(&sm.Module{QueueLimit: 5}))
	pa, pb := ts.Account(t, alice), ts.Account(t, bob)
	a := enable(t, ts, alice, pa, "phone")
	a.Send(`<presence/>`)
	a.sync()
	b := xmpptest.Login(t, ts.Addr, bob, pb, "b")
	for i := 0; i < 6; i++ {
		b.Send(fmt.Sprintf(`<message to='%s@localhost' type='chat'><body>m%d</body></message>`, alice, i))
	}
	if cond := a.ExpectStreamError(); cond != "policy-violation" {
		t.Fatalf("stream error %s", cond)
	}
}

// TestEnableTwiceAndBeforeBind: unexpected-request.
func TestEnableTwiceAndBeforeBind(t *testing.T) {
	ts := servertest.Start(t, servertest.With(sm.New()))
	pa := ts.Account(t, alice)
	c, _ := authenticate(t, ts, alice, pa)
	c.Send(`<enable xmlns='urn:xmpp:sm:3'/>`)
	if e := c.Expect("failed", named("failed")); !strings.Contains(e.Inner, "unexpected-request") {
		t.Fatalf("%v", e)
	}
	a := enable(t, ts, alice, pa, "phone")
	a.Send(`<enable xmlns='urn:xmpp:sm:3'/>`)
	if e := a.expect("failed", named("failed")); !strings.Contains(e.Inner, "unexpected-request") {
		t.Fatalf("%v", e)
	}
}

// undelivered records the bodies of the messages the Undelivered hooks
// get, and takes them.
func undelivered() (router.Module, chan string) {
	ch := make(chan string, 64)
	return router.ModuleFunc(func(h *router.Hooks) error {
		h.Hook(router.Undelivered, router.Messages, 0, func(ctx context.Context, ev *router.Event) error {
			in := string(ev.Stanza.Inner)
			if i := strings.Index(in, "<body>"); i >= 0 {
				ch <- in[i+6 : strings.Index(in, "</body>")]
			}
			return router.ErrHandled
		})
		return nil
	}), ch
}

func collect(t *testing.T, ch chan string, n int) []string {
	t.Helper()
	var got []string
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case b := <-ch:
			got = append(got, b)
		case <-timeout:
			t.Fatalf("got %v, want %d", got, n)
		}
	}
	return got
}

// TestTimeoutUndelivered: at the timeout the unacked messages and the
// ones queued meanwhile go to the Undelivered hooks, once each, in order;
// an archived one goes to Notice instead.
func TestTimeoutUndelivered(t *testing.T) {
	undel, got := undelivered()
	watch, closed := closedSessions()
	noticed := make(chan string, 8)
	m := &sm.Module{ResumeTimeout: 300 * time.Millisecond,
		Archived: func(s *router.Session, st *router.Stanza) bool { return strings.Contains(string(st.Inner), "archived") },
		Notice: func(ctx context.Context, st *router.Stanza) error {
			noticed <- st.ID
			return nil
		}}
	ts := servertest.Start(t, servertest.With(m, undel, watch))
	pa, pb := ts.Account(t, alice), ts.Account(t, bob)
	a := enable(t, ts, alice, pa, "phone")
	a.Send(`<presence/>`)
	a.sync()
	b := xmpptest.Login(t, ts.Addr, bob, pb, "b")
	send(t, b, alice+"@localhost", 0, 2)
	b.Send(`<message to='` + alice + `@localhost' type='chat' id='arch'><body>archived</body></message>`)
	// What the offline module handed over stays in its store: not again.
	b.Send(`<message to='` + alice + `@localhost' type='chat' id='off'><body>from the store</body>` +
		`<delay xmlns='urn:xmpp:delay' from='localhost' stamp='2030-01-01T00:00:00.000Z'/></message>`)
	a.expect("off", func(e xmpptest.Elem) bool { return e.Attr("id") == "off" })
	a.Send(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, a.h-3)) // m0 acked; m1, arch, off not
	a.Conn.Close()
	send(t, b, alice+"@localhost", 2, 1) // queued (or unacked on the dying stream)
	<-closed
	if bodies := collect(t, got, 2); fmt.Sprint(bodies) != "[m1 m2]" {
		t.Fatalf("undelivered %v", bodies)
	}
	if id := <-noticed; id != "arch" {
		t.Fatalf("noticed %s", id)
	}
	// Nothing more: a later message to the account, with no session,
	// is the next thing the hooks see.
	send(t, b, alice+"@localhost", 3, 1)
	if bodies := collect(t, got, 1); bodies[0] != "m3" {
		t.Fatalf("then %v", bodies)
	}
}

// TestQueueLimitUndelivered: a session closed for the queue limit has
// its unacked messages undelivered, as at a timeout.
func TestQueueLimitUndelivered(t *testing.T) {
	undel, got := undelivered()
	ts := servertest.Start(t, servertest.With(&sm.Module{QueueLimit: 3}, undel))
	pa, pb := ts.Account(t, alice), ts.Account(t, bob)
	a := enable(t, ts, alice, pa, "phone")
	a.Send(`<presence/>`)
	a.sync()
	b := xmpptest.Login(t, ts.Addr, bob, pb, "b")
	send(t, b, alice+"@localhost", 0, 4)
	if cond := a.ExpectStreamError(); cond != "policy-violation" {
		t.Fatalf("stream error %s", cond)
	}
	// The sync's result was acked by nobody either: only messages count.
	if bodies := collect(t, got, 4); fmt.Sprint(bodies) != "[m0 m1 m2 m3]" {
		t.Fatalf("undelivered %v", bodies)
	}
}
