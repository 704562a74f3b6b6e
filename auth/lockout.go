package auth

import (
	"context"
	"encoding/json"
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

	// The shared mode (Share): failures are counted in the store, locks
	// are polled from it (held), and successes are cleared in batches
	// (clears), so that a login costs the store nothing more.
	shared  SharedLimits
	kind    string
	timeout time.Duration
	held    map[Number]time.Time
	clears  map[Number]bool
}

// Share makes l count across the nodes of a cluster in store, as limits of
// the given kind (one per Lockout sharing a store). A failure is counted
// in the store at once (timeout bounds the call; if the store fails, l
// counts it in memory as before). Whether a number is locked is answered
// from memory: Run polls the store's locks every LockoutSync, so a lock
// set on another node holds here within that time. Call it before use,
// and run Run.
func (l *Lockout) Share(store SharedLimits, kind string, timeout time.Duration) {
	l.shared, l.kind, l.timeout = store, kind, timeout
	l.held = make(map[Number]time.Time)
	l.clears = make(map[Number]bool)
}

// LockoutSync is how often a shared Lockout polls the locks of the other
// nodes and clears the failures of the numbers that logged in.
const LockoutSync = time.Second

// maxClears bounds the successes waiting to be cleared; beyond it, the
// oldest failures of some numbers are kept (they expire with lockMemory).
const maxClears = 100000

// lockState is a lockEntry as the store keeps it.
type lockState struct {
	Failures int       `json:"f"`
	Locks    int       `json:"l"`
	Until    time.Time `json:"u"`
	Last     time.Time `json:"t"`
}

// failShared counts a failure in the store; it reports false when the
// store failed and l must count it itself.
func (l *Lockout) failShared(n Number, now time.Time) bool {
	l.mu.Lock()
	cleared := l.clears[n] // a success here since the last sync: start afresh
	delete(l.clears, n)
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	var until time.Time
	err := l.shared.UpdateLimit(ctx, l.kind, string(n), now, func(state []byte) (LimitState, error) {
		var st lockState
		if state != nil && !cleared {
			if err := json.Unmarshal(state, &st); err != nil {
				st = lockState{} // unreadable: counted afresh
			}
		}
		e := lockEntry{failures: st.Failures, locks: st.Locks, until: st.Until, last: st.Last}
		e.fail(now, l.max)
		until = e.until
		b, err := json.Marshal(lockState{e.failures, e.locks, e.until, e.last})
		return LimitState{State: b, Held: e.until, Expires: e.last.Add(lockMemory)}, err
	})
	if err != nil {
		return false
	}
	if now.Before(until) {
		l.mu.Lock()
		l.held[n] = until
		l.mu.Unlock()
	}
	return true
}

// Run keeps a shared Lockout in step with the store until ctx is done:
// every LockoutSync it clears the numbers that logged in and reads the
// locks of every node. It returns at once for a Lockout not shared.
func (l *Lockout) Run(ctx context.Context) {
	if l == nil || l.shared == nil || l.max < 1 {
		return
	}
	t := time.NewTicker(LockoutSync)
	defer t.Stop()
	for {
		l.Sync(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sync does one step of Run: the successes since the last one are
// cleared in the store, and the locks are read from it.
func (l *Lockout) Sync(ctx context.Context) {
	l.mu.Lock()
	keys := make([]string, 0, len(l.clears))
	for n := range l.clears {
		keys = append(keys, string(n))
	}
	clear(l.clears)
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	if len(keys) > 0 {
		if err := l.shared.ClearLimits(ctx, l.kind, keys); err != nil {
			l.mu.Lock()
			for _, k := range keys {
				if len(l.clears) < maxClears {
					l.clears[Number(k)] = true
				}
			}
			l.mu.Unlock()
		}
	}
	now := l.now()
	held, err := l.shared.HeldLimits(ctx, l.kind, now, lockoutCapacity)
	if err != nil {
		return // the locks known stay until they end
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// A lock this node set since the read began is not in it yet.
	for n, until := range l.held {
		if _, ok := held[string(n)]; !ok && now.Before(until) && len(held) < lockoutCapacity {
			held[string(n)] = until
		}
	}
	l.held = make(map[Number]time.Time, len(held))
	for k, until := range held {
		l.held[Number(k)] = until
	}
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
	until := l.held[n]
	if e := l.entries[n]; e != nil && e.until.After(until) {
		until = e.until
	}
	if !now.Before(until) {
		return 0
	}
	return until.Sub(now)
}

// Fail counts one failed login for n. Failures while n is locked are not
// counted: they were refused before any password was checked.
func (l *Lockout) Fail(n Number) {
	if l == nil || l.max < 1 {
		return
	}
	now := l.now()
	if l.shared != nil && l.failShared(n, now) {
		return
	}
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
	e.fail(now, l.max)
}

// fail counts one failure at now, locking after max of them.
func (e *lockEntry) fail(now time.Time, max int) {
	if now.Before(e.until) {
		return
	}
	e.last = now
	e.failures++
	if e.failures < max {
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
	if l.shared != nil {
		delete(l.held, n)
		if len(l.clears) < maxClears {
			l.clears[n] = true
		}
	}
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
