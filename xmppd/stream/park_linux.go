package stream

import (
	"container/heap"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// poller waits on the sockets of parked streams with one epoll instance,
// so that an idle stream needs no goroutine of its own. Its goroutine runs
// only while something is parked, and keeps the parked waits' deadlines
// too: a timer per parked stream was a tenth of its heap. The epoll
// instance is itself in Go's netpoller (an epoll descriptor is readable
// when it has events): the goroutine waits as a network read does, and
// input wakes it as fast, rather than a thread blocked in epoll_wait that
// must then wait for a processor under load.
type poller struct {
	mu        sync.Mutex
	ep        *os.File // the epoll instance; nil until first used
	rc        syscall.RawConn
	running   bool
	waitUntil time.Time // the read deadline the goroutine waits under
	parked    map[uint32]*parkedWait
	deadlines deadlineHeap // the parked waits that have a deadline
	seq       uint32
}

// parkedWait is one parked stream's wait.
type parkedWait struct {
	token    uint32
	at       int // 1 + its index in the poller's deadlines; 0: none
	rc       syscall.RawConn
	deadline time.Time
	resume   func()
	woken    atomic.Bool
}

// deadlineHeap orders parked waits by deadline (container/heap).
type deadlineHeap []*parkedWait

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].at, h[j].at = i+1, j+1
}
func (h *deadlineHeap) Push(x any) {
	w := x.(*parkedWait)
	*h = append(*h, w)
	w.at = len(*h)
}
func (h *deadlineHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	w.at = 0
	if cap(*h) > 1024 && len(*h) < cap(*h)/4 {
		*h = append(deadlineHeap(nil), *h...) // a burst's array is not kept
	}
	return w
}

var idlePoller poller

// pollEvery bounds how long the poller's goroutine outlives the last
// parked stream.
const pollEvery = 200 // milliseconds

// park registers w's socket; false when it cannot (then nothing was done).
func (p *poller) park(w *parkedWait, deadline time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.woken.Load() {
		// A Wake came first (it takes the lock after marking w): resume
		// runs already, and nothing must stay registered for it.
		return true
	}
	if p.ep == nil && !p.open() {
		return false
	}
	for p.seq++; p.parked[p.seq] != nil || p.seq == 0; p.seq++ {
	}
	w.token = p.seq
	var cerr error
	// Under Control the descriptor cannot be closed and reused meanwhile.
	err := w.rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(w.token)}
		p.rc.Control(func(epfd uintptr) { cerr = syscall.EpollCtl(int(epfd), syscall.EPOLL_CTL_ADD, int(fd), &ev) })
	})
	if err != nil || cerr != nil {
		return false
	}
	p.parked[w.token] = w
	if !deadline.IsZero() {
		w.deadline = deadline
		heap.Push(&p.deadlines, w)
	}
	switch {
	case !p.running:
		p.running = true
		p.waitFor(time.Now(), deadline)
		go p.loop()
	case !deadline.IsZero() && deadline.Before(p.waitUntil):
		p.waitFor(time.Now(), deadline) // the wait under way ends sooner
	}
	return true
}

// open makes the epoll instance and puts it in Go's netpoller; false
// when it cannot (then nothing parks).
func (p *poller) open() bool {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return false
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return false
	}
	f := os.NewFile(uintptr(fd), "idle-streams")
	rc, err := f.SyscallConn()
	// A deadline takes only when the netpoller has the descriptor.
	if err != nil || f.SetReadDeadline(time.Now().Add(time.Hour)) != nil {
		f.Close()
		return false
	}
	p.ep, p.rc, p.parked = f, rc, make(map[uint32]*parkedWait)
	return true
}

// waitFor sets the goroutine's read deadline: the earliest of deadline
// (if any), the heap's first and pollEvery from now (so that it ends soon
// once nothing is parked), and at least a millisecond ahead (a deadline
// already past would fail the read before it looks at the events).
// Under p.mu.
func (p *poller) waitFor(now, deadline time.Time) {
	until := now.Add(pollEvery * time.Millisecond)
	if len(p.deadlines) > 0 && p.deadlines[0].deadline.Before(until) {
		until = p.deadlines[0].deadline
	}
	if !deadline.IsZero() && deadline.Before(until) {
		until = deadline
	}
	until = later(until, now.Add(time.Millisecond))
	p.waitUntil = until
	p.ep.SetReadDeadline(until)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// wake runs w's resume once, its socket out of the epoll set first.
func (p *poller) wake(w *parkedWait) {
	if !w.woken.CompareAndSwap(false, true) {
		return
	}
	p.mu.Lock()
	delete(p.parked, w.token)
	if w.at > 0 {
		heap.Remove(&p.deadlines, w.at-1)
	}
	// A closed connection left the set as it closed.
	w.rc.Control(func(fd uintptr) {
		p.rc.Control(func(epfd uintptr) { syscall.EpollCtl(int(epfd), syscall.EPOLL_CTL_DEL, int(fd), nil) })
	})
	p.mu.Unlock()
	go w.resume()
}

// loop waits for input on the parked sockets and for the earliest
// deadline, in the netpoller: the read returns when the epoll instance
// has events, or at the deadline (waitFor).
func (p *poller) loop() {
	events := make([]syscall.EpollEvent, 256)
	ready := make([]*parkedWait, 0, len(events))
	for {
		n := 0
		// A deadline error is a turn like any other: expired deadlines
		// are looked at below. The events are drained whatever woke it
		// (the netpoller reports edges), up to a batch per turn.
		p.rc.Read(func(epfd uintptr) bool {
			n, _ = syscall.EpollWait(int(epfd), events, 0)
			return n > 0
		})
		now := time.Now()
		p.mu.Lock()
		ready = ready[:0]
		for _, ev := range events[:max(n, 0)] {
			if w := p.parked[uint32(ev.Fd)]; w != nil {
				ready = append(ready, w)
			}
		}
		// At most a batch of expired deadlines per turn: input waits no
		// longer behind a mass expiry.
		for i := 0; i < len(events) && len(p.deadlines) > 0 && !p.deadlines[0].deadline.After(now); i++ {
			ready = append(ready, heap.Pop(&p.deadlines).(*parkedWait))
		}
		if len(p.parked) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.waitFor(now, time.Time{})
		p.mu.Unlock()
		for i, w := range ready {
			p.wake(w)
			ready[i] = nil
		}
	}
}

// Park implements wire.Parker.
func (s *tlsSource) Park(deadline time.Time, resume func()) bool {
	if s.rec.rc == nil || s.Pending() {
		return false
	}
	trimTLS(s.tc)
	w := &parkedWait{rc: s.rec.rc, resume: resume}
	s.parked.Store(w)
	if !idlePoller.park(w, deadline) {
		s.parked.Store(nil)
		return false
	}
	return true
}

// Wake implements wire.Parker.
func (s *tlsSource) Wake() {
	if w := s.parked.Load(); w != nil {
		idlePoller.wake(w)
	}
}
