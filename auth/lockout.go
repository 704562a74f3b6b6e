package auth

import (
	"slices"
	"sync"
	"time"
)

const (
	// firstLock and maxLock are SPEC "Accounts": one minute, doubling, at
	// most one hour.
	firstLock = time.Minute
	maxLock   = time.Hour
	// lockMemory is how long a number's record outlives its last failure or
	// lock: long enough that an attacker waiting out a lock meets a longer
	// one, short enough that a user's typo last week does not count.
	lockMemory = 24 * time.Hour
	// lockoutCapacity bounds memory under a flood of failures for many
	// numbers (about 100 bytes each).
	lockoutCapacity = 100000
)

// Lockout counts failed logins per number (SPEC "Accounts"): after
// maxFailures failures the number is locked for a minute, each further lock
// twice as long, at most an hour. Memory is bounded. It is safe for
// concurrent use, and a nil *Lockout locks nothing.
type Lockout struct {
	// Now is the clock; nil means time.Now. Set it before use (tests).
	Now func() time.Time

	max      int
	capacity int

	mu      sync.Mutex
	entries map[Number]*lockEntry
}

type lockEntry struct {
	failures int       // since the last lock ended
	locks    int       // locks so far, for the doubling
	until    time.Time // locked before this instant
	last     time.Time // last failure or lock
}

// NewLockout returns a Lockout that locks after maxFailures failures;
// maxFailures < 1 disables locking.
func NewLockout(maxFailures int) *Lockout {
	return &Lockout{max: maxFailures, capacity: lockoutCapacity, entries: make(map[Number]*lockEntry)}
}

func (l *Lockout) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// Locked returns how long n stays locked; zero when it is not.
func (l *Lockout) Locked(n Number) time.Duration {
	if l == nil || l.max < 1 {
		return 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[n]
	if e == nil || !now.Before(e.until) {
		return 0
	}
	return e.until.Sub(now)
}

// Fail counts one failed login for n. Failures while n is locked are not
// counted: they were refused before any password was checked.
func (l *Lockout) Fail(n Number) {
	if l == nil || l.max < 1 {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[n]
	if e != nil && e.expired(now) {
		e = nil
		delete(l.entries, n)
	}
	if e == nil {
		l.makeRoom(now)
		e = &lockEntry{}
		l.entries[n] = e
	}
	if now.Before(e.until) {
		return
	}
	e.last = now
	e.failures++
	if e.failures < l.max {
		return
	}
	e.failures = 0
	e.locks++
	d := firstLock
	for i := 1; i < e.locks && d < maxLock; i++ {
		d *= 2
	}
	e.until = now.Add(min(d, maxLock))
}

// Succeed forgets the failures of n after a successful login.
func (l *Lockout) Succeed(n Number) {
	if l == nil {
		return
	}
	l.mu.Lock()
	delete(l.entries, n)
	l.mu.Unlock()
}

// expired reports whether the record can be forgotten; a lock ends at most
// maxLock after last, well within lockMemory.
func (e *lockEntry) expired(now time.Time) bool {
	return now.Sub(e.last) > lockMemory
}

// makeRoom keeps the map under its capacity: first it drops expired
// records, then the least recent tenth, unlocked numbers before locked ones
// so that a flood of failures for other numbers does not unlock a target.
// Called with mu held.
func (l *Lockout) makeRoom(now time.Time) {
	if len(l.entries) < l.capacity {
		return
	}
	for n, e := range l.entries {
		if e.expired(now) {
			delete(l.entries, n)
		}
	}
	if len(l.entries) < l.capacity {
		return
	}
	type aged struct {
		n      Number
		locked bool
		last   time.Time
	}
	all := make([]aged, 0, len(l.entries))
	for n, e := range l.entries {
		all = append(all, aged{n, now.Before(e.until), e.last})
	}
	slices.SortFunc(all, func(a, b aged) int {
		if a.locked != b.locked {
			if a.locked {
				return 1
			}
			return -1
		}
		return a.last.Compare(b.last)
	})
	for _, a := range all[:max(1, len(all)/10)] {
		delete(l.entries, a.n)
	}
}
