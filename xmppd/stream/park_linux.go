package stream

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// poller waits on the sockets of parked streams with one epoll instance,
// so that an idle stream needs no goroutine of its own. Its goroutine runs
// only while something is parked.
type poller struct {
	mu      sync.Mutex
	epfd    int // 0 until first used
	running bool
	parked  map[uint32]*parkedWait
	seq     uint32
}

// parkedWait is one parked stream's wait.
type parkedWait struct {
	token  uint32
	rc     syscall.RawConn
	timer  *time.Timer
	resume func()
	woken  atomic.Bool
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
	if p.epfd == 0 {
		fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return false
		}
		p.epfd, p.parked = fd, make(map[uint32]*parkedWait)
	}
	for p.seq++; p.parked[p.seq] != nil || p.seq == 0; p.seq++ {
	}
	w.token = p.seq
	var cerr error
	// Under Control the descriptor cannot be closed and reused meanwhile.
	err := w.rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(w.token)}
		cerr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err != nil || cerr != nil {
		return false
	}
	p.parked[w.token] = w
	if !deadline.IsZero() {
		w.timer = time.AfterFunc(time.Until(deadline), func() { p.wake(w) })
	}
	if !p.running {
		p.running = true
		go p.loop()
	}
	return true
}

// wake runs w's resume once, its socket out of the epoll set first.
func (p *poller) wake(w *parkedWait) {
	if !w.woken.CompareAndSwap(false, true) {
		return
	}
	p.mu.Lock()
	delete(p.parked, w.token)
	if w.timer != nil {
		w.timer.Stop()
	}
	// A closed connection left the set as it closed.
	w.rc.Control(func(fd uintptr) { syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil) })
	p.mu.Unlock()
	go w.resume()
}

func (p *poller) loop() {
	events := make([]syscall.EpollEvent, 256)
	ready := make([]*parkedWait, 0, len(events))
	for {
		n, err := syscall.EpollWait(p.epfd, events, pollEvery)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			n = 0 // cannot happen with a valid epfd; the timers still wake
		}
		p.mu.Lock()
		ready = ready[:0]
		for _, ev := range events[:max(n, 0)] {
			if w := p.parked[uint32(ev.Fd)]; w != nil {
				ready = append(ready, w)
			}
		}
		if len(p.parked) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		for _, w := range ready {
			p.wake(w)
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
