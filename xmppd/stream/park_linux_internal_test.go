package stream

import (
	"net"
	"syscall"
	"testing"
	"time"
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
