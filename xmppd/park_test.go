package xmppd_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd"
)

// sessionReaders counts the goroutines reading a client session: a
// parked session has none.
func sessionReaders() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "c2s.(*session).readLoop(")
}

// waitParked waits (bounded) until no session has a reading goroutine.
func waitParked(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for sessionReaders() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still have a reading goroutine", sessionReaders())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func parkSoon(c *xmppd.Config) { c.ParkAfter = 20 * time.Millisecond }

// An idle session parks (no goroutine), and wakes for what its client
// sends, again and again; stanzas routed to it are written while it is
// parked.
func TestParkedSessionWakes(t *testing.T) {
	ts := startServer(t, parkSoon)
	a := xmpptest.Login(t, ts.addr, alice, ts.account(t, alice), "a")
	b := xmpptest.Login(t, ts.addr, bob, ts.account(t, bob), "b")
	for i := range 3 {
		waitParked(t)
		id := "m" + string(rune('0'+i))
		b.Send(`<message to='` + alice + `@localhost/a' id='` + id + `' type='chat'><body>hi</body></message>`)
		a.Expect("message "+id, func(e xmpptest.Elem) bool { return e.XMLName.Local == "message" && e.Attr("id") == id })
		waitParked(t)
		a.Send(`<iq type='get' id='p` + id + `'><ping xmlns='urn:xmpp:ping'/></iq>`)
		a.Expect("pong", func(e xmpptest.Elem) bool { return e.Attr("id") == "p"+id && e.Attr("type") == "result" })
	}
}

// A parked session is still pinged when idle, and closed when it does not
// answer.
func TestParkedSessionPinged(t *testing.T) {
	ts := startServer(t, parkSoon, func(c *xmppd.Config) { c.IdleTimeout = 300 * time.Millisecond; c.PingTimeout = 300 * time.Millisecond })
	a := xmpptest.Login(t, ts.addr, alice, ts.account(t, alice), "x")
	waitParked(t) // the ping must come from the timer of a parked wait
	p := a.Expect("ping", func(e xmpptest.Elem) bool { return strings.Contains(e.Inner, "urn:xmpp:ping") })
	a.Send(`<iq type='result' id='` + p.Attr("id") + `' to='localhost'/>`)
	if cond := a.ExpectStreamError(); cond != "connection-timeout" {
		t.Fatalf("got %q", cond)
	}
}

// A parked session that another login replaces gets its conflict, and a
// shutdown ends parked sessions and leaves no goroutine.
func TestParkedSessionClosed(t *testing.T) {
	noGoroutines(t, "of earlier tests")
	ts := startServer(t, parkSoon)
	pa := ts.account(t, alice)
	a := xmpptest.Login(t, ts.addr, alice, pa, "x")
	b := xmpptest.Login(t, ts.addr, bob, ts.account(t, bob), "y")
	waitParked(t)
	xmpptest.Login(t, ts.addr, alice, pa, "x")
	if cond := a.ExpectStreamError(); cond != "conflict" {
		t.Fatalf("replaced: got %q", cond)
	}
	waitParked(t)
	if err := ts.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if cond := b.ExpectStreamError(); cond != "system-shutdown" {
		t.Fatalf("shutdown: got %q", cond)
	}
	noGoroutines(t, "after shutdown")
}
