package xmppd_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

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

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	g.Write(&m)
	return m.GetGauge().GetValue()
}
