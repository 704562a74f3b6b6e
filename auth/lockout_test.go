package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestLockout(max int) (*Lockout, *fakeClock) {
	c := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := NewLockout(max)
	l.Now = c.now
	return l, c
}

func TestLockoutDoubling(t *testing.T) {
	l, c := newTestLockout(3)
	const n = Number("+821012345678")
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60}
	for i, w := range want {
		w *= time.Minute
		for j := range 3 {
			if d := l.Locked(n); d != 0 {
				t.Fatalf("round %d: locked (%v) after %d failures", i, d, j)
			}
			l.Fail(n)
		}
		if d := l.Locked(n); d != w {
			t.Fatalf("round %d: locked for %v, want %v", i, d, w)
		}
		// Failures while locked do not count or extend the lock.
		l.Fail(n)
		c.advance(w / 2)
		if d := l.Locked(n); d != w-w/2 {
			t.Fatalf("round %d: %v left, want %v", i, d, w-w/2)
		}
		c.advance(w - w/2)
		if d := l.Locked(n); d != 0 {
			t.Fatalf("round %d: still locked %v after the lock", i, d)
		}
	}
}

func TestLockoutSucceedResets(t *testing.T) {
	l, _ := newTestLockout(2)
	const n = Number("+821012345678")
	l.Fail(n)
	l.Succeed(n)
	l.Fail(n)
	if l.Locked(n) != 0 {
		t.Fatal("locked although a success came between the failures")
	}
	l.Fail(n)
	if l.Locked(n) != time.Minute {
		t.Fatal("not locked after 2 failures")
	}
	if l.Locked("+821099999999") != 0 {
		t.Fatal("another number is locked")
	}
}

func TestLockoutForgets(t *testing.T) {
	l, c := newTestLockout(2)
	const n = Number("+821012345678")
	l.Fail(n)
	l.Fail(n) // 1 minute
	c.advance(time.Minute)
	l.Fail(n)
	l.Fail(n) // 2 minutes: escalated
	if l.Locked(n) != 2*time.Minute {
		t.Fatalf("second lock %v, want 2m", l.Locked(n))
	}
	c.advance(lockMemory + time.Hour)
	l.Fail(n)
	if l.Locked(n) != 0 {
		t.Fatal("an old failure still counted")
	}
	l.Fail(n)
	if l.Locked(n) != time.Minute {
		t.Fatalf("after a quiet day the lock is %v, want the first 1m", l.Locked(n))
	}
}

func TestLockoutDisabledAndNil(t *testing.T) {
	l, _ := newTestLockout(0)
	for range 10 {
		l.Fail("+821012345678")
	}
	if l.Locked("+821012345678") != 0 {
		t.Error("maxFailures 0 locks")
	}
	var nl *Lockout
	nl.Fail("+821012345678")
	nl.Succeed("+821012345678")
	if nl.Locked("+821012345678") != 0 {
		t.Error("nil Lockout locks")
	}
}

func TestLockoutBounded(t *testing.T) {
	l, c := newTestLockout(2)
	l.capacity = 1000
	const target = Number("+821012345678")
	l.Fail(target)
	l.Fail(target)
	for i := range 5000 {
		c.advance(time.Millisecond)
		l.Fail(Number(fmt.Sprintf("+1201555%04d", i)))
	}
	l.mu.Lock()
	size := len(l.entries)
	l.mu.Unlock()
	if size > l.capacity {
		t.Errorf("%d entries, capacity %d", size, l.capacity)
	}
	if l.Locked(target) == 0 {
		t.Error("a flood of failures for other numbers unlocked the target")
	}
	// Once full again, expired records go first, all of them.
	c.advance(lockMemory + time.Second)
	for i := range 200 {
		l.Fail(Number(fmt.Sprintf("+4930123%03d", i)))
	}
	l.mu.Lock()
	size = len(l.entries)
	l.mu.Unlock()
	if size > 200 {
		t.Errorf("%d entries: expired records were kept", size)
	}
}

func TestLockoutConcurrent(t *testing.T) {
	l := NewLockout(5)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			n := Number(fmt.Sprintf("+82101234567%d", g%2))
			for range 100 {
				l.Fail(n)
				l.Locked(n)
				if g == 0 {
					l.Succeed(n)
				}
			}
		})
	}
	wg.Wait()
}
