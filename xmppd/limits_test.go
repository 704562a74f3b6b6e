package xmppd_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"mellium.im/sasl"
	"mellium.im/xmpp/jid"

	"dialtone/internal/xmpptest"
	"dialtone/xmppd"
)

// closedWithin reads from c until the server closes it and fails the test
// unless that happens within limit (a read deadline of our own expiring
// means the server kept the connection).
func closedWithin(t *testing.T, c net.Conn, limit time.Duration, what string) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: still open after %v", what, limit)
		}
		t.Logf("%s: closed after %v (%v)", what, time.Since(start).Round(time.Millisecond), err)
		return
	}
}

// A connection to the direct TLS port that sends nothing, or only the
// start of a ClientHello, is closed by XMPPD_AUTH_TIMEOUT like any other
// (SPEC "Limits on what clients send").
func TestDirectTLSHandshakeDeadline(t *testing.T) {
	ts := startServer(t, func(c *xmppd.Config) { c.AuthTimeout = 300 * time.Millisecond })
	silent, err := net.Dial("tcp", ts.directAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	half, err := net.Dial("tcp", ts.directAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer half.Close()
	// A TLS record header announcing a 512-byte ClientHello, and only the
	// first bytes of it.
	if _, err := half.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}); err != nil {
		t.Fatal(err)
	}
	closedWithin(t, silent, 5*time.Second, "silent connection to the direct TLS port")
	closedWithin(t, half, 5*time.Second, "half a ClientHello on the direct TLS port")

	// The same after STARTTLS's <proceed/> on the c2s port.
	c := xmpptest.Dial(t, ts.addr)
	c.Open("localhost")
	c.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" })
	c.Send(`<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`)
	c.Expect("proceed", func(e xmpptest.Elem) bool { return e.XMLName.Local == "proceed" })
	closedWithin(t, c.Conn, 5*time.Second, "no handshake after <proceed/>")
}

// dialFrom connects to addr from the loopback address local.
func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", local, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Clients holding their per-address maximum of unauthenticated
// connections from several addresses, the global cap reached with them,
// do not keep a login from another address out: a newcomer from a
// smaller group takes the place of the largest group's oldest connection.
func TestLoginWhileOthersHoldPendingSlots(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := xmppd.NewMetrics(reg)
	ts := startServer(t, func(c *xmppd.Config) {
		c.MaxPending = 6
		c.MaxPendingPerIP = 2
		c.Metrics = m
	})
	pass := ts.account(t, alice)
	var held []net.Conn
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		for range 2 {
			held = append(held, dialFrom(t, ip, ts.addr))
		}
	}
	waitUntil(t, "6 unauthenticated connections counted", func() bool { return gaugeValue(m.Pending) == 6 })

	// The per-address limit still holds.
	third := dialFrom(t, "127.0.0.2", ts.addr)
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := third.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		t.Fatalf("a third connection from 127.0.0.2: %v, want it closed at once", err)
	}

	a := xmpptest.Login(t, ts.addr, alice, pass, "phone") // from 127.0.0.1
	a.Send(`<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	a.Expect("the ping's answer", func(e xmpptest.Elem) bool { return e.Attr("id") == "p" })

	// One of the held connections made room and was closed.
	closed := 0
	for _, c := range held {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				closed++
			}
		}
	}
	if closed != 1 {
		t.Errorf("%d held connections were closed to make room, want 1", closed)
	}
	if n := gaugeValue(m.Pending); n > 6 {
		t.Errorf("%v unauthenticated connections counted, more than the cap of 6", n)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// waitUntil polls f for up to five seconds.
func waitUntil(t *testing.T, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !f(); {
		if time.Now().After(deadline) {
			t.Fatalf("waited in vain for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// gaugeValue reads a gauge (a GaugeFunc too) or a counter.
func gaugeValue(g prometheus.Metric) float64 {
	var m dto.Metric
	g.Write(&m)
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// A session that stops reading, fed 200 KB messages by its account's
// other resource, is closed with policy-violation once about 1 MiB waits
// for it; its queue never holds more than that plus one stanza.
func TestNonReadingSessionBoundedInBytes(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := xmppd.NewMetrics(reg)
	ts := startServer(t, func(c *xmppd.Config) { c.Metrics = m })
	pa := ts.account(t, alice)
	slow := xmpptest.Login(t, ts.addr, alice, pa, "slow")
	slow.Conn.(*tls.Conn).NetConn().(*net.TCPConn).SetReadBuffer(4096)
	slow.Available()
	fast := xmpptest.Login(t, ts.addr, alice, pa, "fast")
	feedUntilClosed(t, ts, m, fast, mustJID(alice+"@localhost/slow"))
	if n := gaugeValue(m.SlowClosed); n != 1 {
		t.Errorf("xmppd_slow_sessions_closed_total = %v, want 1", n)
	}
	// The sender goes on.
	fast.Sync()
}

// An account binds at most SessionsPerAccount resources: one more gets
// resource-constraint, and a rebind of a bound resource replaces it.
func TestSessionsPerAccount(t *testing.T) {
	ts := startServer(t, func(c *xmppd.Config) { c.SessionsPerAccount = 10 })
	pa := ts.account(t, alice)
	var first *xmpptest.Client
	for i := range 10 {
		c := xmpptest.Login(t, ts.addr, alice, pa, fmt.Sprintf("r%d", i))
		if i == 0 {
			first = c
		}
	}
	c := xmpptest.Dial(t, ts.addr)
	c.Open("localhost")
	c.StartTLS()
	c.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" })
	if cond := c.Auth(sasl.ScramSha256, alice, pa); cond != "" {
		t.Fatal(cond)
	}
	c.Open("localhost")
	c.Expect("features", func(e xmpptest.Elem) bool { return e.XMLName.Local == "features" })
	c.Send(`<iq type='set' id='b11'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r10</resource></bind></iq>`)
	e := c.Expect("the bind answer", func(e xmpptest.Elem) bool { return e.Attr("id") == "b11" })
	if e.Attr("type") != "error" || !strings.Contains(e.Inner, "<resource-constraint") || !strings.Contains(e.Inner, `type="wait"`) {
		t.Fatalf("the 11th bind got %v, want a resource-constraint error of type wait", e)
	}
	if n := len(ts.Sessions(mustJID(alice + "@localhost"))); n != 10 {
		t.Fatalf("%d sessions bound, want 10", n)
	}
	// The same resource again replaces the bound one.
	c.Send(`<iq type='set' id='b0'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r0</resource></bind></iq>`)
	if e := c.Expect("the rebind answer", func(e xmpptest.Elem) bool { return e.Attr("id") == "b0" }); e.Attr("type") != "result" {
		t.Fatalf("rebinding r0 got %v", e)
	}
	if cond := first.ExpectStreamError(); cond != "conflict" {
		t.Fatalf("the replaced session got %q", cond)
	}
}

// hasSession reports whether full is bound.
func hasSession(ts *testServer, full jid.JID) bool {
	for _, s := range ts.Sessions(full.Bare()) {
		if s.JID().Equal(full) {
			return true
		}
	}
	return false
}

// A client sending faster than C2SRate is slowed down to it once its
// burst (ten seconds' worth) is spent, as the server's own count of its
// bytes shows, and loses nothing: every message arrives, and its stream
// stays open.
func TestSenderOverRateIsSlowed(t *testing.T) {
	const rate = 32 << 10
	ts := startServer(t, func(c *xmppd.Config) { c.C2SRate = rate })
	pa, pb := ts.account(t, alice), ts.account(t, bob)
	fast := xmpptest.Login(t, ts.addr, alice, pa, "fast")
	fastJID := mustJID(alice + "@localhost/fast")
	recv := xmpptest.Login(t, ts.addr, bob, pb, "recv")
	recv.Available()
	body := strings.Repeat("y", 4<<10)
	const total = 112 // 448 KiB: the burst (320 KiB) and 128 KiB more
	sendDone := make(chan error, 1)
	go func() {
		var buf []byte
		for i := range total {
			buf = fmt.Appendf(buf, `<message type='chat' id='r%d' to='%s@localhost/recv'><body>%s</body></message>`, i, bob, body)
		}
		fast.Conn.SetWriteDeadline(time.Now().Add(60 * time.Second))
		_, err := fast.Conn.Write(buf)
		sendDone <- err
	}()

	// Over a window after the burst, the bytes counted per second of
	// wall time stay near the rate.
	counted := func() int64 { return ts.RateCounted(fastJID) }
	base := counted()
	waitFor := func(n int64) time.Time {
		deadline := time.Now().Add(30 * time.Second)
		for counted() < n {
			if time.Now().After(deadline) {
				t.Fatalf("the server counted %d bytes from the sender, waited for %d", counted(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Now()
	}
	from := base + rateBurst(rate) + 16<<10
	to := from + 96<<10
	t0 := waitFor(from)
	c0 := counted()
	t1 := waitFor(to)
	c1 := counted()
	got := float64(c1-c0) / t1.Sub(t0).Seconds()
	t.Logf("after the burst: %.0f bytes/s over %v (rate %d)", got, t1.Sub(t0).Round(time.Millisecond), rate)
	if got > 1.5*rate || got < 0.5*rate {
		t.Errorf("read %.0f bytes/s after the burst, want about %d", got, rate)
	}

	seen := map[string]bool{}
	for len(seen) < total {
		e, err := recv.TryNext(20 * time.Second)
		if err != nil {
			t.Fatalf("the receiver got %d of %d messages: %v", len(seen), total, err)
		}
		if e.XMLName.Local == "message" {
			if e.Attr("type") == "error" || seen[e.Attr("id")] {
				t.Fatalf("the receiver got %v", e)
			}
			seen[e.Attr("id")] = true
		}
	}
	if err := <-sendDone; err != nil {
		t.Fatalf("sending: %v", err)
	}
	fast.Sync() // still open, nothing came back but the answer
}

func rateBurst(rate int64) int64 { return 10 * rate }

// The same bound holds for a WebSocket session that stops reading.
func TestNonReadingWebSocketBoundedInBytes(t *testing.T) {
	m := xmppd.NewMetrics(nil)
	ts := startServer(t, func(c *xmppd.Config) { c.Metrics = m })
	pa := ts.account(t, alice)
	url, hc := startWS(t, ts, false)
	slow := dialWS(t, url, hc)
	slow.login(alice, pa, "slow")
	fast := xmpptest.Login(t, ts.addr, alice, pa, "fast")
	feedUntilClosed(t, ts, m, fast, mustJID(slow.JID))
}

// feedUntilClosed sends slow messages of 200 KB from fast until the server
// closes slow, which does not read, and checks that its write queue held
// 1 MiB and at most one stanza more.
func feedUntilClosed(t *testing.T, ts *testServer, m *xmppd.Metrics, fast *xmpptest.Client, slow jid.JID) {
	t.Helper()
	body := strings.Repeat("x", 200_000)
	const most = 150 // 30 MB: far more than the kernel's buffers hold
	sent, closed := 0, false
	for ; sent < most && !closed; sent++ {
		// headline: nothing comes back to the sender, which does not read
		fast.Send(fmt.Sprintf(`<message type='headline' id='m%d' to='%s'><body>%s</body></message>`, sent, slow, body))
		if sent%5 == 4 {
			fast.Sync()
			closed = !hasSession(ts, slow)
		}
	}
	if !closed {
		t.Fatalf("the session that does not read is still open after %d messages of 200 KB", sent)
	}
	const bound = 1<<20 + 200_000 + 1024 // 1 MiB, one stanza, its envelope
	peak := gaugeValue(m.WriteQueuePeak)
	t.Logf("closed after %d messages; the queue held at most %.0f bytes", sent, peak)
	if peak > bound || peak < 1<<20 {
		t.Errorf("the write queue held at most %.0f bytes, want 1 MiB to %d", peak, bound)
	}
}
