package stream

import (
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"dialtone/xmppd/wire"
)

// tcpPair is a connected pair on loopback: the server side's RawConn and
// the client side.
func tcpPair(t *testing.T) (syscall.RawConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	rc, err := s.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc, c
}

func waitResumed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("not resumed: %s", what)
	}
}

func parkedCount() int {
	idlePoller.mu.Lock()
	defer idlePoller.mu.Unlock()
	return len(idlePoller.parked)
}

// The poller resumes a parked wait on input, at its deadline, and once
// only; a Wake that comes before the wait is registered leaves nothing
// registered (the socket can park again), and the poller's goroutine ends
// when nothing is parked.
func TestPoller(t *testing.T) {
	rc, client := tcpPair(t)
	park := func(deadline time.Time) (*parkedWait, chan struct{}) {
		t.Helper()
		ch := make(chan struct{}, 2)
		w := &parkedWait{rc: rc, resume: func() { ch <- struct{}{} }}
		if !idlePoller.park(w, deadline) {
			t.Fatal("could not park")
		}
		return w, ch
	}

	w, ch := park(time.Time{})
	client.Write([]byte("x"))
	waitResumed(t, ch, "input")
	idlePoller.wake(w) // once only
	if len(ch) != 0 {
		t.Fatal("resumed twice")
	}

	// The byte is still unread: a new wait is resumed at once.
	_, ch = park(time.Now().Add(time.Hour))
	waitResumed(t, ch, "input already there")

	// Read it; then only the deadline resumes.
	buf := make([]byte, 8)
	rc.Read(func(fd uintptr) bool { syscall.Read(int(fd), buf); return true })
	_, ch = park(time.Now().Add(50 * time.Millisecond))
	waitResumed(t, ch, "deadline")

	// Woken before it was registered.
	ch = make(chan struct{}, 2)
	early := &parkedWait{rc: rc, resume: func() { ch <- struct{}{} }}
	idlePoller.wake(early)
	waitResumed(t, ch, "early wake")
	if !idlePoller.park(early, time.Now().Add(time.Hour)) {
		t.Fatal("park after wake: false")
	}
	if n := parkedCount(); n != 0 {
		t.Fatalf("%d waits registered after an early wake", n)
	}
	_, ch = park(time.Time{}) // the socket is not left in the set
	client.Write([]byte("y"))
	waitResumed(t, ch, "input after an early wake")

	deadline := time.Now().Add(5 * time.Second)
	for {
		idlePoller.mu.Lock()
		running := idlePoller.running
		idlePoller.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the poller's goroutine runs on with nothing parked")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// splitConn writes each write in two parts with a pause between, once
// armed: a TLS record that comes in two TCP segments.
type splitConn struct {
	net.Conn
	armed atomic.Bool
}

func (c *splitConn) Write(p []byte) (int, error) {
	if !c.armed.Load() || len(p) < 4 {
		return c.Conn.Write(p)
	}
	n, err := c.Conn.Write(p[:3])
	if err != nil {
		return n, err
	}
	time.Sleep(150 * time.Millisecond) // the second segment comes late
	m, err := c.Conn.Write(p[3:])
	return n + m, err
}

// A parked stream woken by the first part of a TLS record reads the rest
// under its idle deadline, not under the short wait before parking (which
// took the late part for silence and pinged).
func TestParkedStreamReadsSplitRecord(t *testing.T) {
	cert := testCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type event struct {
		name   string
		pinged bool
		err    error
	}
	events := make(chan event, 4)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			events <- event{err: err}
			return
		}
		tr := NewTCP(nc, 1<<16)
		if _, err := tr.Handshake(&tls.Config{Certificates: []tls.Certificate{cert}}, false, time.Now().Add(10*time.Second)); err != nil {
			events <- event{err: err}
			return
		}
		r := tr.Reader()
		r.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := r.ReadHeader(); err != nil {
			events <- event{err: err}
			return
		}
		var pinged atomic.Bool
		r.SetIdle(10*time.Second, 10*time.Second, func() bool { pinged.Store(true); return true })
		var loop func()
		loop = func() {
			for {
				err := r.WaitInput()
				if errors.Is(err, wire.ErrParked) {
					return // resumed by loop again
				}
				if err == nil {
					var el wire.Element
					el, err = r.ReadElement()
					if err == nil {
						events <- event{name: el.Name.Local, pinged: pinged.Load()}
						continue
					}
				}
				events <- event{err: err}
				nc.Close()
				return
			}
		}
		r.SetPark(20*time.Millisecond, func() { loop() })
		loop()
	}()

	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	sc := &splitConn{Conn: raw}
	tc := tls.Client(sc, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if _, err := tc.Write([]byte(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><a/>`)); err != nil {
		t.Fatal(err)
	}
	if e := <-events; e.err != nil || e.name != "a" {
		t.Fatalf("first element: %+v", e)
	}
	deadline := time.Now().Add(10 * time.Second)
	for parkedCount() == 0 { // the stream parks
		if time.Now().After(deadline) {
			t.Fatal("the stream did not park")
		}
		time.Sleep(5 * time.Millisecond)
	}
	sc.armed.Store(true)
	if _, err := tc.Write([]byte(`<b/>`)); err != nil {
		t.Fatal(err)
	}
	if e := <-events; e.err != nil || e.name != "b" || e.pinged {
		t.Fatalf("element after a split record: %+v", e)
	}
}

// Deadlines are kept by the poller, with no timer per wait: each wait
// resumes at its deadline, not before (parked in any order), one woken
// before its deadline leaves the heap, and the heap empties as they go.
func TestPollerDeadlines(t *testing.T) {
	const n = 6
	type resumed struct {
		i  int
		at time.Time
	}
	ch := make(chan resumed, n)
	waits := make([]*parkedWait, n)
	base := time.Now().Add(100 * time.Millisecond)
	for i := n - 1; i >= 0; i-- { // parked latest first
		rc, _ := tcpPair(t)
		waits[i] = &parkedWait{rc: rc, resume: func() { ch <- resumed{i, time.Now()} }}
		if !idlePoller.park(waits[i], base.Add(time.Duration(i)*150*time.Millisecond)) {
			t.Fatal("could not park")
		}
	}
	idlePoller.wake(waits[2]) // before its deadline
	seen := map[int]bool{}
	for len(seen) < n {
		select {
		case r := <-ch:
			if seen[r.i] {
				t.Fatalf("wait %d resumed twice", r.i)
			}
			seen[r.i] = true
			if r.i != 2 && r.at.Before(waits[r.i].deadline) {
				t.Fatalf("wait %d resumed %s before its deadline", r.i, waits[r.i].deadline.Sub(r.at))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("resumed %v, then nothing", seen)
		}
	}
	idlePoller.mu.Lock()
	left := len(idlePoller.deadlines)
	idlePoller.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d deadlines left in the heap", left)
	}
}

// BenchmarkParkWake is the latency from input on a parked socket to its
// resume running, with 200 sockets parked: the path of a message to a
// session that went idle. It reports p50 and p99 in microseconds.
func BenchmarkParkWake(b *testing.B) {
	const parked = 200
	type pair struct {
		rc     syscall.RawConn
		client net.Conn
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	pairs := make([]pair, parked)
	for i := range pairs {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		defer s.Close()
		rc, _ := s.(*net.TCPConn).SyscallConn()
		pairs[i] = pair{rc, c}
	}
	resumed := make(chan time.Time, 1)
	park := func(p pair) {
		w := &parkedWait{rc: p.rc, resume: func() { resumed <- time.Now() }}
		if !idlePoller.park(w, time.Now().Add(time.Hour)) {
			b.Fatal("could not park")
		}
	}
	for _, p := range pairs {
		park(p)
	}
	lat := make([]time.Duration, 0, b.N)
	buf := make([]byte, 8)
	b.ResetTimer()
	for i := range b.N {
		p := pairs[i%parked]
		start := time.Now()
		p.client.Write([]byte("x"))
		at := <-resumed
		lat = append(lat, at.Sub(start))
		p.rc.Read(func(fd uintptr) bool { syscall.Read(int(fd), buf); return true })
		park(p)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
	for _, p := range pairs { // unpark the rest
		p.client.Write([]byte("x"))
	}
	for range parked - 1 {
		<-resumed
	}
}
